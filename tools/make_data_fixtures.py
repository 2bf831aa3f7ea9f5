#!/usr/bin/env python3
"""Generates the reference fixtures of Tests/TesseraDataTests/Fixtures (run once; outputs are committed).

Inputs: three public-domain / CC0 photographs from scikit-image's data folder (astronaut: NASA,
public domain; chelsea: CC0 Stefan van der Walt; coffee: CC0 Rachel Michetti), downsized to 160 px
wide with PIL and re-saved as JPEG, plus a progressive, a grayscale and a CMYK JPEG made from them.

Outputs (all small):
  *.jpg                      the test images
  ref_<name>.u8.gz           gzip-compressed raw uint8 arrays (HWC), listed in manifest.json
  ref_<name>.f32.gz          gzip-compressed raw little-endian float32 arrays
  rrc_boxes.json             torchvision RandomResizedCrop.get_params boxes for scripted uniforms
  manifest.json              what each reference is (operation, parameters, shape)

Requires: pillow, numpy, torch, torchvision, scikit-image (pip install scikit-image).
"""
import gzip
import json
import math
import os
import random
import sys

import numpy as np
import torch
import torchvision
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "TesseraDataTests", "Fixtures")
WIDTH = 160

manifest = {"pillow": Image.__version__ if hasattr(Image, "__version__") else "", "torchvision": torchvision.__version__,
            "references": []}


def skimage_photo(name):
    import skimage
    path = os.path.join(os.path.dirname(skimage.__file__), "data", name)
    return Image.open(path).convert("RGB")


def save_u8(name, arr, **info):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    fn = f"ref_{name}.u8.gz"
    with gzip.open(os.path.join(OUT, fn), "wb", compresslevel=9) as f:
        f.write(arr.tobytes())
    manifest["references"].append(dict(name=name, file=fn, dtype="u8", shape=list(arr.shape), **info))


def save_f32(name, arr, **info):
    arr = np.ascontiguousarray(arr, dtype="<f4")
    fn = f"ref_{name}.f32.gz"
    with gzip.open(os.path.join(OUT, fn), "wb", compresslevel=9) as f:
        f.write(arr.tobytes())
    manifest["references"].append(dict(name=name, file=fn, dtype="f32", shape=list(arr.shape), **info))


def make_images():
    files = {}
    for stem, src in [("astronaut", "astronaut.png"), ("chelsea", "chelsea.png"), ("coffee", "coffee.png")]:
        im = skimage_photo(src)
        h = round(im.height * WIDTH / im.width)
        im = im.resize((WIDTH, h), Image.LANCZOS)
        fn = f"{stem}.jpg"
        im.save(os.path.join(OUT, fn), quality=90)
        files[stem] = fn
    base = {k: Image.open(os.path.join(OUT, v)) for k, v in files.items()}
    base["chelsea"].convert("RGB").save(os.path.join(OUT, "chelsea_progressive.jpg"), quality=90, progressive=True)
    base["coffee"].convert("L").save(os.path.join(OUT, "coffee_gray.jpg"), quality=90)
    base["astronaut"].convert("CMYK").save(os.path.join(OUT, "astronaut_cmyk.jpg"), quality=90)
    return ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "chelsea_progressive.jpg", "coffee_gray.jpg",
            "astronaut_cmyk.jpg"]


def pil_decode(fn):
    im = Image.open(os.path.join(OUT, fn))
    im.load()
    return im if im.mode == "L" else im.convert("RGB")


FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
TV = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
      "lanczos": T.InterpolationMode.LANCZOS}


def make_references(jpegs):
    decoded = {}
    for fn in jpegs:
        im = pil_decode(fn)
        decoded[fn] = im
        save_u8("decode_" + fn.replace(".jpg", ""), np.asarray(im), op="decode", input=fn)
    astro, chelsea, coffee, gray = (decoded["astronaut.jpg"], decoded["chelsea.jpg"], decoded["coffee.jpg"],
                                    decoded["coffee_gray.jpg"])
    for interp, flt in FILTERS.items():
        # Whole-image downscale by a non-integer factor (PIL Image.resize, as torchvision on PIL images).
        save_u8(f"down_{interp}", np.asarray(astro.resize((97, 71), flt)), op="resize", input="astronaut.jpg",
                interpolation=interp, size=[71, 97])
        # Upscale of a crop box (torchvision resized_crop = crop, then resize).
        out = F.resized_crop(chelsea, 20, 30, 50, 60, [80, 90], interpolation=TV[interp])
        save_u8(f"cropup_{interp}", np.asarray(out), op="resized_crop", input="chelsea.jpg", interpolation=interp,
                box=[20, 30, 50, 60], size=[80, 90])
        # Mixed: downscale one axis, upscale the other, from a crop box.
        out = F.resized_crop(astro, 13, 7, 120, 97, [64, 130], interpolation=TV[interp])
        save_u8(f"cropmix_{interp}", np.asarray(out), op="resized_crop", input="astronaut.jpg", interpolation=interp,
                box=[13, 7, 120, 97], size=[64, 130])
    # RandomResizedCrop-like random boxes of a real photo, bicubic to 48x48 (statistics over many geometries).
    rng = random.Random(77)
    boxes = []
    outs = []
    for _ in range(16):
        bw, bh = rng.randint(12, 160), rng.randint(12, 160)
        top, left = rng.randint(0, 160 - bh), rng.randint(0, 160 - bw)
        boxes.append([top, left, bh, bw])
        outs.append(np.asarray(F.resized_crop(astro, top, left, bh, bw, [48, 48],
                                              interpolation=T.InterpolationMode.BICUBIC)))
    save_u8("rrc_many", np.concatenate(outs, axis=0), op="resized_crop_many", input="astronaut.jpg",
            interpolation="bicubic", boxes=boxes, size=[48, 48])
    # Grayscale (1 channel) bicubic.
    save_u8("gray_bicubic", np.asarray(gray.resize((61, 47), Image.BICUBIC)), op="resize", input="coffee_gray.jpg",
            interpolation="bicubic", size=[47, 61])
    # Eval transform geometry: Resize(shorter side) + CenterCrop (odd differences test round-half-even).
    for size, crop in [(100, 88), (93, 80), (120, 111)]:
        tf = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(crop)])
        out = tf(coffee)
        save_u8(f"resize_center_{size}_{crop}", np.asarray(out), op="resize_center_crop", input="coffee.jpg",
                interpolation="bicubic", resize=size, crop=crop)
    # ToTensor + Normalize (ImageNet) on a small crop: float32 CHW.
    small = F.crop(astro, 40, 50, 9, 11)
    t = F.normalize(F.to_tensor(small), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    save_f32("normalize", t.numpy(), op="to_tensor_normalize", input="astronaut.jpg", box=[40, 50, 9, 11],
             mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


class Scripted:
    """Feeds predetermined uniforms into torchvision's get_params via monkeypatched torch calls."""

    def __init__(self, uniforms):
        self.u = list(uniforms)
        self.used = 0

    def next(self):
        v = self.u[self.used]
        self.used += 1
        return v


def rrc_boxes():
    rng = random.Random(1234)
    cases = []
    orig_empty, orig_randint = torch.empty, torch.randint
    for case in range(300):
        w = rng.choice([rng.randint(1, 40), rng.randint(50, 800)])
        h = rng.choice([rng.randint(1, 40), rng.randint(50, 800), w])
        scale = rng.choice([(0.08, 1.0), (0.2, 1.0), (0.9, 1.0), (0.5, 0.6)])
        ratio = rng.choice([(3 / 4, 4 / 3), (0.5, 2.0), (1.0, 1.0)])
        # Float32 uniforms in [0,1) with 24-bit resolution, like the Swift generator.
        u24 = [rng.getrandbits(24) for _ in range(40)]
        uniforms = [v / 16777216.0 for v in u24]
        s = Scripted(uniforms)

        class FakeEmpty:
            def uniform_(self, lo, hi):
                lo, hi = float(lo), float(hi)
                v = np.float32(lo + (hi - lo) * s.next())
                return torch.tensor([v], dtype=torch.float32)

        def fake_empty(*args, **kw):
            return FakeEmpty()

        def fake_randint(lo, hi, size=None, **kw):
            return torch.tensor([lo + int(s.next() * (hi - lo))])

        torch.empty, torch.randint = fake_empty, fake_randint
        try:
            img = Image.new("L", (w, h))
            top, left, bh, bw = T.RandomResizedCrop.get_params(img, list(scale), list(ratio))
        finally:
            torch.empty, torch.randint = orig_empty, orig_randint
        cases.append(dict(width=w, height=h, scale=list(scale), ratio=list(ratio), u24=u24[:s.used],
                          box=[int(top), int(left), int(bh), int(bw)]))
    with open(os.path.join(OUT, "rrc_boxes.json"), "w") as f:
        json.dump({"note": "torchvision RandomResizedCrop.get_params; uniform_(a,b) = float32(a + (b-a)*u); "
                           "randint(lo,hi) = lo + int(u*(hi-lo)); u = u24 / 2^24", "cases": cases}, f)


def main():
    os.makedirs(OUT, exist_ok=True)
    jpegs = make_images()
    make_references(jpegs)
    rrc_boxes()
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(os.path.getsize(os.path.join(OUT, x)) for x in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total / 1024:.0f} KiB", file=sys.stderr)


if __name__ == "__main__":
    main()
