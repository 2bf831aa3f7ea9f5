#!/usr/bin/env python3
"""Self-check of tools/pth_to_h5.py on a tiny timm ViT (needs torch, timm, h5py; seconds on a CPU).

    python3 tools/check_pth_to_h5.py

Builds timm's VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
num_classes=0) with random weights, checks that its state dict carries exactly MAE's names, and
converts it written three ways:
  * torch.save of the bare state dict (.pth), plus an empty head.weight/head.bias, which must be dropped;
  * a .safetensors written here by hand with numpy: F32 throughout except pos_embed as BF16 and
    blocks.0.mlp.fc1.weight as F16, which must come back as the widened values (and near the originals);
  * safetensors.torch.save_file, when the safetensors package is installed.
Every converted tensor must equal the original (exactly for F32), in the state dict's order for the
.pth. Damaged .safetensors files (cut inside the header, cut inside the data, an unknown dtype) must
fail with a one-line `error: ...` and leave no output. Prints `ok`.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
from timm.models.vision_transformer import VisionTransformer

TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pth_to_h5.py")
DEPTH = 2


def mae_names(depth):
    """The names of an official MAE encoder (models_mae / mae_pretrain_vit_*.pth), in its order."""
    names = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    for i in range(depth):
        for layer in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            names += [f"blocks.{i}.{layer}.weight", f"blocks.{i}.{layer}.bias"]
    return names + ["norm.weight", "norm.bias"]


def write_safetensors(path, arrays, dtypes):
    """arrays: name -> float32 array; dtypes: name -> 'F16' or 'BF16' for those not stored as F32."""
    header, chunks, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, array in arrays.items():
        dtype = dtypes.get(name, "F32")
        if dtype == "BF16":
            data = (array.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()   # truncating
        else:
            data = array.astype({"F32": "<f4", "F16": "<f2"}[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)   # the format pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def convert(src, dst):
    result = subprocess.run([sys.executable, TOOL, src, dst], capture_output=True, text=True)
    assert result.returncode == 0, f"{os.path.basename(src)}: exit {result.returncode}\n{result.stderr}"
    with h5py.File(dst, "r") as f:
        assert f.attrs["format"] == "tessera-checkpoint-v1" and f.attrs["source"] == os.path.basename(src)
        return {name: f["params"][name][()] for name in f["params"]}


def expect_equal(converted, expected, what):
    assert sorted(converted) == sorted(expected), f"{what}: names {sorted(set(converted) ^ set(expected))} differ"
    for name, array in expected.items():
        got = converted[name]
        assert got.dtype == np.float32 and got.shape == array.shape, f"{what}: {name} {got.dtype} {got.shape}"
        assert np.array_equal(got, array), f"{what}: {name} differs (max {np.abs(got - array).max()})"


def expect_failure(src, dst):
    result = subprocess.run([sys.executable, TOOL, src, dst], capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, f"{os.path.basename(src)}: accepted"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{os.path.basename(src)}: stderr {result.stderr!r}"
    assert not os.path.exists(dst), f"{os.path.basename(src)}: left {dst}"
    return lines[0]


def main():
    torch.manual_seed(0)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=DEPTH, num_heads=2, num_classes=0)
    state = model.state_dict()
    assert list(state) == mae_names(DEPTH), f"timm names differ from MAE's: {sorted(set(state) ^ set(mae_names(DEPTH)))}"
    original = {name: tensor.numpy().copy() for name, tensor in state.items()}

    with tempfile.TemporaryDirectory(prefix="check_pth_to_h5_") as tmp:
        # (a) .pth with an empty classifier head, which the converter drops
        pth = os.path.join(tmp, "vit.pth")
        torch.save(dict(state, **{"head.weight": torch.empty(0, 32), "head.bias": torch.empty(0)}), pth)
        converted = convert(pth, os.path.join(tmp, "pth.h5"))
        assert list(converted) == list(original), "the .pth order was not kept"
        expect_equal(converted, original, "pth")

        # (b) hand-written .safetensors with one BF16 and one F16 tensor
        hand = os.path.join(tmp, "hand.safetensors")
        write_safetensors(hand, original, {"pos_embed": "BF16", "blocks.0.mlp.fc1.weight": "F16"})
        converted = convert(hand, os.path.join(tmp, "hand.h5"))
        bf16 = (original["pos_embed"].view("<u4") >> 16).astype("<u2").view(np.int16)
        widened = dict(original)
        widened["pos_embed"] = torch.from_numpy(bf16).view(torch.bfloat16).float().numpy()
        widened["blocks.0.mlp.fc1.weight"] = original["blocks.0.mlp.fc1.weight"].astype(np.float16).astype(np.float32)
        expect_equal(converted, widened, "hand-written safetensors")
        # BF16 truncation: relative error below 2^-7; F16 rounding: 2^-11, or 2^-25 absolute for subnormals
        for name, rtol, atol in (("pos_embed", 2.0 ** -7, 0), ("blocks.0.mlp.fc1.weight", 2.0 ** -11, 2.0 ** -25)):
            assert np.allclose(converted[name], original[name], rtol=rtol, atol=atol), f"{name} far from the original"

        # (c) the safetensors package's own writer
        try:
            from safetensors.torch import save_file
        except ImportError:
            print("safetensors not installed: skipping its writer")
        else:
            package = os.path.join(tmp, "package.safetensors")
            save_file(state, package)
            expect_equal(convert(package, os.path.join(tmp, "package.h5")), original, "safetensors.torch.save_file")

        # damaged files
        with open(hand, "rb") as f:
            good = f.read()
        header_len = struct.unpack("<Q", good[:8])[0]
        header = json.loads(good[8:8 + header_len])
        header["norm.bias"]["dtype"] = "X9"
        unknown = json.dumps(header).encode()
        damaged = {"cut_header": good[:100], "cut_data": good[:len(good) - 64],
                   "unknown_dtype": struct.pack("<Q", len(unknown)) + unknown + good[8 + header_len:]}
        for stem, data in damaged.items():
            path = os.path.join(tmp, stem + ".safetensors")
            with open(path, "wb") as f:
                f.write(data)
            print(f"{stem}: {expect_failure(path, os.path.join(tmp, stem + '.h5'))}")
    print("ok")


if __name__ == "__main__":
    main()
