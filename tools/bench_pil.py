#!/usr/bin/env python3
"""Single-threaded PIL + torchvision baseline for `benchmarkDecodeAugment`.

  python3 tools/bench_pil.py DIR             time decode + RandomResizedCrop(224, bicubic) + flip
                                             + ToTensor + Normalize over DIR/*.jpg; prints one JSON line
  python3 tools/bench_pil.py --make DIR [N]  write N (default 32) ~500x375 JPEGs (quality 90) cut from
                                             scikit-image's public-domain / CC0 photographs
"""
import json
import os
import sys
import time


def make(out, n):
    import random
    from PIL import Image
    import skimage
    d = os.path.join(os.path.dirname(skimage.__file__), "data")
    names = [x for x in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg")
             if os.path.exists(os.path.join(d, x))]
    os.makedirs(out, exist_ok=True)
    rng = random.Random(0)
    for i in range(n):
        im = Image.open(os.path.join(d, names[i % len(names)])).convert("RGB")
        # A random crop with the 4:3 aspect, resized to 500x375 (ImageNet's typical size).
        w = rng.randint(int(im.width * 0.6), im.width)
        h = min(im.height, int(w * 0.75))
        w = int(h / 0.75)
        left, top = rng.randint(0, im.width - w), rng.randint(0, im.height - h)
        im = im.crop((left, top, left + w, top + h)).resize((500, 375), Image.BICUBIC)
        if i % 2:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        im.save(os.path.join(out, f"img{i:03d}.jpg"), quality=90)


def bench(folder, min_seconds=3.0):
    import torch
    import torchvision.transforms as T
    from PIL import Image
    torch.set_num_threads(1)
    torch.manual_seed(0)
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg")))
    tf = T.Compose([T.RandomResizedCrop(224, scale=(0.2, 1.0), interpolation=T.InterpolationMode.BICUBIC),
                    T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    for p in files[:4]:  # warm-up
        tf(Image.open(p).convert("RGB"))
    n = 0
    t0 = time.perf_counter()
    while True:
        for p in files:
            x = tf(Image.open(p).convert("RGB"))
            n += 1
        el = time.perf_counter() - t0
        if el >= min_seconds:
            break
    # Decode alone, for the breakdown.
    t1 = time.perf_counter()
    for p in files:
        Image.open(p).convert("RGB").load()
    dec = (time.perf_counter() - t1) / len(files)
    import PIL
    import torchvision
    print(json.dumps({"images_per_s": n / el, "decode_ms": dec * 1000, "images": n,
                      "pillow": PIL.__version__, "torchvision": torchvision.__version__}))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--make":
        make(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 32)
    elif len(sys.argv) == 2:
        bench(sys.argv[1])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
