#!/usr/bin/env python3
"""Convert a Tessera HDF5 checkpoint back into a PyTorch checkpoint.

    python3 tools/h5_to_pth.py IN.h5 OUT.pth

Every dataset under the `params/` group becomes a tensor named by its path below `params/`
(e.g. `params/blocks.0.attn.qkv.weight` -> `blocks.0.attn.qkv.weight`), with the dataset's dtype.
The output is `{"model": state_dict}`, which the MAE/SAIM/CAE fine-tuning scripts load.

    python3 tools/h5_to_pth.py IN.h5 OUT.pth --layout semaim

writes SemAIM's layout instead (main_pretrain.py's save_dict, which its main_finetune / main_linprobe /
main_knn read): `{"state_dict": {"module." + name: tensor}, "model": ARCH}`, and, when the
checkpoint holds an EMA model (`ema.*` names, model.use_ema), `"ema_state_dict"` with those names
unprefixed.
"""
import argparse
import os

import h5py
import numpy as np
import torch


def collect(group, prefix, out):
    # Iterating a group follows its creation order when tracked (pth_to_h5.py tracks it),
    # otherwise names come alphabetically.
    for key in group:
        item = group[key]
        name = f"{prefix}{key}"
        if isinstance(item, h5py.Group):
            collect(item, name + "/", out)
        elif isinstance(item, h5py.Dataset):
            array = np.array(item[()], order="C")   # keeps 0-d (scalar) shapes
            if array.dtype.kind not in "fiub":
                raise SystemExit(f"error: params/{name} is not numeric ({array.dtype})")
            out[name] = torch.from_numpy(array)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="Tessera HDF5 checkpoint")
    parser.add_argument("output", help="PyTorch file to write")
    parser.add_argument("--layout", choices=["model", "semaim"], default="model",
                        help="model: {'model': state_dict} (MAE, SAIM, CAE); semaim: {'state_dict': module.-prefixed, "
                             "'ema_state_dict'} (default: %(default)s)")
    parser.add_argument("--arch", default="aim_base", help="the 'model' entry of the semaim layout (default: %(default)s)")
    args = parser.parse_args()

    state = {}
    with h5py.File(args.input, "r") as f:
        if "params" not in f or not isinstance(f["params"], h5py.Group):
            raise SystemExit(f"error: {args.input} has no 'params' group")
        collect(f["params"], "", state)
        fmt = f.attrs.get("format")
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    if fmt is not None and fmt != "tessera-checkpoint-v1":
        print(f"warning: unexpected format attribute {fmt!r}")

    temporary = f"{args.output}.tmp-{os.getpid()}"
    try:
        if args.layout == "semaim":
            online = {f"module.{k}": v for k, v in state.items() if not k.startswith("ema.")}
            ema = {k[len("ema."):]: v for k, v in state.items() if k.startswith("ema.")}
            out = {"state_dict": online, "model": args.arch}
            if ema:
                out["ema_state_dict"] = ema
            torch.save(out, temporary)
        else:
            torch.save({"model": state}, temporary)
        os.replace(temporary, args.output)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    print(f"wrote {len(state)} tensors ({sum(t.numel() for t in state.values()):,} values) to {args.output}")


if __name__ == "__main__":
    main()
