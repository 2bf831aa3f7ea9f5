#!/usr/bin/env python3
"""Convert a PyTorch checkpoint (.pth, .bin) or a .safetensors file into a Tessera HDF5 checkpoint.

    python3 tools/pth_to_h5.py IN.pth OUT.h5 [--key model|state_dict] [--strip-prefix module.]
    python3 tools/pth_to_h5.py IN.safetensors OUT.h5 [--strip-prefix module.]

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
A .safetensors file (one flat state dict) is read directly, without the safetensors package:
F32/F64/F16/BF16 and integer/bool tensors become float32, as torch tensors do in a .pth; names
keep the file's order (the safetensors writer sorts by dtype and name, not in PyTorch's order).
timm ViTs (e.g. `vit_base_patch16_224.mae`: the Hub's model.safetensors, or a .pth/.bin holding
its bare state dict) already use MAE's names (cls_token, pos_embed, patch_embed.proj.*, blocks.<i>.*,
norm.*), so they convert as MAE-layout encoders usable as `init:`. Empty `head.*` tensors (a
classifier with 0 classes) are dropped.
The output is written to a temporary file and renamed (tools/h5_checkpoint.py).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

from h5_checkpoint import fail, float32_array, is_state_dict, torch_load, write_checkpoint

# safetensors dtype -> little-endian numpy dtype of the stored bytes (BF16 is widened by hand).
SAFETENSORS_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}


def read_safetensors(path):
    """name -> float32 array of a .safetensors file, in the header's order: an 8-byte little-endian
    header length N, N bytes of JSON {name: {dtype, shape, data_offsets}} (offsets counted from the
    byte after the header), then the data."""
    name = os.path.basename(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size < 8:
            fail(f"{name}: {size} bytes, too short for a safetensors header")
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > size - 8:
            fail(f"{name}: header length {header_len} exceeds the file ({size} bytes); truncated or not safetensors")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            fail(f"{name}: header is not valid JSON ({e})")
        if not isinstance(header, dict):
            fail(f"{name}: header is a JSON {type(header).__name__}, not an object")
        header.pop("__metadata__", None)
        data_start, data_len = 8 + header_len, size - 8 - header_len
        arrays = {}
        for tensor, info in header.items():
            try:
                dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            except (TypeError, KeyError, ValueError):
                fail(f"{name}: entry {tensor!r} lacks dtype/shape/data_offsets [begin, end]")
            if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
                fail(f"{name}: {tensor!r} has unsupported dtype {dtype!r} (known: {', '.join(SAFETENSORS_DTYPES)})")
            if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
                fail(f"{name}: {tensor!r} has an invalid shape {shape!r}")
            if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= data_len):
                fail(f"{name}: {tensor!r} has data_offsets [{begin}, {end}] outside the {data_len} data bytes")
            stored = np.dtype(SAFETENSORS_DTYPES[dtype])
            if end - begin != math.prod(shape) * stored.itemsize:
                fail(f"{name}: {tensor!r} has {end - begin} bytes, {dtype} {shape} needs {math.prod(shape) * stored.itemsize}")
            f.seek(data_start + begin)
            values = np.frombuffer(f.read(end - begin), dtype=stored)
            if dtype == "BF16":
                values = (values.astype(np.uint32) << 16).view(np.float32)
            arrays[tensor] = values.astype(np.float32).reshape(shape)
    if not arrays:
        fail(f"{name}: holds no tensors")
    return arrays


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


def strip(name, prefix):
    return name[len(prefix):] if prefix and name.startswith(prefix) else name


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="PyTorch checkpoint (.pth, .bin) or .safetensors file")
    parser.add_argument("output", help="HDF5 file to write")
    parser.add_argument("--key", choices=["model", "state_dict"], default=None,
                        help="which entry holds the weights (default: auto; not for .safetensors)")
    parser.add_argument("--strip-prefix", default=None, metavar="PREFIX",
                        help="remove PREFIX from names that start with it (default: 'module.' if all names have it)")
    args = parser.parse_args()

    if args.input.lower().endswith(".safetensors"):
        if args.key is not None:
            fail(f"{os.path.basename(args.input)}: --key does not apply to .safetensors (one flat state dict)")
        state, where, ema = read_safetensors(args.input), "the .safetensors file", None
    else:
        ckpt, _ = torch_load(args.input)   # MAE-style checkpoints pickle argparse.Namespace in "args"
        state, key = pick_state_dict(ckpt, args.key)
        where = f"checkpoint['{key}']" if key else "the checkpoint itself"
        ema = ckpt.get("ema_state_dict") if isinstance(ckpt, dict) else None

    prefix = args.strip_prefix
    if prefix is None:
        prefix = "module." if all(str(k).startswith("module.") for k in state) else ""

    tensors = {}
    for name, value in state.items():
        if not (torch.is_tensor(value) or isinstance(value, np.ndarray)):
            print(f"skipping non-tensor entry {name!r} ({type(value).__name__})", file=sys.stderr)
            continue
        name = strip(str(name), prefix)
        if "/" in name or not name:
            raise SystemExit(f"error: unusable parameter name {name!r}")
        if name in tensors:
            raise SystemExit(f"error: two entries map to {name!r} after stripping {prefix!r}")
        array = float32_array(value) if torch.is_tensor(value) else value
        if name.startswith("head.") and array.size == 0:
            print(f"dropping empty {name} {list(array.shape)} (a classifier with 0 classes)")
            continue
        tensors[name] = array
    if is_state_dict(ema):
        for name, value in ema.items():
            if torch.is_tensor(value):
                tensors["ema." + strip(str(name), prefix)] = float32_array(value)
        print(f"added checkpoint['ema_state_dict'] under 'ema.' ({len(ema)} entries)")

    write_checkpoint(args.output, tensors, os.path.basename(args.input))

    total = sum(a.size for a in tensors.values())
    stripped = f", stripped prefix {prefix!r}" if prefix else ""
    print(f"wrote {len(tensors)} tensors ({total:,} values) from {where}{stripped} to {args.output}")


if __name__ == "__main__":
    main()
