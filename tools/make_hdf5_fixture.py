#!/usr/bin/env python3
"""Writes Tests/TesseraHDF5Tests/Fixtures/h5py_sample.h5, a small file produced by h5py that the
Swift TesseraHDF5 tests read back (the values are asserted in H5pyFixtureTests.swift).

Run once from the repository root:  python3 tools/make_hdf5_fixture.py
"""
import os
import sys

import h5py
import numpy as np

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "TesseraHDF5Tests", "Fixtures", "h5py_sample.h5")
os.makedirs(os.path.dirname(out), exist_ok=True)

with h5py.File(out, "w", libver=("earliest", "v110")) as f:
    f["f32"] = np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5          # 0, .5, 1, ..., 2.5
    f["f64"] = np.array([1.0 / 3.0, -2.25, 1e-40], dtype=np.float64)
    f["f16"] = np.array([0.5, -1.0, 65504.0, 0.099975586], dtype=np.float16)
    f["i32"] = np.array([[1, -2], [3, -4]], dtype=np.int32)
    f["u8"] = np.array([0, 1, 127, 128, 255], dtype=np.uint8)
    f["i64_scalar"] = np.int64(-9_000_000_000)
    f["bool"] = np.array([True, False, True])
    f["scalar_f64"] = np.float64(2.5)
    f["empty"] = np.zeros((0, 3), dtype=np.float32)
    f["params/blocks.0.attn.qkv.weight"] = np.array([[1, 2], [3, 4]], dtype=np.float32)
    f["params/cls_token"] = np.full((1, 1, 4), 7.0, dtype=np.float32)
    f["vlen_str"] = "héllo wörld"                                          # variable-length UTF-8
    f["fixed_str"] = np.bytes_(b"fixed-ascii")                             # fixed-length, NUL padded
    f.attrs["format"] = "tessera-checkpoint-v1"
    f.attrs["epoch"] = np.int64(7)
    f.attrs["lr"] = np.float64(0.5)
    f["f32"].attrs["note"] = "per-dataset attribute"

print(out, os.path.getsize(out), "bytes")
