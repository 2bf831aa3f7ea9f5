#!/usr/bin/env python3
"""Convert OpenAI's DALL-E dVAE encoder (CAE's tokenizer) into a Tessera HDF5 checkpoint.

    python3 tools/dalle_to_h5.py IN OUT.h5 [--dall-e-path DIR]

CAE (like BEiT) predicts, for every masked patch, the visual token that the frozen DALL-E dVAE
encoder gives the image: input_ids = argmax over channels of Encoder(map_pixels(image)), the image
being the tokenizer view (112 x 112 for 224-pixel training, i.e. one token per 16-pixel patch; the
encoder downsamples by 8).

IN is one of
  * the released `encoder.pkl` (https://cdn.openai.com/dall-e/encoder.pkl, what CAE's
    --discrete_vae_weight_path folder holds): torch.save of the whole dall_e.Encoder module. It is
    unpickled, so the `dall_e` package must be importable -- `pip install dall-e`, or pass
    --dall-e-path DIR where DIR holds a dall_e/ folder (a checkout of openai/DALL-E or of
    Atten4Vis/CAE). Only unpickle files you trust.
  * a .pth holding that encoder's state dict (bare, or under "state_dict" / "model" / "encoder";
    a "module." and/or "encoder." prefix shared by every name is removed). No dall_e needed.

Every tensor of the encoder's state dict becomes a float32 dataset `params/<name>`, under the
Encoder's own names, in its order:
    blocks.input.w [n_hid, input_channels, 7, 7], blocks.input.b [n_hid]
    blocks.group_<g>.block_<k>.id_path.w [c_out, c_in, 1, 1], .id_path.b   (only where c_in != c_out,
                                        i.e. the first block of groups 2..4; elsewhere an Identity)
    blocks.group_<g>.block_<k>.res_path.conv_1.w [c_out/4, c_in, 3, 3]   conv_2, conv_3 [c_out/4, c_out/4, 3, 3]
    blocks.group_<g>.block_<k>.res_path.conv_4.w [c_out, c_out/4, 1, 1]  (and the .b of each)
    blocks.output.conv.w [vocab_size, 8 n_hid, 1, 1], blocks.output.conv.b [vocab_size]
where group g (1..4) has c_out = n_hid * 2^(g-1), its first block c_in = the previous group's
c_out (n_hid for group 1). Convolutions are cross-correlations with padding (kw - 1) / 2 and
stride 1; a block computes id_path(x) + res_path(x) / (group_count * n_blk_per_group)^2 (1/64 for
the released encoder) with res_path = relu, conv_1, relu, conv_2, relu, conv_3, relu, conv_4;
groups 1..3 end with a 2 x 2 max pool (stride 2); the output is relu then the 1 x 1 conv. (On CUDA
the released module runs all but the output conv in float16; the weights themselves are float32
and are written unchanged.)

The root group gets the attributes `format=tessera-checkpoint-v1`, `source=<input file name>` and
`dvae_config`, a JSON object {group_count, n_hid, n_blk_per_group, input_channels, vocab_size}:
read from the module's attributes when IN is a pickled module (and checked against the weights),
else inferred from the shapes (n_blk_per_group and group_count from the block names). An input
that is not such an encoder stops with one line `error: ...` naming the missing entries. The
output is written to a temporary file and renamed (tools/h5_checkpoint.py).
"""
import argparse
import json
import os
import re
import sys

import torch

from h5_checkpoint import (check_shape, describe_keys, fail, float32_array, is_state_dict, require, torch_load,
                           write_checkpoint)

CONFIG_KEYS = ("group_count", "n_hid", "n_blk_per_group", "input_channels", "vocab_size")
ENCODER = "DALL-E encoder"


# ----------------------------------------------------------------------------- loading

def load(path, dall_e_path):
    if not os.path.isfile(path):
        fail(f"no such file: {path}")
    if dall_e_path is not None:
        if not os.path.isdir(os.path.join(dall_e_path, "dall_e")):
            fail(f"--dall-e-path {dall_e_path} has no dall_e/ folder")
        sys.path.insert(0, os.path.abspath(dall_e_path))
    try:   # encoder.pkl is a pickled nn.Module: full unpickling
        return torch_load(path)
    except ModuleNotFoundError as e:
        missing = e.name or str(e)
        hint = ("install the dall_e package (pip install dall-e) or pass --dall-e-path DIR "
                "(a folder holding dall_e/)") if str(missing).split(".")[0] in ("dall_e", "attr") \
            else "make it importable"
        fail(f"{path} is a pickled module whose class needs the Python module '{missing}', which is not "
             f"importable; {hint}")
    except Exception as e:
        fail(f"cannot read {path} as a PyTorch file: {type(e).__name__}: {e}")


def encoder_module(obj):
    """The dall_e.Encoder inside what was unpickled (the module itself, or a wrapper's .encoder)."""
    kind = type(obj).__name__
    if kind == "Decoder" or type(obj).__module__.endswith("decoder"):
        fail(f"this is the DALL-E decoder ({type(obj).__module__}.{kind}); pass encoder.pkl")
    if not hasattr(obj, "blocks") and isinstance(getattr(obj, "encoder", None), torch.nn.Module):
        obj = obj.encoder      # e.g. CAE's / BEiT's Dalle_VAE wrapper
    if not hasattr(obj, "blocks"):
        fail(f"the pickled {type(obj).__module__}.{type(obj).__name__} is not a dall_e.Encoder (no `blocks`)")
    return obj


def pick_state_dict(ckpt):
    for key in ("state_dict", "model", "encoder"):
        if isinstance(ckpt, dict) and is_state_dict(ckpt.get(key)):
            return ckpt[key]
    if is_state_dict(ckpt):
        return ckpt
    fail(f"no state dict found (keys: {describe_keys(ckpt)})")


def strip_prefixes(state):
    for prefix in ("module.", "encoder."):
        if state and all(name.startswith(prefix) for name in state):
            state = {name[len(prefix):]: v for name, v in state.items()}
    return state


# ----------------------------------------------------------------------------- shapes

def structure(state):
    """(config inferred from names and shapes, expected names in order); fails on anything amiss."""
    require(state, ["blocks.input.w", "blocks.input.b", "blocks.output.conv.w", "blocks.output.conv.b"], ENCODER)
    w_in = state["blocks.input.w"]
    if w_in.dim() != 4:
        fail(f"blocks.input.w has shape {list(w_in.shape)}, expected [n_hid, channels, 7, 7]")
    if tuple(w_in.shape[2:]) == (1, 1):
        fail("this looks like the DALL-E decoder (blocks.input.w is a 1 x 1 conv, over the vocabulary); "
             "pass the encoder")
    n_hid, channels = int(w_in.shape[0]), int(w_in.shape[1])
    check_shape(state, "blocks.input.w", (n_hid, channels, 7, 7))
    check_shape(state, "blocks.input.b", (n_hid,))

    pattern = re.compile(r"blocks\.group_(\d+)\.block_(\d+)\.")
    blocks = {}
    for name in state:
        m = pattern.match(name)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    groups = sorted(blocks)
    if not groups:
        fail(f"not a {ENCODER} state dict: missing blocks.group_1.block_1.res_path.conv_1.w")
    if groups != list(range(1, len(groups) + 1)):
        fail(f"encoder groups are not group_1..group_n: {groups}")
    per_group = len(blocks[1])
    for g in groups:
        if sorted(blocks[g]) != list(range(1, per_group + 1)):
            fail(f"group_{g} has blocks {sorted(blocks[g])}, expected block_1..block_{per_group} like group_1")

    names = ["blocks.input.w", "blocks.input.b"]
    c_in = n_hid
    for g in groups:
        c_out = n_hid * 2 ** (g - 1)
        for k in range(1, per_group + 1):
            p = f"blocks.group_{g}.block_{k}."
            n_in = c_in if k == 1 else c_out
            if c_out % 4:
                fail(f"group_{g} width {c_out} is not divisible by 4")
            hid = c_out // 4
            convs = []
            if n_in != c_out:
                convs.append(("id_path", (c_out, n_in, 1, 1)))
            convs += [("res_path.conv_1", (hid, n_in, 3, 3)), ("res_path.conv_2", (hid, hid, 3, 3)),
                      ("res_path.conv_3", (hid, hid, 3, 3)), ("res_path.conv_4", (c_out, hid, 1, 1))]
            block_names = [f"{p}{c}.{wb}" for c, _ in convs for wb in ("w", "b")]
            require(state, block_names, ENCODER)
            for conv, shape in convs:
                check_shape(state, f"{p}{conv}.w", shape)
                check_shape(state, f"{p}{conv}.b", (shape[0],))
            names += block_names
        c_in = c_out
    vocab = int(state["blocks.output.conv.w"].shape[0])
    check_shape(state, "blocks.output.conv.w", (vocab, c_in, 1, 1))
    check_shape(state, "blocks.output.conv.b", (vocab,))
    names += ["blocks.output.conv.w", "blocks.output.conv.b"]
    config = dict(group_count=len(groups), n_hid=n_hid, n_blk_per_group=per_group,
                  input_channels=channels, vocab_size=vocab)
    return config, names


def module_config(module, inferred):
    config = {}
    for key in CONFIG_KEYS:
        value = getattr(module, key, None)
        if not isinstance(value, int):
            fail(f"the pickled encoder has no integer attribute {key!r}")
        config[key] = int(value)
    differ = [f"{k} {config[k]} (weights say {inferred[k]})" for k in CONFIG_KEYS if config[k] != inferred[k]]
    if differ:
        fail("the encoder's attributes disagree with its weights: " + ", ".join(differ))
    return config


# ----------------------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="DALL-E encoder.pkl (pickled dall_e.Encoder) or a .pth of its state dict")
    parser.add_argument("output", help="HDF5 file to write")
    parser.add_argument("--dall-e-path", default=None, metavar="DIR",
                        help="folder holding the dall_e/ package, for unpickling encoder.pkl")
    args = parser.parse_args()

    obj, unpickled = load(args.input, args.dall_e_path)
    if isinstance(obj, torch.nn.Module):
        module = encoder_module(obj)
        state = module.state_dict()
        where = f"the pickled {type(module).__module__}.{type(module).__name__}"
    elif unpickled and not isinstance(obj, dict):
        fail(f"{args.input} holds a {type(obj).__name__}, neither an encoder module nor a state dict")
    else:
        module = None
        state = pick_state_dict(obj)
        where = "the state dict"
    state = strip_prefixes({str(k): v for k, v in state.items() if torch.is_tensor(v)})
    config, names = structure(state)
    if module is not None:
        config = module_config(module, config)
    extra = [n for n in state if n not in set(names)]
    if extra:
        print(f"note: leaving out {len(extra)} entries that are not encoder weights: "
              f"{', '.join(extra[:8])}{', ...' if len(extra) > 8 else ''}", file=sys.stderr)
    order = [n for n in state if n in set(names)]       # the file's own order
    arrays = {n: float32_array(state[n]) for n in order}

    write_checkpoint(args.output, arrays, os.path.basename(args.input), dvae_config=json.dumps(config))

    total = sum(a.size for a in arrays.values())
    print(f"wrote DALL-E encoder {json.dumps(config)}: {len(arrays)} tensors ({total:,} values) "
          f"from {where} in {os.path.basename(args.input)} to {args.output}")


if __name__ == "__main__":
    main()
