#!/usr/bin/env python3
"""Convert a CLIP or DINO ViT checkpoint into a Tessera HDF5 teacher for SemAIM feature targets.

    python3 tools/teacher_to_h5.py --kind clip IN OUT.h5 [--heads N]
    python3 tools/teacher_to_h5.py --kind dino IN OUT.h5 [--heads N]

SemAIM* predicts the patch features of a frozen teacher: OpenAI CLIP's image tower (predict_feature
'clip', the teacher being CLIP(...).visual) or a DINO ViT (predict_feature 'dino', a timm
VisionTransformer). This tool keeps only the teacher's vision-transformer weights, under their
PyTorch names, as float32 datasets `params/<name>`, e.g. `params/transformer.resblocks.0.ln_1.weight`.

--kind clip. IN is one of
  * an OpenAI CLIP TorchScript archive (the released ViT-B-16.pt), read with torch.jit.load;
  * a .pth holding a CLIP state dict (SemAIM's clip_vitbase16_pretrain.pth: the whole CLIP model,
    `visual.*` plus the text tower), possibly wrapped as checkpoint["state_dict"] / ["model"];
  * a bare image-tower state dict (names without the `visual.` prefix).
  Only the `visual.` entries are kept, the prefix removed: conv1.weight, class_embedding,
  positional_embedding, ln_pre.*, transformer.resblocks.<i>.{ln_1.*, attn.in_proj_weight,
  attn.in_proj_bias, attn.out_proj.*, ln_2.*, mlp.c_fc.*, mlp.c_proj.*}, ln_post.*, proj.
  The released weights are float16; they are widened to float32 (exactly).
  CLIP's blocks use LayerNorm eps 1e-5 and QuickGELU; the attention is nn.MultiheadAttention
  (in_proj_weight = [Wq; Wk; Wv] stacked along the rows).

--kind dino. IN is one of
  * a bare timm-named state dict (SemAIM's dino_vitbase16_pretrain.pth);
  * a DINO training checkpoint: checkpoint["teacher"] (or, failing that, ["state_dict"] / ["model"])
    whose names may carry `module.` and/or `backbone.` prefixes; they are removed.
  `head.*` entries (DINO's projection head) are dropped. timm names are kept: cls_token, pos_embed,
  patch_embed.proj.*, blocks.<i>.{norm1.*, attn.qkv.*, attn.proj.*, norm2.*, mlp.fc1.*, mlp.fc2.*},
  norm.*. (LayerNorm eps 1e-6 and exact GELU, as in timm's ViT.)

The root group gets the attributes `format=tessera-checkpoint-v1`, `source=<input file name>`,
`teacher=clip|dino` and `teacher_config`, a JSON object with the shape read off the weights:
    clip: width, layers, heads, patch, grid, output_dim
    dino: width, depth, heads, patch, grid
`heads` cannot be read off the weights: it is --heads if given, else width // 64 (true of every
released CLIP and DINO ViT); tiny test models need --heads. `grid` is the patch grid side, so
the image size is patch * grid. An input that is not such a state dict stops with one line
`error: ...` naming the missing entries. The output is written to a temporary file and renamed
(tools/h5_checkpoint.py).
"""
import argparse
import json
import os
import re
import sys
import warnings
import zipfile

import torch

from h5_checkpoint import (check_shape, describe_keys, fail, float32_array, is_state_dict, require, torch_load,
                           write_checkpoint)

CLIP_TOP = ["conv1.weight", "class_embedding", "positional_embedding", "ln_pre.weight", "ln_pre.bias",
            "ln_post.weight", "ln_post.bias", "proj"]
CLIP_BLOCK = ["ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias",
              "attn.out_proj.weight", "attn.out_proj.bias", "ln_2.weight", "ln_2.bias",
              "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"]
DINO_TOP = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
            "norm.weight", "norm.bias"]
DINO_BLOCK = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
              "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
              "mlp.fc2.weight", "mlp.fc2.bias"]


# ----------------------------------------------------------------------------- loading

def is_torchscript(path):
    """TorchScript archives are zip files with a constants.pkl record (torch.load's own test)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(name == "constants.pkl" or name.endswith("/constants.pkl") for name in z.namelist())


def load(path):
    if not os.path.isfile(path):
        fail(f"no such file: {path}")
    if is_torchscript(path):
        try:
            with warnings.catch_warnings():   # torch.jit is deprecated, but the CLIP archives are TorchScript
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(path, map_location="cpu").state_dict(), "TorchScript archive"
        except Exception as e:
            fail(f"{path} looks like a TorchScript archive but torch.jit.load failed: {e}")
    try:   # DINO training checkpoints pickle argparse.Namespace in "args": full unpickling
        return torch_load(path)[0], "checkpoint"
    except Exception as e:
        fail(f"cannot read {path} as a PyTorch checkpoint: {e}")


def pick_state_dict(ckpt, candidates):
    for key in candidates:
        if isinstance(ckpt, dict) and is_state_dict(ckpt.get(key)):
            return ckpt[key], f"checkpoint['{key}']"
    if is_state_dict(ckpt):
        return ckpt, "the state dict"
    fail(f"no state dict found (keys: {describe_keys(ckpt)})")


def tensors_only(state):
    return {str(k): v for k, v in state.items() if torch.is_tensor(v)}


# ----------------------------------------------------------------------------- shapes

def block_indices(names, prefix, suffix):
    pattern = re.compile(re.escape(prefix) + r"(\d+)\." + re.escape(suffix) + "$")
    found = sorted(int(m.group(1)) for m in map(pattern.match, names) if m)
    if found != list(range(len(found))):
        fail(f"block indices of {prefix}<i>.{suffix} are not 0..n-1: {found}")
    return len(found)


def vit_layout(state, top, prefix, first, block, what, conv):
    """Checks a ViT state dict's top-level names and its blocks' (`prefix`<i>.`block`, i from 0, their
    count read off `first`) and that the patch convolution `conv` is square; returns (blocks, width, patch)."""
    require(state, top, what)
    n = block_indices(state, prefix, first)
    if n == 0:
        fail(f"not a {what} state dict: missing {prefix}0.{first}")
    require(state, [f"{prefix}{i}.{name}" for i in range(n) for name in block], what)
    width, _, patch, patch_w = state[conv].shape
    if patch != patch_w:
        fail(f"{conv} has a non-square kernel {patch}x{patch_w}")
    return n, width, patch


def heads_for(width, override):
    if override is None and width < 64:
        fail(f"width {width} < 64, so heads cannot be width // 64; pass --heads")
    heads = override if override is not None else width // 64
    if heads <= 0 or width % heads:
        fail(f"width {width} is not divisible into {heads} heads")
    return heads


def grid_of(rows, name):
    grid = round((rows - 1) ** 0.5)
    if grid * grid + 1 != rows:
        fail(f"{name} has {rows} rows, not grid^2 + 1 (a class token plus a square patch grid)")
    return grid


def clip_visual(state, heads_override):
    state = tensors_only(state)
    if any(k.startswith("visual.") for k in state):
        state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    elif "token_embedding.weight" in state or "text_projection" in state:
        fail("a CLIP state dict without `visual.` entries (text tower only?)")
    if "patch_embed.proj.weight" in state and "conv1.weight" not in state:
        fail("this looks like a timm/DINO ViT (patch_embed.proj.weight); use --kind dino")
    if "conv1.weight" in state and "class_embedding" not in state and "attnpool.c_proj.weight" in state:
        fail("this is a CLIP ResNet image tower (attnpool), not a ViT")
    layers, width, patch = vit_layout(state, CLIP_TOP, "transformer.resblocks.", "attn.in_proj_weight", CLIP_BLOCK,
                                      "CLIP ViT", "conv1.weight")
    grid = grid_of(state["positional_embedding"].shape[0], "positional_embedding")
    output_dim = state["proj"].shape[1]
    check_shape(state, "conv1.weight", (width, 3, patch, patch))
    check_shape(state, "class_embedding", (width,))
    check_shape(state, "positional_embedding", (grid * grid + 1, width))
    check_shape(state, "proj", (width, output_dim))
    for i in range(layers):
        b = f"transformer.resblocks.{i}."
        check_shape(state, b + "attn.in_proj_weight", (3 * width, width))
        check_shape(state, b + "attn.in_proj_bias", (3 * width,))
        check_shape(state, b + "attn.out_proj.weight", (width, width))
        check_shape(state, b + "mlp.c_fc.weight", (4 * width, width))
        check_shape(state, b + "mlp.c_proj.weight", (width, 4 * width))
    expected = set(CLIP_TOP) | {f"transformer.resblocks.{i}.{n}" for i in range(layers) for n in CLIP_BLOCK}
    config = dict(width=int(width), layers=layers, heads=heads_for(int(width), heads_override),
                  patch=int(patch), grid=grid, output_dim=int(output_dim))
    return known_only(state, expected, "CLIP image-tower"), config


def known_only(state, expected, what):
    """The expected entries, in the file's order; anything else is reported and left out."""
    extra = [n for n in state if n not in expected]
    if extra:
        print(f"note: leaving out {len(extra)} {what} entries the teacher does not use: "
              f"{', '.join(extra[:8])}{', ...' if len(extra) > 8 else ''}", file=sys.stderr)
    return {n: v for n, v in state.items() if n in expected}


def strip(name, prefixes):
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if name.startswith(p):
                name, changed = name[len(p):], True
    return name


def dino_backbone(state, heads_override):
    out = {}
    for name, value in tensors_only(state).items():
        name = strip(name, ("module.", "backbone."))
        if name.startswith("head.") or name == "head":
            continue
        if name in out:
            fail(f"two entries map to {name!r} after removing module./backbone.")
        out[name] = value
    if any(n.endswith(("conv1.weight", "class_embedding")) for n in out):
        fail("this looks like a CLIP image tower (conv1.weight / class_embedding); use --kind clip")
    depth, width, patch = vit_layout(out, DINO_TOP, "blocks.", "attn.qkv.weight", DINO_BLOCK, "DINO ViT",
                                     "patch_embed.proj.weight")
    if out["pos_embed"].dim() != 3 or out["pos_embed"].shape[0] != 1:
        fail(f"pos_embed has shape {list(out['pos_embed'].shape)}, expected [1, grid^2 + 1, width]")
    grid = grid_of(out["pos_embed"].shape[1], "pos_embed")
    check_shape(out, "cls_token", (1, 1, width))
    check_shape(out, "pos_embed", (1, grid * grid + 1, width))
    for i in range(depth):
        b = f"blocks.{i}."
        check_shape(out, b + "attn.qkv.weight", (3 * width, width))
        check_shape(out, b + "attn.proj.weight", (width, width))
        check_shape(out, b + "mlp.fc1.weight", (4 * width, width))
        check_shape(out, b + "mlp.fc2.weight", (width, 4 * width))
    expected = set(DINO_TOP) | {f"blocks.{i}.{n}" for i in range(depth) for n in DINO_BLOCK}
    out = known_only(out, expected, "DINO backbone")
    config = dict(width=int(width), depth=depth, heads=heads_for(int(width), heads_override),
                  patch=int(patch), grid=grid)
    return out, config


# ----------------------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["clip", "dino"], required=True, help="teacher family")
    parser.add_argument("input", help="CLIP .pt (TorchScript) / .pth, or DINO .pth")
    parser.add_argument("output", help="HDF5 file to write")
    parser.add_argument("--heads", type=int, default=None,
                        help="attention heads (default: width // 64, as in every released model)")
    args = parser.parse_args()

    ckpt, how = load(args.input)
    if args.kind == "clip":
        state, where = pick_state_dict(ckpt, ("state_dict", "model"))
        tensors, config = clip_visual(state, args.heads)
    else:
        state, where = pick_state_dict(ckpt, ("teacher", "state_dict", "model"))
        tensors, config = dino_backbone(state, args.heads)
    arrays = {name: float32_array(value) for name, value in tensors.items()}

    write_checkpoint(args.output, arrays, os.path.basename(args.input),
                     teacher=args.kind, teacher_config=json.dumps(config))

    total = sum(a.size for a in arrays.values())
    print(f"wrote {args.kind} teacher {json.dumps(config)}: {len(arrays)} tensors ({total:,} values) "
          f"from {where} of the {how} {os.path.basename(args.input)} to {args.output}")


if __name__ == "__main__":
    main()
