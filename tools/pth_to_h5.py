#!/usr/bin/env python3
"""Convert a PyTorch checkpoint (.pth) into a Tessera HDF5 checkpoint.

    python3 tools/pth_to_h5.py IN.pth OUT.h5 [--key model|state_dict] [--strip-prefix module.]

Every tensor of the chosen state dict becomes a float32 dataset `params/<name>`, the PyTorch
name kept as is (dots included), e.g. `params/blocks.0.attn.qkv.weight`. The root group gets the
attributes `format=tessera-checkpoint-v1` and `source=<input file name>`.

Which state dict (see spec section 10):
  * MAE, SAIM, MAE-priv, CAE: checkpoint["model"] (a dict of tensors).
  * SemAIM: checkpoint["state_dict"], whose names carry the DDP prefix "module."; there
    checkpoint["model"] is the architecture name (a string) and is ignored.
  * A bare state dict (a dict of tensors) is used as is.
  * SemAIM with --use_ema_model also saves checkpoint["ema_state_dict"]; its tensors are added
    under `ema.<name>` (Tessera's name for the EMA model), so a converted run resumes with its EMA.
Without --key the first of state_dict / model that is a dict of tensors is used. Without
--strip-prefix, a "module." prefix shared by every name is removed (pass --strip-prefix '' to
keep it).
The output is written to a temporary file and renamed (tools/h5_checkpoint.py).
"""
import argparse
import os
import sys

import torch

from h5_checkpoint import float32_array, is_state_dict, torch_load, write_checkpoint


def pick_state_dict(ckpt, key):
    if key is not None:
        if not isinstance(ckpt, dict) or key not in ckpt:
            raise SystemExit(f"error: checkpoint has no key '{key}' (keys: {list_keys(ckpt)})")
        if not is_state_dict(ckpt[key]):
            raise SystemExit(f"error: checkpoint['{key}'] is a {type(ckpt[key]).__name__}, not a state dict")
        return ckpt[key], key
    for candidate in ("state_dict", "model"):
        if isinstance(ckpt, dict) and is_state_dict(ckpt.get(candidate)):
            return ckpt[candidate], candidate
    if is_state_dict(ckpt):
        return ckpt, ""
    raise SystemExit(f"error: no state dict found (keys: {list_keys(ckpt)}); pass --key")


def list_keys(obj):
    return sorted(map(str, obj.keys())) if isinstance(obj, dict) else type(obj).__name__


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="PyTorch checkpoint (.pth)")
    parser.add_argument("output", help="HDF5 file to write")
    parser.add_argument("--key", choices=["model", "state_dict"], default=None,
                        help="which entry holds the weights (default: auto)")
    parser.add_argument("--strip-prefix", default=None, metavar="PREFIX",
                        help="remove PREFIX from names that start with it (default: 'module.' if all names have it)")
    args = parser.parse_args()

    ckpt, _ = torch_load(args.input)   # MAE-style checkpoints pickle argparse.Namespace in "args"
    state, key = pick_state_dict(ckpt, args.key)

    prefix = args.strip_prefix
    if prefix is None:
        prefix = "module." if all(str(k).startswith("module.") for k in state) else ""

    tensors = {}
    for name, value in state.items():
        if not torch.is_tensor(value):
            print(f"skipping non-tensor entry {name!r} ({type(value).__name__})", file=sys.stderr)
            continue
        name = str(name)
        if prefix and name.startswith(prefix):
            name = name[len(prefix):]
        if "/" in name or not name:
            raise SystemExit(f"error: unusable parameter name {name!r}")
        if name in tensors:
            raise SystemExit(f"error: two entries map to {name!r} after stripping {prefix!r}")
        tensors[name] = float32_array(value)
    ema = ckpt.get("ema_state_dict") if isinstance(ckpt, dict) else None
    if is_state_dict(ema):
        for name, value in ema.items():
            if torch.is_tensor(value):
                name = str(name)
                if prefix and name.startswith(prefix):
                    name = name[len(prefix):]
                tensors["ema." + name] = float32_array(value)
        print(f"added checkpoint['ema_state_dict'] under 'ema.' ({len(ema)} entries)")

    write_checkpoint(args.output, tensors, os.path.basename(args.input))

    total = sum(a.size for a in tensors.values())
    where = f"checkpoint['{key}']" if key else "the checkpoint itself"
    stripped = f", stripped prefix {prefix!r}" if prefix else ""
    print(f"wrote {len(tensors)} tensors ({total:,} values) from {where}{stripped} to {args.output}")


if __name__ == "__main__":
    main()
