#!/usr/bin/env python3
"""PyTorch reference numbers for SAIM, produced by the official qiy20/SAIM code on a tiny model.

Nothing of SAIM is restated here: at run time the script exports models_saim.py, util/blocks.py and
util/pos_embed.py from a snapshot of the official repository (a git directory, bare or not) into a
temporary folder, patches the few spots that newer timm / numpy no longer accept, and imports
`models_saim.SaimViT` from there. The snapshot is looked up in, by priority:
    --saim-repo PATH,  $SAIM_REPO,  /work/.mirror/qiy20+SAIM/repo
(any git directory holding the official sources at the chosen --rev, default HEAD).

Model: img 32, patch 4, 3 channels, width 64, depth 4, 4 heads, mlp_ratio 4, 2 query blocks,
Gaussian target blur (kernel 3, sigma 1), norm_pix_loss, no drop path. Two fixtures:
    saim.h5         share_weight=False, prediction head MLP,    L2 loss
    saim_shared.h5  share_weight=True,  prediction head LINEAR, L1 loss; width 32, depth 2, 2 heads
Weights come from the official initialize_weights after torch.manual_seed(0). The permutation noise
that generate_attention_mask would draw with torch.rand is replaced by our own U[0,1) tensor, so the
Swift side can rebuild the same attention masks; the replacement is checked before use.

Each file holds
    params/<name>        every model.state_dict() entry, written by tools/pth_to_h5.py (for
                         share_weight both blocks.* and query_blocks.* appear, holding the same
                         tensors; gaussian_blur.weight is the blur kernel buffer)
    images [3,3,32,32]   noise [3,64]                                   (float32)
    f32/loss (float64 scalar of the float32 loss), f32/pred [3,65,48] (forward_saim output, cls row
    included), f32/grads/<name> for every trainable parameter (named_parameters, requires_grad)
    f64/loss, f64/pred   the same forward in float64 (model.double()), for reference
and root attributes: format/source (from the converter), config (JSON of the hyper-parameters),
saim_repo_commit.

Run from the repository root (idempotent, overwrites both fixtures):
    python3 tools/make_saim_fixture.py [--saim-repo PATH] [--out DIR]
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

import official_code

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "Tests", "TesseraTests", "Fixtures")
DEFAULT_REPO = "/work/.mirror/qiy20+SAIM/repo"
SOURCES = ["models_saim.py", "util/blocks.py", "util/pos_embed.py"]

BASE = dict(img_size=32, patch_size=4, in_chans=3, embed_dim=64, depth=4, num_heads=4,
            mlp_ratio=4.0, drop_path_rate=0.0, query_depth=2, gaussian_kernel_size=3,
            gaussian_sigma=1, norm_pix_loss=True)
VARIANTS = {
    "saim.h5": dict(share_weight=False, prediction_head_type="MLP", loss_type="L2"),
    # Smaller (width 32, depth 2, 2 heads, 2 query blocks), so the second file stays small.
    "saim_shared.h5": dict(share_weight=True, prediction_head_type="LINEAR", loss_type="L1",
                           embed_dim=32, depth=2, num_heads=2, query_depth=2),
}
BATCH = 3


# ----------------------------------------------------------------------------- official code

def export_official(repo, rev, into):
    """The official sources at `rev`, patched (tools/official_code.py); returns the commit id."""
    return official_code.export(repo, rev, SOURCES, into)


class _NoiseTorch:
    """Stands in for the `torch` module inside models_saim: everything is torch's, except that
    torch.rand(N, L, ...) returns the given noise (counting the calls)."""

    def __init__(self, noise):
        self._noise = noise
        self.calls = 0

    def rand(self, *size, device=None, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        assert shape == tuple(self._noise.shape), f"rand{shape} but the fixture noise is {tuple(self._noise.shape)}"
        self.calls += 1
        return self._noise.clone().to(device) if device is not None else self._noise.clone()

    def __getattr__(self, name):
        return getattr(torch, name)


@contextlib.contextmanager
def fixed_noise(models_saim, noise):
    fake = _NoiseTorch(noise)
    saved = models_saim.torch
    models_saim.torch = fake
    try:
        yield fake
    finally:
        models_saim.torch = saved


def check_masks(model, models_saim, imgs, noise):
    """The masks built under the patch must be the ones the noise defines."""
    with torch.no_grad(), fixed_noise(models_saim, noise) as fake:
        mask_h, mask_g = model.generate_attention_mask(model.patch_embed(imgs))
    assert fake.calls == 1, "generate_attention_mask did not draw its noise through torch.rand"
    n, L = noise.shape
    assert mask_h.shape == mask_g.shape == (n, 1, L + 1, L + 1)
    inf = torch.tensor(-float("inf"))
    zero = torch.tensor(0.0)
    a, b = noise.unsqueeze(-1), noise.unsqueeze(1)  # [n, i, 1], [n, 1, j]
    assert torch.equal(mask_h[:, 0, 1:, 1:], torch.where(a < b, inf, zero)), "content mask differs"
    assert torch.equal(mask_g[:, 0, 1:, 1:], torch.where(a <= b, inf, zero)), "query mask differs"
    for m in (mask_h, mask_g):
        assert torch.all(m[:, 0, :, 0] == 0) and torch.all(torch.isinf(m[:, 0, 0, 1:]))
    # and the forward really uses it: a different noise gives a different loss
    with torch.no_grad():
        with fixed_noise(models_saim, noise):
            l1 = model(imgs).item()
        with fixed_noise(models_saim, noise.flip(1)):
            l2 = model(imgs).item()
    assert l1 != l2, "loss does not depend on the patched noise"


def run_forward(model, models_saim, imgs, noise):
    """loss = model(imgs) under the fixed noise; also returns forward_saim's output."""
    captured = {}
    official_loss = model.forward_loss

    def forward_loss(imgs_, pred):
        captured["pred"] = pred
        return official_loss(imgs_, pred)

    model.forward_loss = forward_loss
    try:
        with fixed_noise(models_saim, noise) as fake:
            loss = model(imgs)
    finally:
        del model.forward_loss
    assert fake.calls == 1
    return loss, captured["pred"]


# ----------------------------------------------------------------------------- fixtures

def make_fixture(models_saim, filename, variant, out_dir, tmp, commit):
    config = dict(BASE, **variant)
    torch.manual_seed(0)
    model = models_saim.SaimViT(**config)
    model.train()
    imgs = torch.randn(BATCH, config["in_chans"], config["img_size"], config["img_size"])
    L = (config["img_size"] // config["patch_size"]) ** 2
    noise = torch.rand(BATCH, L)
    assert all(row.unique().numel() == L for row in noise), "ties in the noise would make the order ambiguous"

    # weights: through the repository's own converter
    pth = os.path.join(tmp, filename.replace(".h5", ".pth"))
    converted = os.path.join(tmp, "converted_" + filename)
    torch.save({"model": model.state_dict()}, pth)
    subprocess.run([sys.executable, os.path.join(HERE, "pth_to_h5.py"), pth, converted], check=True)

    check_masks(model, models_saim, imgs, noise)

    model.zero_grad(set_to_none=True)
    loss32, pred32 = run_forward(model, models_saim, imgs, noise)
    loss32.backward()
    grads = {name: p.grad.detach().numpy().astype(np.float32)
             for name, p in model.named_parameters() if p.requires_grad}
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"

    model64 = model.double()  # in place; the float32 results above are already taken
    with torch.no_grad():
        loss64, pred64 = run_forward(model64, models_saim, imgs.double(), noise.double())

    path = os.path.join(out_dir, filename)
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(converted, "r") as src, h5py.File(temporary, "w", libver=("earliest", "v110")) as f:
            for key, value in src.attrs.items():
                f.attrs[key] = value
            params = f.create_group("params", track_order=True)
            for name in src["params"]:
                params.create_dataset(name, data=src["params"][name][()])
            assert set(src["params"]) == set(model.state_dict()), "converter dropped state-dict entries"
            f["images"] = imgs.numpy().astype(np.float32)
            f["noise"] = noise.numpy().astype(np.float32)
            f["f32/loss"] = np.array(loss32.item(), dtype=np.float64)
            f["f32/pred"] = pred32.detach().numpy().astype(np.float32)
            g = f.create_group("f32/grads", track_order=True)
            for name, grad in grads.items():
                g.create_dataset(name, data=grad)
            f["f64/loss"] = np.array(loss64.item(), dtype=np.float64)
            f["f64/pred"] = pred64.numpy().astype(np.float32)
            f.attrs["config"] = json.dumps(dict(config, batch=BATCH))
            f.attrs["saim_repo_commit"] = commit
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)

    n_state = len(model.state_dict())
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{filename}: loss f32 {loss32.item():.9g}  f64 {loss64.item():.17g}  "
          f"|diff| {abs(loss32.item() - loss64.item()):.2e}; {n_state} state-dict entries, "
          f"{len(grads)} grads, {n_params:,} trainable values; {os.path.getsize(path):,} bytes")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saim-repo", default=os.environ.get("SAIM_REPO", DEFAULT_REPO),
                        help="git directory of the official qiy20/SAIM sources (default: $SAIM_REPO or %(default)s)")
    parser.add_argument("--rev", default="HEAD", help="revision to export (default: %(default)s)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="fixture directory (default: Tests/TesseraTests/Fixtures)")
    args = parser.parse_args()

    repo = args.saim_repo
    if os.path.isdir(os.path.join(repo, ".git")):
        repo = os.path.join(repo, ".git")
    if not os.path.isdir(repo):
        raise SystemExit(f"error: no SAIM snapshot at {repo} (pass --saim-repo or set SAIM_REPO)")
    os.makedirs(args.out, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="saim-fixture-") as tmp:
        code = os.path.join(tmp, "official")
        commit = export_official(repo, args.rev, code)
        sys.path.insert(0, code)
        try:
            import models_saim
        finally:
            sys.path.remove(code)
        print(f"official SAIM code: {commit} from {repo} (imported from {models_saim.__file__})")
        for filename, variant in VARIANTS.items():
            make_fixture(models_saim, filename, variant, args.out, tmp, commit)


if __name__ == "__main__":
    main()
