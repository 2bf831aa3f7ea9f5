#!/usr/bin/env python3
"""Reference block masks for CAE, produced by the official Atten4Vis/CAE MaskingGenerator.

Nothing of the generator is restated here: at run time the script exports furnace/masking_generator.py
from a snapshot of the official repository (a git directory, bare or not; tools/official_code.py)
into a temporary folder and imports `MaskingGenerator` from there. The snapshot is looked up in, by
priority (tools/fixture_common.py):
    --cae-repo PATH,  $CAE_REPO,  /work/.mirror/Atten4Vis+CAE/repo

The generator draws from Python's `random` module (random.uniform for the block area and the log
aspect ratio, random.randint for the block's top-left corner). For the Swift side to rebuild the
same masks, the module-level `random` of masking_generator is replaced, for the duration of each
mask, by `UniformStream`: a stand-in that consumes a pre-drawn stream of float32 uniforms u in
[0, 1) (drawn with torch.rand from a seeded torch.Generator, so on the 2^-24 grid) with exactly this
mapping -- the contract the Swift generator implements:
    random.uniform(a, b)  = a + (b - a) * u                        (Python floats, i.e. double;
                                                                     u widened exactly from float32)
    random.randint(a, b)  = a + min(floor(u * (b - a + 1)), b - a)  (u * (b - a + 1) in double)
Every call takes the next uniform of the stream, in call order; any other `random` function raises,
and so does running past the end of the stream. The rest of the geometry is the official code's,
all in double: log_aspect_ratio = (log(min_aspect), log(max_aspect)) with max_aspect = 1 / min_aspect
when not given (log(1 / 0.3), not -log(0.3)); per attempt target_area = uniform(min_num_patches,
max_mask_patches), aspect = exp(uniform(*log_aspect_ratio)), h = int(round(sqrt(target_area *
aspect))), w = int(round(sqrt(target_area / aspect))) -- Python's round() rounds half to even --
and only when w < width and h < height are top = randint(0, height - h) and left = randint(0,
width - w) drawn (so an attempt uses 2 or 4 uniforms). A block is accepted when 0 < h*w - (already
masked inside) <= max_mask_patches; an attempt loop (10 tries) ends at the first accepted block,
and __call__ repeats it until exactly num_masking_patches are masked (the last block may overlap).

Cases (the generator's arguments as MaskingGenerator(input_size, num_masking_patches,
min_num_patches, max_num_patches, min_aspect, max_aspect)):
    base  14 x 14, 98 masked, min 16, max None (= 98), min_aspect 0.3   300 masks  (CAE base recipe:
          run_pretraining's --num_mask_patches 98, --min_mask_patches_per_block 16 at 224 / 16)
    small  8 x 8,  32 masked, min 4,  max None, min_aspect 0.3          100 masks
    tiny   7 x 7,  10 masked, min 4,  max None, min_aspect 0.3          100 masks
For each case, in Tests/TesseraTests/Fixtures/cae_masks.h5:
    <case>/masks     [n, H*W] uint8, 1 = masked, row-major (the generator's [H, W] int8 flattened)
    <case>/uniforms  [n, K]   float32, the stream of each mask; K = the case's fixed capacity, the
                              entries after the consumed ones set to -1
    <case>/consumed  [n]      int32, how many uniforms each mask used
    attributes: height, width, num_masking_patches, min_num_patches, max_num_patches (the resolved
    value; max_num_patches_given = the argument, -1 for None), min_aspect, max_aspect (resolved),
    log_aspect_min, log_aspect_max (as the generator holds them), capacity, count, seed.
Root attributes: cae_repo_commit, contract (the mapping above as one line), cases (JSON of the
three cases' arguments, counts, capacities and seeds).
Checks: every mask has exactly num_masking_patches ones; re-running the generator on only the
consumed prefix of each stored stream gives the same mask and uses it all; the mask depends on the
stream (different seeds give different masks).

CPU only, a few seconds; deterministic (re-running rewrites the same bytes, through a temporary file
and a rename). Run from the repository root:
    python3 tools/make_cae_mask_fixture.py [--cae-repo PATH] [--rev REV] [--out DIR]
`draw_mask` (the generator under a `UniformStream`) and `padded` are imported by
tools/make_cae_fixture.py, which drives its masks through the same stand-in.
"""
import json
import math
import os

import h5py
import numpy as np
import torch

import fixture_common as common
from h5_checkpoint import LIBVER, replacing
from official_code import import_exported, replaced

SOURCES = ["furnace/masking_generator.py"]
FILENAME = "cae_masks.h5"

CONTRACT = ("random.uniform(a, b) = a + (b - a) * u; random.randint(a, b) = a + min(floor(u * (b - a + 1)), "
            "b - a); u = the next float32 of the stream widened to double; anything else raises")

# name: (generator arguments, number of masks, capacity K, seed)
CASES = {
    "base": (dict(input_size=14, num_masking_patches=98, min_num_patches=16, max_num_patches=None,
                  min_aspect=0.3), 300, 640, 1000),
    "small": (dict(input_size=8, num_masking_patches=32, min_num_patches=4, max_num_patches=None,
                   min_aspect=0.3), 100, 128, 1001),
    "tiny": (dict(input_size=7, num_masking_patches=10, min_num_patches=4, max_num_patches=None,
                  min_aspect=0.3), 100, 128, 1002),
}


# ----------------------------------------------------------------------------- the stand-in

class StreamExhausted(AssertionError):
    pass


class UniformStream:
    """Stands in for the `random` module inside masking_generator: uniform() and randint() map the
    next float32 uniform of `uniforms` as documented above; everything else raises."""

    def __init__(self, uniforms):
        self._u = [float(v) for v in np.asarray(uniforms, dtype=np.float32)]   # exact widening
        self.consumed = 0

    def _next(self):
        if self.consumed >= len(self._u):
            raise StreamExhausted(f"the mask needs more than {len(self._u)} uniforms")
        u = self._u[self.consumed]
        assert 0.0 <= u < 1.0, f"uniform #{self.consumed} is {u} (a padding entry?)"
        self.consumed += 1
        return u

    def uniform(self, a, b):
        u = self._next()
        return a + (b - a) * u

    def randint(self, a, b):
        assert isinstance(a, int) and isinstance(b, int) and a <= b, (a, b)
        u = self._next()
        return a + min(math.floor(u * (b - a + 1)), b - a)

    def __getattr__(self, name):
        raise AssertionError(f"masking_generator used random.{name}; the stand-in only maps uniform and randint")


def draw_mask(masking_generator, generator, uniforms):
    """generator() with masking_generator's `random` replaced by a UniformStream over `uniforms`;
    returns (mask flattened row-major as uint8, uniforms consumed)."""
    with replaced(masking_generator, "random", UniformStream(uniforms)) as stream:
        mask = generator()
    return np.asarray(mask, dtype=np.uint8).reshape(-1), stream.consumed


def padded(uniforms, consumed):
    row = np.array(uniforms, dtype=np.float32, copy=True)
    row[consumed:] = -1.0
    return row


def draw_masks(masking_generator, generator, n, capacity, seed):
    """n masks, each from its own row of torch.rand(n, capacity) (seeded torch.Generator)."""
    rows = torch.rand(n, capacity, generator=torch.Generator().manual_seed(seed)).numpy()
    masks, stored, consumed = [], [], []
    for row in rows:
        mask, used = draw_mask(masking_generator, generator, row)
        masks.append(mask)
        consumed.append(used)
        stored.append(padded(row, used))
    return np.stack(masks), np.stack(stored), np.array(consumed, dtype=np.int32)


# ----------------------------------------------------------------------------- fixture

def make_case(masking_generator, name, kwargs, n, capacity, seed):
    gen = masking_generator.MaskingGenerator(**kwargs)
    masks, uniforms, consumed = draw_masks(masking_generator, gen, n, capacity, seed)
    H, W = gen.get_shape()
    assert masks.shape == (n, H * W)
    counts = masks.sum(axis=1)
    assert np.all(counts == kwargs["num_masking_patches"]), f"{name}: mask counts {sorted(set(counts.tolist()))}"
    # the stored prefix alone rebuilds each mask, and is used up exactly
    for i in range(n):
        mask, used = draw_mask(masking_generator, gen, uniforms[i, :consumed[i]])
        assert used == consumed[i] and np.array_equal(mask, masks[i]), f"{name}: mask {i} not reproducible"
    other, _, _ = draw_masks(masking_generator, gen, min(n, 20), capacity, seed + 7919)
    assert not np.array_equal(other, masks[:len(other)]), f"{name}: masks do not depend on the stream"
    lo, hi = gen.log_aspect_ratio
    attrs = dict(height=H, width=W, num_masking_patches=gen.num_masking_patches,
                 min_num_patches=gen.min_num_patches, max_num_patches=gen.max_num_patches,
                 max_num_patches_given=-1 if kwargs["max_num_patches"] is None else kwargs["max_num_patches"],
                 min_aspect=kwargs["min_aspect"], max_aspect=kwargs.get("max_aspect") or 1 / kwargs["min_aspect"],
                 log_aspect_min=lo, log_aspect_max=hi, capacity=capacity, count=n, seed=seed)
    assert (math.log(attrs["min_aspect"]), math.log(attrs["max_aspect"])) == (lo, hi)
    distinct = len({m.tobytes() for m in masks})
    print(f"{name}: {repr(gen)}; {n} masks ({distinct} distinct), uniforms used {consumed.min()}..{consumed.max()} "
          f"(capacity {capacity}, mean {consumed.mean():.1f})")
    return dict(masks=masks, uniforms=uniforms, consumed=consumed), attrs


def main():
    args = common.parse_args(__doc__, "Atten4Vis/CAE")
    with common.exported(args, SOURCES, "cae-mask-fixture-") as (tmp, code, commit):
        masking_generator, = import_exported(code, "furnace.masking_generator")
        print(f"official CAE code: {commit} from {args.repo} (imported from {masking_generator.__file__})")
        results = {name: make_case(masking_generator, name, *spec) for name, spec in CASES.items()}

    path = os.path.join(args.out, FILENAME)
    with replacing(path) as temporary, h5py.File(temporary, "w", libver=LIBVER) as f:
        f.attrs["cae_repo_commit"] = commit
        f.attrs["contract"] = CONTRACT
        f.attrs["cases"] = json.dumps({name: dict(spec[0], count=spec[1], capacity=spec[2], seed=spec[3])
                                       for name, spec in CASES.items()})
        for name, (datasets, attrs) in results.items():
            g = f.create_group(name)
            for key, value in datasets.items():
                g.create_dataset(key, data=value)
            for key, value in attrs.items():
                g.attrs[key] = value
    common.report([path], args.out)


if __name__ == "__main__":
    main()
