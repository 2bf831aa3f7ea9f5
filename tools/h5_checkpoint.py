"""Writing the HDF5 files Tessera reads, for the checkpoint converters and the fixture scripts.

`write_checkpoint(path, arrays, source, **attrs)` writes a Tessera checkpoint: the root attributes
format=tessera-checkpoint-v1 and source=<source>, then `attrs` in the order given, and every entry of
`arrays` (name -> array, in order) as a float32 dataset params/<name> of a group that tracks creation
order, so the PyTorch order is kept. Every file is written with the format bounds libhdf5 1.10
reads (`LIBVER`, what the Swift side links against) and through `replacing(path)`: to
<path>.tmp-<pid>, renamed onto path once complete and removed if anything fails, so no partial file
is ever left at path.

What tools/pth_to_h5.py, teacher_to_h5.py and dalle_to_h5.py share besides: `torch_load(path)`
(weights only, else full unpickling after a note on stderr), `is_state_dict`, `float32_array` (a
tensor as a contiguous float32 numpy array) and, for their one-line `error: ...` exits, `fail`,
`require(state, names, what)` (the missing names), `check_shape` and `describe_keys`.
"""
import contextlib
import os
import sys

import h5py
import numpy as np
import torch

FORMAT = "tessera-checkpoint-v1"
LIBVER = ("earliest", "v110")


@contextlib.contextmanager
def replacing(path):
    """Yields the temporary name to write; renames it onto `path` when the block succeeds."""
    temporary = f"{path}.tmp-{os.getpid()}"
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_checkpoint(path, arrays, source, **attrs):
    with replacing(path) as temporary:
        with h5py.File(temporary, "w", libver=LIBVER) as f:
            f.attrs["format"] = FORMAT
            f.attrs["source"] = source
            for key, value in attrs.items():
                f.attrs[key] = value
            params = f.create_group("params", track_order=True)   # keep the PyTorch order
            for name, array in arrays.items():
                params.create_dataset(name, data=np.asarray(array, dtype=np.float32))


def torch_load(path):
    """torch.load on the CPU: weights only, else (checkpoints that pickle argparse.Namespace, a whole
    nn.Module) with full unpickling. Returns (object, whether it was fully unpickled)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True), False
    except Exception as safe_error:
        print(f"note: weights-only load failed ({type(safe_error).__name__}); "
              "loading with full unpickling (only do this for files you trust)", file=sys.stderr)
    return torch.load(path, map_location="cpu", weights_only=False), True


def is_state_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and any(torch.is_tensor(v) for v in obj.values())


def fail(message):
    raise SystemExit(f"error: {message}")


def require(state, names, what):
    missing = [n for n in names if n not in state]
    if missing:
        shown = ", ".join(missing[:8]) + (f", ... ({len(missing)} missing)" if len(missing) > 8 else "")
        fail(f"not a {what} state dict: missing {shown}")


def check_shape(state, name, shape):
    got = tuple(state[name].shape)
    if got != tuple(shape):
        fail(f"{name} has shape {list(got)}, expected {list(shape)}")


def describe_keys(obj, limit=12):
    if not isinstance(obj, dict):
        return type(obj).__name__
    keys = sorted(map(str, obj.keys()))
    return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def float32_array(tensor):
    return tensor.detach().to("cpu", torch.float32).contiguous().numpy()
