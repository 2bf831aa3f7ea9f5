"""PyTorch side of `tessera bench train` for SemAIM (semantic-aware autoregressive image modeling,
skyoux/SemAIM): times pre-training steps of the official model structure on synthetic images, eager
or torch.compile, and prints one JSON line
  {"images_per_s": ..., "step_seconds": [...], "peak_bytes": ..., "threads": ..., "loss": ...}
peak_bytes is the growth of the process's peak resident set over its size just before the model is
built (so the PyTorch libraries themselves are not counted), the same measure Tessera reports.

One timed step is what the official engines/engine_pretrain.py does per batch for
permutation_type attention_center, attention_type cls, predict_feature none:
 1. semantic-order pass: model.eval(); under torch.no_grad() the content stream without masks
    (patch embed + pos + cls, all encoder blocks, the shared final `norm`; this is the official
    forward_encoder), then attention = softmax over patches of cos(cls token, patch token);
    model.train(). The official forward_encoder also runs the LAST encoder block once more with
    return_attention=True (norm1, qkv, softmax(q·kᵀ·scale), mean over heads of the cls row) before
    running it normally; that result only matters for attention_type 'self', but its cost is part of
    the official step, so it is computed here too (and returned, so torch.compile cannot drop it).
 2. attention_center permutation: centre = argmax of the attention, score = Euclidean grid distance
    to the centre + 1e-3·U[0,1) (U is the per-step noise train_and_report draws, shape (B, L));
    additive masks from the score as in SAIM (content: -inf where score_i < score_j, query: -inf
    where score_i <= score_j; cls row -inf except column 0; column 0 zero).
 3. the two-stream forward (content stream h with the masks, query stream g from the fixed position
    table, one query block after every depth/query_depth content blocks), the pixel loss (Gaussian
    blur of the target, norm-pix, L2 mean), then backward and AdamW (in bench_torch_common).
Content-stream blocks are timm's own timm.models.vision_transformer.Block (fused qkv, the layout of
the official Block_SelfMask, same parameter names): in timm 1.0.31 Block.forward(x, attn_mask=None)
passes an additive float mask to Attention.forward, which adds it to the logits (explicit path) or
hands it to F.scaled_dot_product_attention (fused path). Query-stream blocks are the split q/k/v
cross blocks of bench_torch_saim.py (one norm1 applied to the query and to the key/value input; the
official Block_SelfCrossMask applies it twice to the same key/value tensor, one LayerNorm more).

The whole step is one call of SemAIM.forward(imgs, noise), which train_and_report times. forward
itself switches eval / no_grad / train around the order pass, in Python. For --mode compile the two
halves are compiled separately (`compile_parts`, handed to train_and_report as its `compile`):
encode (the order pass, returning tokens, cls attention and the block attention, like the official
forward_encoder) and aim_loss (permutation, masks, two-stream forward, loss), each one graph called
always in the same mode (eval + no_grad, train + grad), so no graph holds mode switches and none
recompiles. This is also what torch.compile of the official model gives: its two forward calls per
step are two graphs.

Usage: python3 tools/bench_torch_semaim.py --width 192 --depth 12 --heads 3 --img 32 --patch 4 \
         --query-depth 12 --kernel 3 --sigma 1 --batch 128 --steps 10 --warmup 3 --threads 2 \
         --mode eager --attention sdpa
--kernel 0 disables the Gaussian blur of the target. --attention explicit spells out
softmax(q·kᵀ·scale + mask)·v (timm's non-fused path for the content blocks); sdpa uses
F.scaled_dot_product_attention with the same additive float mask. The attention-only extra call of
the order pass is explicit either way, as in the official code.
--check-against-official DIR compares this model's loss with the official AimViT's on the same
weights and uniforms instead of benchmarking, and fails unless they agree within 1e-5 relative. DIR
holds the exported official sources (models/models_semaim.py, util/blocks.py, util/pos_embed.py, as
tools/official_code.py `export` writes them) or is a git directory of the official repository, which
is then exported (HEAD) into a temporary folder. While the official code runs, Tensor.cuda is the
identity and its one torch.rand(B, L) returns this script's uniforms. AimViT.__init__ fills a
split_matrix written for a 14x14 grid and raises IndexError on smaller grids (e.g. img 32 / patch 4);
the check then allocates that matrix with 14 rows (only the stochastic_center / attention_guided
orders read it) and reports "split_matrix_padded": true.
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from timm.layers import Mlp, PatchEmbed
from timm.models.vision_transformer import Block as TimmBlock

from bench_torch_common import patchify, rss_bytes, train_and_report
from bench_torch_saim import Block as CrossBlock, gaussian_kernel, permutation_masks


class SemAIM(nn.Module):
    def __init__(self, a):
        super().__init__()
        assert a.depth % a.query_depth == 0
        self.p = a.patch
        self.patch_embed = PatchEmbed(a.img, a.patch, 3, a.width)
        self.L = self.patch_embed.num_patches
        self.grid = a.img // a.patch
        self.heads = a.heads
        self.cls_token = nn.Parameter(torch.randn(1, 1, a.width) * 0.02)
        self.register_buffer("pos_embed", torch.randn(1, self.L + 1, a.width) * 0.02)
        sdpa = a.attention == "sdpa"
        self.blocks = nn.ModuleList(
            TimmBlock(a.width, a.heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6))
            for _ in range(a.depth))
        for blk in self.blocks:
            blk.attn.fused_attn = sdpa
        self.query_blocks = nn.ModuleList(CrossBlock(a.width, a.heads, sdpa) for _ in range(a.query_depth))
        self.step = a.depth // a.query_depth
        self.norm = nn.LayerNorm(a.width, eps=1e-6)
        self.prediction_head = Mlp(a.width, 4 * a.width, a.patch * a.patch * 3)
        self.kernel = a.kernel
        if a.kernel > 0:
            self.register_buffer("blur", gaussian_kernel(a.kernel, a.sigma))
        # (row, col) of every patch, float like the official `coordinates`; not part of the state
        idx = torch.arange(self.L)
        self.register_buffer("rows", (idx // self.grid).float(), persistent=False)
        self.register_buffer("cols", (idx % self.grid).float(), persistent=False)
        self.encode_fn, self.aim_loss_fn = self.encode, self.aim_loss

    def tokens(self, imgs):
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        return torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1), x], 1)

    def encode(self, imgs):
        """Official forward_encoder (no masks): (normed tokens, cls attention (B,L), block attention (B,L))."""
        h = self.tokens(imgs)
        for blk in self.blocks[:-1]:
            h = blk(h)
        last = self.blocks[-1]
        # the official return_attention=True call of the last block: softmax(q·kᵀ·scale) only
        b, n, d = h.shape
        qkv = last.attn.qkv(last.norm1(h)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = ((qkv[0] @ qkv[1].transpose(-2, -1)) * (d // self.heads) ** -0.5).softmax(dim=-1)
        self_attention = scores.mean(dim=1)[:, 0, 1:]
        h = self.norm(last(h))
        t = F.normalize(h, p=2, dim=-1)
        attention = (t[:, :1] * t[:, 1:]).sum(dim=-1).softmax(dim=1)
        return h, attention, self_attention

    def order(self, attention, noise):
        """attention_center score (B, L): distance of each patch to the argmax + 1e-3·noise."""
        center = attention.max(dim=-1).indices
        cr, cc = (center // self.grid).unsqueeze(1), (center % self.grid).unsqueeze(1)
        return ((self.rows - cr) ** 2 + (self.cols - cc) ** 2) ** 0.5 + noise * 1e-3

    def aim_loss(self, imgs, attention, noise):
        mask_h, mask_g = permutation_masks(self.order(attention, noise))
        h = self.tokens(imgs)
        g = self.pos_embed.expand(imgs.shape[0], -1, -1)
        for i, blk in enumerate(self.blocks):
            h = blk(h, attn_mask=mask_h)
            if (i + 1) % self.step == 0:
                g = self.query_blocks[i // self.step](g, h, mask=mask_g)
        pred = self.prediction_head(self.norm(g))[:, 1:]
        if self.kernel > 0:
            imgs = F.conv2d(imgs, self.blur, padding=self.kernel // 2, groups=3)
        target = patchify(imgs, self.p)
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6) ** 0.5
        return ((pred - target) ** 2).mean()

    def forward(self, imgs, noise):
        training = self.training
        self.eval()
        with torch.no_grad():
            _, attention, _ = self.encode_fn(imgs)
        self.train(training)
        return self.aim_loss_fn(imgs, attention.detach(), noise)


def compile_parts(model):
    """--mode compile: the order pass and the training forward as two compiled graphs."""
    model.encode_fn = torch.compile(model.encode)
    model.aim_loss_fn = torch.compile(model.aim_loss)
    return model


# ----------------------------------------------------------------------------- official check

SOURCES = ["models/models_semaim.py", "util/blocks.py", "util/pos_embed.py"]


class _Stand_in:
    """The `torch` seen by models_semaim: torch, with `rand` and (while constructing) `zeros` replaced."""

    def __init__(self, rand=None, grid=None):
        self._rand, self._grid, self.rand_calls = rand, grid, []

    def rand(self, *size, **kw):
        assert self._rand is not None and not kw, "unexpected torch.rand in the official code"
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        self.rand_calls.append(shape)
        assert len(self.rand_calls) == 1 and shape == tuple(self._rand.shape), self.rand_calls
        return self._rand.clone()

    def zeros(self, *size, **kw):
        # AimViT.__init__ fills a (grid, 2, 4) split_matrix for a hard-coded 14x14 grid (rows 0..13);
        # with a smaller grid that raises IndexError. Only the centre types that are not attention_center
        # read it, so for the check it is simply allocated with 14 rows.
        if self._grid is not None and size == ((self._grid, 2, 4),) and self._grid < 14:
            return torch.zeros((14, 2, 4), **kw)
        return torch.zeros(*size, **kw)

    def __getattr__(self, name):
        return getattr(torch, name)


@contextlib.contextmanager
def _official_torch(module, stand_in):
    saved_torch, saved_cuda = module.torch, torch.Tensor.cuda
    module.torch = stand_in
    torch.Tensor.cuda = lambda self, *a, **k: self   # the official code calls .cuda() unconditionally
    try:
        yield stand_in
    finally:
        module.torch = saved_torch
        torch.Tensor.cuda = saved_cuda


def _import_official(path, tmp):
    if not os.path.exists(os.path.join(path, "models", "models_semaim.py")):
        import official_code   # path is a git directory of skyoux/SemAIM: export HEAD
        print(f"exported SemAIM {official_code.export(path, 'HEAD', SOURCES, tmp)} into {tmp}", file=sys.stderr)
        path = tmp
    sys.path.insert(0, path)
    try:
        import models.models_semaim as mod
    finally:
        sys.path.remove(path)
    return mod


def check_against_official(a, path):
    """One-off: same weights, images and uniforms through the official AimViT, following the official
    engine (eval + no_grad forward_encoder, train, model(imgs, None, attention)); prints both losses
    and fails unless they agree within 1e-5 relative."""
    with tempfile.TemporaryDirectory() as tmp:
        mod = _import_official(path, tmp)
    torch.manual_seed(0)
    mine = SemAIM(a)
    grid = a.img // a.patch
    with _official_torch(mod, _Stand_in(grid=grid)):
        official = mod.AimViT(img_size=a.img, patch_size=a.patch, in_chans=3, embed_dim=a.width, depth=a.depth,
                              num_heads=a.heads, mlp_ratio=4.0, drop_path_rate=0.0, query_depth=a.query_depth,
                              permutation_type="attention_center", attention_type="cls",
                              prediction_head_type="MLP", loss_type="L2", predict_feature="none",
                              norm_pix_loss=True, gaussian_kernel_size=a.kernel or None,
                              gaussian_sigma=a.sigma if a.kernel else None)
    sd = {k.replace("blur", "gaussian_blur.weight"): v for k, v in mine.state_dict().items()}
    official.load_state_dict(sd, strict=True)
    imgs = torch.randn(a.batch, 3, a.img, a.img)
    noise = torch.rand(a.batch, mine.L)

    official.eval()
    with torch.no_grad():
        ref_tokens, ref_attention, ref_self = official(imgs, forward_encoder=True)
    official.train()
    with _official_torch(mod, _Stand_in(rand=noise)) as fake:
        ref_loss, ref_score, _ = official(imgs, None, ref_attention.detach())
    assert fake.rand_calls == [(a.batch, mine.L)], fake.rand_calls

    mine.eval()
    with torch.no_grad():
        tokens, attention, self_attention = mine.encode(imgs)
        score = mine.order(attention, noise)
    mine.train()
    loss = mine(imgs, noise)

    def rel(x, y):
        return float((x - y).abs().max() / y.abs().max())

    ours, ref = float(loss.detach()), float(ref_loss.detach())
    out = {"official_loss": ref, "loss": ours, "rel_diff": abs(ours - ref) / abs(ref),
           "grid": grid, "split_matrix_padded": grid < 14, "attention": a.attention,
           "tokens_rel_diff": rel(tokens, ref_tokens), "attention_rel_diff": rel(attention, ref_attention),
           "self_attention_rel_diff": rel(self_attention, ref_self), "score_rel_diff": rel(score, ref_score),
           "same_order": bool(torch.equal(torch.argsort(score, stable=True), torch.argsort(ref_score, stable=True)))}
    print(json.dumps(out))
    assert out["same_order"], "autoregression orders differ"
    assert out["rel_diff"] <= 1e-5, f"loss {out['loss']} vs official {out['official_loss']}"


def main():
    ap = argparse.ArgumentParser()
    for k, v in [("width", 192), ("depth", 12), ("heads", 3), ("img", 32), ("patch", 4), ("query-depth", 12),
                 ("batch", 128), ("steps", 10), ("warmup", 3), ("threads", 2), ("kernel", 3)]:
        ap.add_argument("--" + k, type=int, default=v)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--mode", choices=["eager", "compile"], default="eager")
    ap.add_argument("--attention", choices=["sdpa", "explicit"], default="sdpa")
    ap.add_argument("--check-against-official", metavar="DIR")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.check_against_official:
        return check_against_official(a, a.check_against_official)
    torch.manual_seed(0)
    base = rss_bytes()
    model = SemAIM(a)
    train_and_report(model, a, model.L, base, compile=compile_parts)


if __name__ == "__main__":
    main()
