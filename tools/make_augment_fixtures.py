#!/usr/bin/env python3
"""Reference outputs for the RandAugment ops (Tests/TesseraDataTests/AugmentTests.swift).

Writes Tests/TesseraDataTests/Fixtures/augment/:
  input.bin   the 32x24 RGB test image (HWC uint8, row-major)
  index.json  image shape, fill colour and one entry per case
  <op>_<magnitude>_<sign>[_<interp>].bin   the op's output, same layout as input.bin

Each case runs timm's own level mapping (LEVEL_TO_ARG) and op (NAME_TO_OP) on a PIL image, with
the sign of the signed level functions forced, the ImageNet-mean fill colour and the resampling
filter given explicitly. Needs Pillow, numpy and timm (`pip install timm`); CI never runs this,
the generated files are committed.

Usage: python3 tools/make_augment_fixtures.py [output_dir]
"""
import json
import os
import random
import sys

import numpy as np
import PIL
from PIL import Image

try:
    import timm
    from timm.data import auto_augment as aa
except ImportError:  # pragma: no cover
    sys.exit("timm is needed to generate the fixtures: pip install timm")

WIDTH, HEIGHT = 32, 24
FILL = (124, 116, 104)  # round(255 * ImageNet mean), as timm's transforms_factory computes it
MAGNITUDES = (4.3, 9.0)
SIGNED = {
    "Rotate", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
    "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
}
GEOMETRIC = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}


def make_image():
    """A deterministic image with gradients, flat regions, edges and a disc."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    r = 20 + (x * 200) // (WIDTH - 1)
    g = 40 + (y * 160) // (HEIGHT - 1)
    b = 10 + ((x + 2 * y) * 7) % 230
    img = np.stack([r, g, b], axis=-1).astype(np.int64)
    # a flat dark rectangle and a bright one
    img[3:9, 4:12] = (30, 60, 90)
    img[14:21, 20:29] = (230, 210, 190)
    # a disc with a radial ramp
    d2 = (x - 22) ** 2 + (y - 7) ** 2
    disc = d2 <= 25
    img[disc] = np.stack([200 - 4 * d2, 50 + 3 * d2, 120 + 0 * d2], axis=-1)[disc]
    # thin lines and a checker patch (high frequencies for Sharpness)
    img[12, :] = (250, 250, 250)
    img[:, 15] = (5, 15, 25)
    cy, cx = np.mgrid[16:22, 2:10]
    img[16:22, 2:10] = np.where(((cx + cy) % 2 == 0)[..., None], (180, 20, 60), (20, 180, 60))
    return np.clip(img, 0, 255).astype(np.uint8)


def level_args(name, magnitude, sign, hparams):
    fn = aa.LEVEL_TO_ARG[name]
    if fn is None:
        return ()
    # timm's _randomly_negate negates when random.random() > 0.5: pin that draw.
    saved = aa.random.random
    aa.random.random = (lambda: 1.0) if sign < 0 else (lambda: 0.0)
    try:
        return fn(magnitude, hparams)
    finally:
        aa.random.random = saved


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "TesseraDataTests", "Fixtures", "augment")
    os.makedirs(out_dir, exist_ok=True)
    src = make_image()
    src.tofile(os.path.join(out_dir, "input.bin"))
    pil = Image.fromarray(src, "RGB")
    hparams = dict(translate_const=int(224 * 0.45), img_mean=FILL)
    filters = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}

    cases = []
    for name in aa._RAND_INCREASING_TRANSFORMS:
        for m in MAGNITUDES:
            signs = (1, -1) if name in SIGNED else (1,)
            interps = ("bicubic", "bilinear") if name in GEOMETRIC else ("bicubic",)
            for sign in signs:
                for interp in interps:
                    if interp == "bilinear" and m != MAGNITUDES[-1]:
                        continue
                    args = level_args(name, m, sign, hparams)
                    out = aa.NAME_TO_OP[name](pil, *args, fillcolor=FILL, resample=filters[interp])
                    arr = np.asarray(out, dtype=np.uint8)
                    assert arr.shape == src.shape, (name, arr.shape)
                    stem = f"{name}_{m:g}_{'p' if sign > 0 else 'n'}"
                    if name in GEOMETRIC and interp != "bicubic":
                        stem += f"_{interp}"
                    arr.tofile(os.path.join(out_dir, stem + ".bin"))
                    cases.append(dict(op=name, magnitude=m, sign=sign, interpolation=interp,
                                      argument=[float(a) for a in args], file=stem + ".bin"))

    index = dict(width=WIDTH, height=HEIGHT, channels=3, fill=list(FILL), input="input.bin",
                 pillow=PIL.__version__, timm=timm.__version__, cases=cases)
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
    print(f"wrote {len(cases)} cases to {out_dir}")


if __name__ == "__main__":
    main()
