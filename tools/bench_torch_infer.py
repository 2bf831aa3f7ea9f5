"""PyTorch side of `tessera bench infer`: feature extraction with timm's own VisionTransformer
(num_classes=0, cls-token pooling after the final norm, as k-NN and the linear probe read the frozen
encoder) under torch.inference_mode, eager or torch.compile, on fixed synthetic images. Prints one
JSON line
  {"images_per_s": ..., "step_seconds": [...], "peak_bytes": ..., "threads": ...}
peak_bytes is the growth of the peak resident set over the size just before the model is built.

Usage: python3 tools/bench_torch_infer.py --width 192 --depth 12 --heads 3 --img 32 --patch 4 \
         --batch 256 --steps 10 --warmup 3 --threads 2 --mode eager
"""
import torch
from timm.models.vision_transformer import VisionTransformer

from bench_torch_common import parse_run_args, report, rss_bytes, timed


def main():
    a = parse_run_args()
    base = rss_bytes()
    model = VisionTransformer(img_size=a.img, patch_size=a.patch, embed_dim=a.width, depth=a.depth, num_heads=a.heads,
                              num_classes=0, global_pool="token").eval()
    fwd = torch.compile(model) if a.mode == "compile" else model
    imgs = torch.randn(a.batch, 3, a.img, a.img)
    with torch.inference_mode():
        times, f = timed(a, lambda _: fwd(imgs))
    assert f.shape == (a.batch, a.width)
    report(a, times, base)


if __name__ == "__main__":
    main()
