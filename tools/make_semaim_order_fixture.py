#!/usr/bin/env python3
"""Autoregression orders of SemAIM, taken from the official skyoux/SemAIM code on a 14x14 grid.

What it does. At run time the script exports models/models_semaim.py, util/blocks.py and
util/pos_embed.py from a snapshot of the official repository (a git directory, bare or not) into a
temporary folder, patches only what the installed timm / numpy refuse (np.float), imports
`models.models_semaim.AimViT` from there and builds a tiny model (img 224, patch 16 -> 196 patches,
width 64, depth 2, 4 heads, 2 query blocks; its weights play no part in the orders). Then, for every
permutation_type the official `generate_attention_mask` knows, it calls that method on a batch of 6
and keeps the `permutation` tensor it returns: the per-patch score whose order is the
autoregression order (smaller score = predicted earlier). While it runs:
  * the `torch` seen by models_semaim is a stand-in (official_code.TorchStandIn) whose `rand` hands
    out uniforms drawn beforehand by this script (seeded torch.Generator, so they lie on
    torch.rand's 2^-24 grid; a few entries are set by hand to reach edge cases, see
    `uniforms_for`); the number, order and shapes of the calls are checked against what the type
    is expected to draw, every other random function of the stand-in raises, and the global torch
    RNG state must be unchanged afterwards;
  * `Tensor.cuda` is the identity (the official code moves things to the GPU unconditionally).
For each type the script asserts that
  * the returned score equals an independent re-computation from the fed uniforms (and attention
    map) -- bit for bit, except attention_center, where torch's CPU float32 sqrt may be 1 ulp off
    the correctly rounded one (then it must be within 1e-5, and the resulting order is compared);
  * the content / query masks are exactly those the score defines with the SAIM rule:
    patch rows/cols: -inf where score_i < score_j (content) / score_i <= score_j (query), else 0;
    cls row: -inf except column 0; column 0: 0 everywhere.
Attention-based types get the same hand-made (6, 196) map: softmax-normalised, with a clear argmax
in some samples (one in the last grid row, one in row 2 / last column) and ties, including tied
maxima and a completely flat map, in others.

Output, Tests/TesseraTests/Fixtures/semaim_orders.h5 (float32 unless noted):
    <type>/score        [6,196]  the official permutation (zigzag's int64 stored as float32, exact)
    <type>/uniform/<k>  k-th tensor torch.rand returned, in call order, in its original shape
    <type>/attention    [6,196]  the attention map passed in (attention, attention_center,
                                 attention_guided only)
    group attributes: rand_calls (JSON [[fn, shape], ...]), score_dtype, tied_pairs (per sample,
    unordered pairs i != j with equal score) and, for the centre-based types, centers (JSON
    [[row, col], ...] per sample)
    root attributes: semaim_repo_commit, grid, batch, types (JSON), model_config (JSON)

The snapshot is looked up in, by priority (tools/fixture_common.py): --semaim-repo PATH,
$SEMAIM_REPO, /work/.mirror/skyoux+SemAIM/repo. CPU only, a few seconds. Deterministic; re-running
rewrites the file with the same content (through a temporary file and a rename). Run from the
repository root:
    python3 tools/make_semaim_order_fixture.py [--semaim-repo PATH] [--rev REV] [--out FILE]
"""
import json
import os

import h5py
import numpy as np
import torch

import fixture_common as common
from h5_checkpoint import replacing
from official_code import cuda_is_identity, fed, import_exported

SOURCES = ["models/models_semaim.py", "util/blocks.py", "util/pos_embed.py"]

MODEL = dict(img_size=224, patch_size=16, in_chans=3, embed_dim=64, depth=2, num_heads=4,
             mlp_ratio=4.0, drop_path_rate=0.0, query_depth=2)
B, W = 6, 14
L = W * W
SEED = 20240228

# type -> shapes of the torch.rand calls it is expected to make, in order
RAND_CALLS = {
    "stochastic": [(B, L)],
    "zigzag": [],
    "raster": [],
    "center2out": [(B, W, W)],
    "stochastic_center": [(B, W, W), (B,), (B,)],
    "attention": [],
    "attention_center": [(B, L)],
    "attention_guided": [(B, W, W)],
}
TYPES = list(RAND_CALLS)
ATTENTION_TYPES = ["attention", "attention_center", "attention_guided"]


# ----------------------------------------------------------------------------- inputs

def _lattice(u):
    """Nearest value on torch.rand's grid k * 2^-24, k in [0, 2^24)."""
    return float(min(round(u * 2 ** 24), 2 ** 24 - 1)) / 2 ** 24


def uniforms_for(ptype, gen):
    """The tensors torch.rand will return for `ptype`: seeded draws plus a few chosen entries."""
    out = [torch.rand(shape, generator=gen) for shape in RAND_CALLS[ptype]]
    if ptype in ("center2out", "attention_guided"):
        # two cells of the innermost box of sample 0 whose uniforms differ by one grid step:
        # after "-1" three times (float32) both land on -2.5, i.e. an exact tie in the score
        r, c = (6, 6) if ptype == "center2out" else (3, 8)  # guided: centre of sample 0 is (4, 9)
        out[0][0, r, c] = 0.5
        out[0][0, r, c + 1] = 0.5 + 2.0 ** -24
    if ptype == "stochastic_center":
        # centre index = int(u * 13): 0 (u = 0), 12 (largest u), values just below k/13 (which
        # must truncate to k - 1) and the irregular rows 2 and 11 of split_matrix
        def below(k):
            return ((k * 2 ** 24 - 1) // 13) / 2 ** 24
        rows = [0.0, _lattice(2.5 / 13), below(6), _lattice(11.5 / 13), 1 - 2.0 ** -24, None]
        cols = [1 - 2.0 ** -24, _lattice(7.5 / 13), _lattice(2.5 / 13), below(3), None, 0.0]
        for i in range(B):
            if rows[i] is not None:
                out[1][i] = rows[i]
            if cols[i] is not None:
                out[2][i] = cols[i]
    return out


def attention_maps(gen):
    """(6, 196) float32 maps, each a softmax over the 196 patches."""
    logits = torch.randn(B, L, generator=gen)

    def at(r, c):
        return r * W + c

    logits[0, at(4, 9)] += 6.0                         # clear argmax inside the grid
    logits[1, at(13, 5)] += 6.0                        # clear argmax in the last row
    logits[2, at(3, 3)] = logits[2, at(10, 11)] = logits[2].max() + 3.0   # tied maxima
    logits[3] = torch.round(logits[3] * 1.5)           # integer logits: many ties, tied maxima
    logits[4] = 0.0                                    # flat map: everything tied
    logits[5, at(2, 13)] += 6.0                        # clear argmax in row 2, last column
    maps = logits.softmax(dim=-1)
    for i in (0, 1, 5):
        top = maps[i].topk(2).values
        assert top[0] > 10 * top[1]
    for i in (2, 3):
        assert (maps[i] == maps[i].max()).sum() >= 2
    assert maps[3].unique().numel() < L // 4 and maps[4].unique().numel() == 1
    return maps


# ----------------------------------------------------------------------------- re-computation

def boxes_from_centre(c):
    """The three [lo, hi) intervals (2, 6 and 10 wide) split_matrix holds for centre index c."""
    lo0 = 0 if c <= 2 else (11 if c >= 11 else c - 1)
    lo1 = min(max(c - 3, 0), 7)
    lo2 = min(max(c - 5, 0), 3)
    return [(lo0, lo0 + 2), (lo1, lo1 + 6), (lo2, lo2 + 10)]


def check_split_matrix(model):
    sm = model.split_matrix
    assert tuple(sm.shape) == (W, 2, 4)
    for c in range(W):
        for j, (lo, hi) in enumerate(boxes_from_centre(c)):
            assert (int(sm[c, 0, j]), int(sm[c, 1, j])) == (lo, hi), (c, j)
        assert (int(sm[c, 0, 3]), int(sm[c, 1, 3])) == (0, 13)  # 4th column, never used


def first_argmax(a):
    return [int(np.flatnonzero(row == row.max())[0]) for row in a]


def recompute(ptype, uni, attn):
    """Score from the fed uniforms, written out independently (numpy, float32 arithmetic).
    Returns (score [B, L], centres or None)."""
    one = np.float32(1)
    u = [t.numpy().astype(np.float32) for t in uni]
    if ptype == "stochastic":
        return u[0].copy(), None
    if ptype == "zigzag":                      # plain row-major index
        return np.tile(np.arange(L, dtype=np.int64), (B, 1)), None
    if ptype == "raster":                      # boustrophedon: odd rows right to left
        r, c = np.divmod(np.arange(L), W)
        s = np.where(r % 2 == 0, r * W + c, r * W + (W - 1 - c)).astype(np.float32)
        return np.tile(s, (B, 1)), None
    if ptype == "attention":
        return one - attn, None
    if ptype in ("center2out", "stochastic_center", "attention_guided"):
        s = u[0].copy()                        # [B, 14, 14]
        if ptype == "center2out":
            centres = [(7, 7)] * B
        elif ptype == "stochastic_center":
            rows = (u[1] * np.float32(W - 1)).astype(np.int64)  # truncation of the float32 product
            cols = (u[2] * np.float32(W - 1)).astype(np.int64)
            centres = list(zip(rows.tolist(), cols.tolist()))
        else:
            centres = [divmod(k, W) for k in first_argmax(attn)]
        for i, (cr, cc) in enumerate(centres):
            for (r0, r1), (c0, c1) in zip(boxes_from_centre(cr), boxes_from_centre(cc)):
                s[i, r0:r1, c0:c1] -= one             # three float32 subtractions in a row
        return s.reshape(B, L), [list(t) for t in centres]
    if ptype == "attention_center":
        centres = [divmod(k, W) for k in first_argmax(attn)]
        r, c = np.divmod(np.arange(L), W)
        s = np.empty((B, L), np.float32)
        for i, (cr, cc) in enumerate(centres):
            d2 = ((r - cr) ** 2 + (c - cc) ** 2).astype(np.float32)
            s[i] = np.sqrt(d2) + u[0][i] * np.float32(1e-3)    # correctly rounded sqrt
        return s, [list(t) for t in centres]
    raise ValueError(ptype)


def saim_masks(score):
    s = torch.as_tensor(score)
    n, length = s.shape
    inf = torch.tensor(-float("inf"))
    zero = torch.tensor(0.0)
    patch_h = torch.where(s.unsqueeze(-1) < s.unsqueeze(1), inf, zero)
    patch_g = torch.where(s.unsqueeze(-1) <= s.unsqueeze(1), inf, zero)
    out = []
    for patch in (patch_h, patch_g):
        m = torch.zeros(n, 1, length + 1, length + 1)
        m[:, 0, 0, 1:] = -float("inf")
        m[:, 0, 1:, 1:] = patch
        out.append(m)
    return out


def tied_pairs(score):
    s = torch.as_tensor(score)
    eq = (s.unsqueeze(-1) == s.unsqueeze(1)).sum(dim=(1, 2)) - s.shape[1]
    return (eq // 2).tolist()


# ----------------------------------------------------------------------------- main

def run_type(mod, model, ptype, x, attn, gen):
    uni = uniforms_for(ptype, gen)
    model.permutation_type = ptype
    rng = torch.get_rng_state()
    with torch.no_grad(), cuda_is_identity(), fed(mod, uni) as fake:
        mask_h, mask_g, score = model.generate_attention_mask(
            x, attn.clone() if ptype in ATTENTION_TYPES else None)
    assert torch.equal(torch.get_rng_state(), rng), f"{ptype}: something drew from the global RNG"
    assert fake.calls == RAND_CALLS[ptype], (ptype, fake.calls)
    assert tuple(score.shape) == (B, L)

    # 1. the masks are the SAIM rule applied to the returned score
    want_h, want_g = saim_masks(score)
    assert torch.equal(mask_h, want_h), f"{ptype}: content mask is not the '<' rule"
    assert torch.equal(mask_g, want_g), f"{ptype}: query mask is not the '<=' rule"

    # 2. the score is what the uniforms (and attention map) say it should be
    mine, centres = recompute(ptype, uni, attn.numpy())
    official = score.numpy()
    assert official.dtype == mine.dtype, (ptype, official.dtype, mine.dtype)
    note = ""
    if ptype == "attention_center" and not np.array_equal(official, mine):
        ulps = np.abs(official.view(np.int32).astype(np.int64) - mine.view(np.int32))
        assert np.abs(official - mine).max() <= 1e-5, ptype
        same_order = all(torch.equal(a, b) for a, b in zip(saim_masks(mine), (mask_h, mask_g)))
        note = (f"  ({int((ulps != 0).sum())} entries differ by <= {int(ulps.max())} ulp from the "
                f"correctly rounded sqrt; masks {'identical' if same_order else 'DIFFER'})")
    else:
        assert np.array_equal(official, mine), f"{ptype}: score differs from the re-computation"
    pairs = tied_pairs(score)
    print(f"{ptype:18s} rand {[list(s) for s in RAND_CALLS[ptype]]}  ties {pairs}"
          + (f"  centres {centres}" if centres else "") + note)
    return dict(score=official.astype(np.float32), uniforms=[t.numpy() for t in uni],
                calls=[["torch.rand", list(shape)] for shape in fake.calls],
                dtype=str(score.dtype), ties=pairs, centres=centres)


def main():
    args = common.parse_args(__doc__, "skyoux/SemAIM", out=os.path.join(common.FIXTURES, "semaim_orders.h5"),
                             out_help="fixture file (default: Tests/TesseraTests/Fixtures/semaim_orders.h5)",
                             out_is_file=True)
    torch.set_num_threads(1)

    with common.exported(args, SOURCES, "semaim-order-fixture-") as (tmp, code, commit):
        mod, = import_exported(code, "models.models_semaim")

        torch.manual_seed(0)
        model = mod.AimViT(**MODEL)
        model.eval()
        check_split_matrix(model)
        gen = torch.Generator().manual_seed(SEED)
        imgs = torch.randn(B, MODEL["in_chans"], MODEL["img_size"], MODEL["img_size"], generator=gen)
        with torch.no_grad():
            x = model.patch_embed(imgs)                # only its shape matters
        assert tuple(x.shape) == (B, L, MODEL["embed_dim"])
        attn = attention_maps(gen)
        results = {t: run_type(mod, model, t, x, attn, gen) for t in TYPES}

    out = os.path.abspath(args.out)
    with replacing(out) as temporary, h5py.File(temporary, "w", track_order=True) as f:
        f.attrs["semaim_repo_commit"] = commit
        f.attrs["grid"] = W
        f.attrs["batch"] = B
        f.attrs["types"] = json.dumps(TYPES)
        f.attrs["model_config"] = json.dumps(MODEL, sort_keys=True)
        for t in TYPES:
            r = results[t]
            g = f.create_group(t)
            g.create_dataset("score", data=r["score"])
            u = g.create_group("uniform")
            for k, a in enumerate(r["uniforms"]):
                u.create_dataset(str(k), data=a.astype(np.float32))
            if t in ATTENTION_TYPES:
                g.create_dataset("attention", data=attn.numpy().astype(np.float32))
            g.attrs["rand_calls"] = json.dumps(r["calls"])
            g.attrs["score_dtype"] = r["dtype"]
            g.attrs["tied_pairs"] = json.dumps(r["ties"])
            if r["centres"] is not None:
                g.attrs["centers"] = json.dumps(r["centres"])
    print(f"wrote {out} ({os.path.getsize(out)} bytes), SemAIM commit {commit}")


if __name__ == "__main__":
    main()
