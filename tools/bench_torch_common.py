"""What the PyTorch benchmark scripts of `tessera bench train` share: the command line, the
peak-memory measure and the timed training loop, so every method's PyTorch row is measured the same way.

`main(build, flags, floats=(), attention=True, check=None, compile=torch.compile)` is a script's
whole main: the integer options --width 192 --depth 12 --heads 3 --img 32 --patch 4 (MODEL_FLAGS),
then the script's own `flags`, then --batch 128 --steps 10 --warmup 3 --threads 2 (RUN_FLAGS), the
float options `floats`, --mode eager|compile (default eager), --attention sdpa|explicit (default
sdpa; unless attention=False) and, when the script has a `check(args, dir)`,
--check-against-official DIR, which runs that check instead of benchmarking. Otherwise it sets
torch's threads, seeds 0, takes the resident size, builds `build(args)` and calls train_and_report.

`train_and_report(model, args, noise_len, base)` builds AdamW (lr 1e-4, betas 0.9/0.95, wd 0.05),
compiles the model when args.mode == "compile" (as `compile(model)`: torch.compile unless the script
passes its own, e.g. one compiling the parts of a step that should not be one graph), then runs
args.warmup untimed and args.steps timed steps of forward(images, noise) + backward + step +
zero_grad on fixed synthetic images, drawing the noise (batch, noise_len; main passes model.L)
before each timed region, and prints one JSON line
  {"images_per_s": ..., "step_seconds": [...], "peak_bytes": ..., "threads": ..., "loss": ...}
peak_bytes is the growth of the process's peak resident set over `base` (taken just before the
model was built), the same measure Tessera reports.

`parse_run_args(flags)`, `timed(args, step, prepare)` and `report(args, times, base, **extra)` are the
command line, the timed loop and the JSON line for scripts with a step of their own (fine-tuning,
inference).

`norm_pix_target(imgs, p)` is the norm-pix pixel target of MAE / SAIM / SemAIM / CAE: every
patch (patchify order) minus its mean, over sqrt(its unbiased variance + 1e-6).
"""
import argparse
import json
import resource
import time

import torch

MODEL_FLAGS = [("width", 192), ("depth", 12), ("heads", 3), ("img", 32), ("patch", 4)]
RUN_FLAGS = [("batch", 128), ("steps", 10), ("warmup", 3), ("threads", 2)]


def patchify(imgs, p):
    """(B, C, H, W) -> (B, L, p*p*C) in MAE/SAIM order (row, col, channel fastest)."""
    b, c, hh, ww = imgs.shape
    h, w = hh // p, ww // p
    x = imgs.reshape(b, c, h, p, w, p)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(b, h * w, p * p * c)


def norm_pix_target(imgs, p):
    target = patchify(imgs, p)
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + 1e-6) ** 0.5


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def report(args, times, base, **extra):
    """Prints the JSON line the Tessera benchmark reads: rate, step times, peak-memory growth over
    `base`, threads, and any `extra` fields (e.g. loss)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"images_per_s": args.batch * len(times) / sum(times), "step_seconds": times,
                      "peak_bytes": peak - base, "threads": torch.get_num_threads(), **extra}))


def parse_run_args(flags=()):
    """MODEL_FLAGS, the script's own integer `flags`, RUN_FLAGS and --mode eager|compile; sets torch's
    threads and seeds 0."""
    ap = argparse.ArgumentParser()
    for k, v in MODEL_FLAGS + list(flags) + RUN_FLAGS:
        ap.add_argument("--" + k, type=int, default=v)
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    return a


def timed(args, step, prepare=lambda i: None):
    """Runs args.warmup untimed and args.steps timed calls of step(prepared) (prepare(i) runs before the
    timer starts); returns the timed seconds and the last call's result."""
    times, out = [], None
    for i in range(args.warmup + args.steps):
        inputs = prepare(i)
        t0 = time.perf_counter()
        out = step(inputs)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return times, out


def train_and_report(model, args, noise_len, base, compile=torch.compile):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    fwd = compile(model) if args.mode == "compile" else model
    imgs = torch.randn(args.batch, 3, args.img, args.img)

    def step(noise):
        loss = fwd(imgs, noise)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    times, loss = timed(args, step, prepare=lambda i: torch.rand(args.batch, noise_len))
    report(args, times, base, loss=float(loss.detach()))


def main(build, flags, floats=(), attention=True, check=None, compile=torch.compile):
    ap = argparse.ArgumentParser()
    for k, v in MODEL_FLAGS + list(flags) + RUN_FLAGS:
        ap.add_argument("--" + k, type=int, default=v)
    for k, v in floats:
        ap.add_argument("--" + k, type=float, default=v)
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    if attention:
        ap.add_argument("--attention", choices=["sdpa", "explicit"], default="sdpa")
    if check is not None:
        ap.add_argument("--check-against-official", metavar="DIR")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if check is not None and a.check_against_official:
        return check(a, a.check_against_official)
    torch.manual_seed(0)
    base = rss_bytes()
    model = build(a)
    train_and_report(model, a, model.L, base, compile=compile)
