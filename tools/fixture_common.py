"""What the fixture scripts that run official code (make_saim_fixture.py, make_semaim_fixture.py,
make_semaim_order_fixture.py, make_cae_mask_fixture.py, make_cae_fixture.py, make_attentive_fixture.py)
share: their command line, the snapshot lookup, the converter runs and the writing of fixture files.
Running the official code itself is tools/official_code.py's part.

Command line. `parse_args(doc, official)` for the official repository "owner/Name" gives
    --name-repo PATH   default $NAME_REPO, else /work/.mirror/owner+Name/repo
    --rev REV          default HEAD
    --out              default `out` (the fixture directory Tests/TesseraTests/Fixtures)
with name the repository's name lower-cased (qiy20/SAIM: --saim-repo, $SAIM_REPO). args.repo is the
git directory to export from: PATH itself (a bare repository) or, for a checkout, PATH/.git; when
neither is a directory the script stops with `error: no Name snapshot at PATH (pass --name-repo or
set NAME_REPO)`. The output folder (--out, or with out_is_file=True the folder of --out) is created. `exported(args, sources, prefix)` is a temporary folder with the official `sources`
of args.repo at args.rev exported below <tmp>/official (official_code.export: nothing of the
official code is kept in this repository); it yields (tmp, that folder, the commit id).

Files.
  * `convert_state(checkpoint, tmp, stem)`: torch.save(checkpoint) to <tmp>/<stem>.pth, converted by
    tools/pth_to_h5.py to <tmp>/converted_<stem>.h5 (its `source` attribute is "<stem>.pth");
    `run_tool(script, *args)` runs another script of tools/ the same way (python3, check).
  * `write_fixture(path, converted, state_keys, datasets, attrs)`: the converted file's root
    attributes and params/<name> (its names must equal state_keys, in order), then `datasets` in
    order -- a dict value becomes a creation-ordered group of datasets, e.g. "f32/grads" -- then
    `attrs`. assign=True writes the datasets as f[name] = value (h5py links an anonymous dataset:
    another byte layout than create_dataset, which saim.h5 was made with).
  * `install(sources, out_dir)`: copies each file into out_dir through a temporary file and a rename
    (h5_checkpoint.replacing), once everything has been computed and checked, and prints
    "wrote a.h5 (n bytes), ... to out_dir" (`report`).
Helpers: f32 / scalar (float32 array, float64 scalar of a tensor), generator(seed), grads_of(model)
(every requires_grad parameter's gradient, checked to exist, and none for frozen ones),
perturb_layer_norms(module) (weight 1 + 0.1 randn, bias 0.1 randn, global RNG), load_h5_params,
summary (the one-line loss report).
"""
import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import torch.nn as nn

import official_code
from h5_checkpoint import LIBVER, replacing

TOOLS = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(TOOLS, "..", "Tests", "TesseraTests", "Fixtures")


# ----------------------------------------------------------------------------- command line

def parse_args(doc, official, out=FIXTURES, out_help="fixture directory (default: Tests/TesseraTests/Fixtures)",
               out_is_file=False):
    owner, name = official.split("/")
    flag, env = f"--{name.lower()}-repo", f"{name.upper()}_REPO"
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(flag, dest="repo", metavar="PATH",
                        default=os.environ.get(env, f"/work/.mirror/{owner}+{name}/repo"),
                        help=f"git directory of the official {official} sources (default: ${env} or %(default)s)")
    parser.add_argument("--rev", default="HEAD", help="revision to export (default: %(default)s)")
    parser.add_argument("--out", default=out, help=out_help)
    args = parser.parse_args()
    if os.path.isdir(os.path.join(args.repo, ".git")):
        args.repo = os.path.join(args.repo, ".git")
    if not os.path.isdir(args.repo):
        raise SystemExit(f"error: no {name} snapshot at {args.repo} (pass {flag} or set {env})")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)) if out_is_file else args.out, exist_ok=True)
    return args


@contextlib.contextmanager
def exported(args, sources, prefix):
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        code = os.path.join(tmp, "official")
        commit = official_code.export(args.repo, args.rev, sources, code)
        yield tmp, code, commit


# ----------------------------------------------------------------------------- files

def run_tool(script, *args, env=None):
    subprocess.run([sys.executable, os.path.join(TOOLS, script), *args], check=True, env=env)


def convert_state(checkpoint, tmp, stem):
    pth = os.path.join(tmp, stem + ".pth")
    converted = os.path.join(tmp, f"converted_{stem}.h5")
    torch.save(checkpoint, pth)
    run_tool("pth_to_h5.py", pth, converted)
    return converted


def write_fixture(path, converted, state_keys, datasets, attrs, assign=False):
    with h5py.File(converted, "r") as src, h5py.File(path, "w", libver=LIBVER) as f:
        assert list(src["params"]) == list(state_keys), "converter names differ from model.state_dict()"
        for key, value in src.attrs.items():
            f.attrs[key] = value
        params = f.create_group("params", track_order=True)
        for name in src["params"]:
            params.create_dataset(name, data=src["params"][name][()])
        for name, value in datasets.items():
            if isinstance(value, dict):
                g = f.create_group(name, track_order=True)
                for key, array in value.items():
                    g.create_dataset(key, data=array)
            elif assign:
                f[name] = value
            else:
                f.create_dataset(name, data=value)
        for key, value in attrs.items():
            f.attrs[key] = value


def report(paths, out_dir):
    print("wrote " + ", ".join(f"{os.path.basename(p)} ({os.path.getsize(os.path.join(out_dir, os.path.basename(p))):,} bytes)"
                               for p in paths) + f" to {os.path.normpath(out_dir)}")


def install(sources, out_dir):
    for src in sources:
        with replacing(os.path.join(out_dir, os.path.basename(src))) as temporary:
            shutil.copyfile(src, temporary)
    report(sources, out_dir)


def load_h5_params(path):
    with h5py.File(path, "r") as f:
        return {name: torch.from_numpy(f["params"][name][()]) for name in f["params"]}, dict(f.attrs)


# ----------------------------------------------------------------------------- helpers

def f32(t):
    return t.detach().numpy().astype(np.float32)


def scalar(t):
    return np.array(t.item(), dtype=np.float64)


def generator(seed):
    return torch.Generator().manual_seed(seed)


def grads_of(model):
    named = dict(model.named_parameters())
    missing = [n for n, p in named.items() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"
    stray = [n for n, p in named.items() if not p.requires_grad and p.grad is not None]
    assert not stray, f"gradients for frozen parameters {stray}"
    return {n: f32(p.grad) for n, p in named.items() if p.requires_grad}


@torch.no_grad()
def perturb_layer_norms(module):
    """Every nn.LayerNorm: weight 1 + 0.1 randn, bias 0.1 randn (global RNG, in modules() order);
    returns the ids of those parameters."""
    norm_params = set()
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.copy_(1 + 0.1 * torch.randn_like(m.weight))
            m.bias.copy_(0.1 * torch.randn_like(m.bias))
            norm_params |= {id(m.weight), id(m.bias)}
    return norm_params


def summary(filename, loss32, loss64, model, grads, path):
    n_state = len(model.state_dict())
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return (f"{filename}: loss f32 {loss32.item():.9g}  f64 {loss64.item():.17g}  "
            f"|diff| {abs(loss32.item() - loss64.item()):.2e}; {n_state} state-dict entries, "
            f"{len(grads)} grads, {n_params:,} trainable values; {os.path.getsize(path):,} bytes")
