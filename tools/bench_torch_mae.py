"""PyTorch side of `tessera bench train`: times MAE pre-training steps (forward, backward, AdamW) of
the official MAE model structure (timm's own Block and PatchEmbed, as models_mae.py uses them) on synthetic images, eager or torch.compile, and prints one JSON line
  {"images_per_s": ..., "step_seconds": [...], "peak_bytes": ..., "threads": ..., "loss": ...}
peak_bytes is the growth of the process's peak resident set over its size just before the model is
built (so the PyTorch libraries themselves are not counted), the same measure Tessera reports.

Usage: python3 tools/bench_torch_mae.py --width 192 --depth 12 --heads 3 --img 32 --patch 4 \
         --dec-width 128 --dec-depth 2 --dec-heads 4 --batch 128 --steps 10 --warmup 3 --mode eager
(also --threads 2 and --mask-ratio 0.75 by default). The command line and the timed loop are
tools/bench_torch_common.py's.
"""

from functools import partial

import torch
import torch.nn as nn
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block

import bench_torch_common
from bench_torch_common import norm_pix_target


def block(d, h):
    """timm's own ViT Block, as the MAE code builds it (qkv bias, LayerNorm eps 1e-6, fused SDPA)."""
    return Block(d, h, mlp_ratio=4.0, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6))


class MAE(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.p = a.patch
        g = a.img // a.patch
        self.L = g * g
        self.patch_embed = PatchEmbed(a.img, a.patch, 3, a.width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, a.width))
        self.register_buffer("pos_embed", torch.randn(1, self.L + 1, a.width) * 0.02)
        self.blocks = nn.ModuleList(block(a.width, a.heads) for _ in range(a.depth))
        self.norm = nn.LayerNorm(a.width, eps=1e-6)
        self.decoder_embed = nn.Linear(a.width, a.dec_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, a.dec_width))
        self.register_buffer("decoder_pos_embed", torch.randn(1, self.L + 1, a.dec_width) * 0.02)
        self.decoder_blocks = nn.ModuleList(block(a.dec_width, a.dec_heads) for _ in range(a.dec_depth))
        self.decoder_norm = nn.LayerNorm(a.dec_width, eps=1e-6)
        self.decoder_pred = nn.Linear(a.dec_width, a.patch * a.patch * 3)
        self.mask_ratio = a.mask_ratio

    def forward(self, imgs, noise):
        b = imgs.shape[0]
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        keep = int(self.L * (1 - self.mask_ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :keep]
        x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        mask = torch.ones(b, self.L)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        x = torch.cat([cls, x], 1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_embed(self.norm(x))
        mt = self.mask_token.expand(b, self.L + 1 - x.shape[1], -1)
        y = torch.cat([x[:, 1:], mt], 1)
        y = torch.gather(y, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], y], 1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:]
        target = norm_pix_target(imgs, self.p)
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()


if __name__ == "__main__":
    bench_torch_common.main(MAE, [("dec-width", 128), ("dec-depth", 2), ("dec-heads", 4)], [("mask-ratio", 0.75)],
                            attention=False)
