"""What the PyTorch benchmark scripts of `tessera bench train` share: the peak-memory measure and the
timed training loop, so every method's PyTorch row is measured the same way.

`train_and_report(model, args, noise_len, base)` builds AdamW (lr 1e-4, betas 0.9/0.95, wd 0.05),
compiles the model when args.mode == "compile" (as `compile(model)`: torch.compile unless the script
passes its own, e.g. one compiling the parts of a step that should not be one graph), then runs
args.warmup untimed and args.steps timed steps of forward(images, noise) + backward + step +
zero_grad on fixed synthetic images, drawing the noise before each timed region, and prints one
JSON line
  {"images_per_s": ..., "step_seconds": [...], "peak_bytes": ..., "threads": ..., "loss": ...}
peak_bytes is the growth of the process's peak resident set over `base` (taken just before the
model was built), the same measure Tessera reports.
"""
import json
import resource
import time

import torch


def patchify(imgs, p):
    """(B, C, H, W) -> (B, L, p*p*C) in MAE/SAIM order (row, col, channel fastest)."""
    b, c, hh, ww = imgs.shape
    h, w = hh // p, ww // p
    x = imgs.reshape(b, c, h, p, w, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, h * w, p * p * c)


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def train_and_report(model, args, noise_len, base, compile=torch.compile):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    fwd = compile(model) if args.mode == "compile" else model
    imgs = torch.randn(args.batch, 3, args.img, args.img)
    times = []
    for i in range(args.warmup + args.steps):
        noise = torch.rand(args.batch, noise_len)
        t0 = time.perf_counter()
        loss = fwd(imgs, noise)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"images_per_s": args.batch * len(times) / sum(times), "step_seconds": times,
                      "peak_bytes": peak - base, "threads": torch.get_num_threads(), "loss": float(loss.detach())}))
