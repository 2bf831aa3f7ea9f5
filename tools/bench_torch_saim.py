"""PyTorch side of `tessera bench train` for SAIM (stochastic autoregressive image modeling,
qiy20/SAIM): times pre-training steps (forward, backward, AdamW) of the official two-stream SAIM model
structure on synthetic images, eager or torch.compile, and prints one JSON line
  {"images_per_s": ..., "step_seconds": [...], "peak_bytes": ..., "threads": ..., "loss": ...}
peak_bytes is the growth of the process's peak resident set over its size just before the model is
built (so the PyTorch libraries themselves are not counted), the same measure Tessera reports.

The computation follows the official models_saim.py / util/blocks.py: a content stream h (patch
tokens + cls) and a query stream g (starting from the fixed position table); both are ordered by a
random permutation given by per-step noise, through additive -inf attention masks built in the
forward. Blocks take separate q/k/v projections and apply the same norm1 to query and key/value input.

Usage: python3 tools/bench_torch_saim.py --width 192 --depth 12 --heads 3 --img 32 --patch 4 \
         --query-depth 12 --kernel 3 --sigma 1 --batch 128 --steps 10 --warmup 3 --threads 2 \
         --mode eager --attention sdpa
--kernel 0 disables the Gaussian blur of the target. --attention explicit spells out
softmax(q·kᵀ·scale + mask)·v as the official code does; sdpa uses F.scaled_dot_product_attention
with the same additive float mask.
--check-against-official DIR compares this model's loss with the official SaimViT's on the same
weights and noise instead of benchmarking. DIR holds the exported official sources (models_saim.py,
util/blocks.py, util/pos_embed.py) or is a git directory of the official repository, which is then
exported (HEAD) into a temporary folder (tools/official_code.py); the official torch.rand returns
this script's noise. The command line and the timed loop are tools/bench_torch_common.py's.
"""
import json
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

from timm.layers import Mlp, PatchEmbed

import bench_torch_common
from bench_torch_common import norm_pix_target
from official_code import exported_or_export, fed, import_exported

# the options of bench_torch_saim.py and bench_torch_semaim.py besides bench_torch_common's
FLAGS = [("query-depth", 12), ("kernel", 3)]
FLOATS = [("sigma", 1.0)]
SOURCES = ["models_saim.py", "util/blocks.py", "util/pos_embed.py"]


class Attention(nn.Module):
    """Multi-head attention with separate q, k, v projections (queries may come from another stream)."""

    def __init__(self, d, heads, sdpa):
        super().__init__()
        self.heads = heads
        self.sdpa = sdpa
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.proj = nn.Linear(d, d)

    def split(self, t):
        b, n, d = t.shape
        return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, xq, xkv, mask):
        b, n, d = xq.shape
        q, k, v = self.split(self.q(xq)), self.split(self.k(xkv)), self.split(self.v(xkv))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            logits = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5 + mask
            y = logits.softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm block used for both streams: self-attention when kv is None, else cross-attention of
    the query tokens onto kv; one norm1 serves both inputs."""

    def __init__(self, d, heads, sdpa):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = Attention(d, heads, sdpa)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = Mlp(d, 4 * d)

    def forward(self, x, kv=None, mask=None):
        nq = self.norm1(x)
        nkv = nq if kv is None else self.norm1(kv)
        x = x + self.attn(nq, nkv, mask)
        return x + self.mlp(self.norm2(x))


def gaussian_kernel(k, sigma):
    """k×k Gaussian centred at (k-1)//2, normalised to sum 1, one copy per RGB channel (3,1,k,k)."""
    r = torch.arange(k, dtype=torch.float32) - (k - 1) // 2
    e = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2))
    return (e / e.sum()).expand(3, 1, k, k).contiguous()


def permutation_masks(noise):
    """Additive masks (B,1,L+1,L+1) for the content stream (token i sees j when noise_j <= noise_i)
    and the query stream (strictly noise_j < noise_i); the cls row sees only cls, every row sees cls."""
    b, n = noise.shape
    ni, nj = noise.unsqueeze(2), noise.unsqueeze(1)

    def additive(blocked):
        blocked = torch.cat([blocked.new_ones(b, 1, n), blocked], 1)
        blocked = torch.cat([blocked.new_zeros(b, n + 1, 1), blocked], 2)
        return noise.new_zeros(blocked.shape).masked_fill(blocked, float("-inf")).unsqueeze(1)

    return additive(ni < nj), additive(ni <= nj)


class SAIM(nn.Module):
    """The two-stream model; `block(d, heads, sdpa)` builds the content-stream blocks (this file's
    Block, or timm's for bench_torch_semaim.py's SemAIM, which overrides `content` to call them)."""

    def __init__(self, a, block=Block):
        super().__init__()
        assert a.depth % a.query_depth == 0
        self.p = a.patch
        self.patch_embed = PatchEmbed(a.img, a.patch, 3, a.width)
        self.L = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.randn(1, 1, a.width) * 0.02)
        self.register_buffer("pos_embed", torch.randn(1, self.L + 1, a.width) * 0.02)
        sdpa = a.attention == "sdpa"
        self.blocks = nn.ModuleList(block(a.width, a.heads, sdpa) for _ in range(a.depth))
        self.query_blocks = nn.ModuleList(Block(a.width, a.heads, sdpa) for _ in range(a.query_depth))
        self.step = a.depth // a.query_depth
        self.norm = nn.LayerNorm(a.width, eps=1e-6)
        self.prediction_head = Mlp(a.width, 4 * a.width, a.patch * a.patch * 3)
        self.kernel = a.kernel
        if a.kernel > 0:
            self.register_buffer("blur", gaussian_kernel(a.kernel, a.sigma))

    def tokens(self, imgs):
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        return torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1), x], 1)

    def content(self, blk, h, mask):
        return blk(h, mask=mask)

    def two_stream_loss(self, imgs, score):
        """Both streams ordered by `score` (B, L), the pixel loss (blurred norm-pix target, L2 mean)."""
        mask_h, mask_g = permutation_masks(score)
        h = self.tokens(imgs)
        g = self.pos_embed.expand(imgs.shape[0], -1, -1)
        for i, blk in enumerate(self.blocks):
            h = self.content(blk, h, mask_h)
            if (i + 1) % self.step == 0:
                g = self.query_blocks[i // self.step](g, h, mask=mask_g)
        pred = self.prediction_head(self.norm(g))[:, 1:]
        if self.kernel > 0:
            imgs = F.conv2d(imgs, self.blur, padding=self.kernel // 2, groups=3)
        target = norm_pix_target(imgs, self.p)
        return ((pred - target) ** 2).mean()

    def forward(self, imgs, noise):
        return self.two_stream_loss(imgs, noise)


def check_against_official(a, path):
    """One-off: same weights and noise through the official SaimViT; prints both losses."""
    with tempfile.TemporaryDirectory() as tmp:
        models_saim, = import_exported(exported_or_export(path, SOURCES, tmp, "SAIM"), "models_saim")
    torch.manual_seed(0)
    mine = SAIM(a)
    official = models_saim.SaimViT(img_size=a.img, patch_size=a.patch, embed_dim=a.width, depth=a.depth,
                                   num_heads=a.heads, query_depth=a.query_depth,
                                   gaussian_kernel_size=a.kernel or None, gaussian_sigma=a.sigma if a.kernel else None)
    sd = {k.replace("blur", "gaussian_blur.weight"): v for k, v in mine.state_dict().items()}
    official.load_state_dict(sd, strict=True)
    imgs = torch.randn(a.batch, 3, a.img, a.img)
    noise = torch.rand(a.batch, mine.L)
    with fed(models_saim, [noise]):
        ref = float(official(imgs))
    ours = float(mine(imgs, noise))
    print(json.dumps({"official_loss": ref, "loss": ours, "rel_diff": abs(ours - ref) / abs(ref)}))


if __name__ == "__main__":
    bench_torch_common.main(SAIM, FLAGS, FLOATS, check=check_against_official)
