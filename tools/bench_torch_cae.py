"""PyTorch side of `tessera bench train` for CAE (context autoencoder, Atten4Vis/CAE v1) with pixel
targets: times pre-training steps (forward, backward, AdamW) of the official model structure on
synthetic images, eager or torch.compile, and prints one JSON line
  {"images_per_s": ..., "step_seconds": [...], "peak_bytes": ..., "threads": ..., "loss": ...}
peak_bytes is the growth of the process's peak resident set over its size just before the model is
built (so the PyTorch libraries themselves are not counted), the same measure Tessera reports.

The model is the official ContextAutoencoderViT (models/modeling_cae.py, modeling_cae_helper.py) with
Tessera's pixel target in place of the DALL-E token ids (no tokenizer weights exist for the
benchmark): the decoder head predicts the p²·3 norm-pix pixels of every masked patch, MSE.
  * encoder: patch embedding + fixed position table, cls + the visible patches (ascending patch
    order, as the official boolean indexing gives), BEiT blocks with layer scale 0.1, final norm;
  * alignment target: the same encoder (the same parameters: the official alignment encoder is a
    copy that alignment_parameter_update re-points at the encoder's tensors every step) on cls + the
    masked patches under torch.no_grad(), cls dropped;
  * with --dec-width != --width, encoder_to_regresser (Linear + LayerNorm) on both, as officially;
  * latent regressor: mask tokens are queries; each RegressorBlock attends from LN_q(q + pos_q) to
    keys LN_k([visible latents, q] + [pos_visible, pos_masked]) and values LN_v([visible latents,
    q]) (bias-free q/k/v projections, learnable q_bias / v_bias, zero k bias), then
    x = q + γ1 ⊙ attn; x = norm2_cross(x); x = x + γ2 ⊙ mlp_cross(x) (post-norm, no norm before the
    MLP); regresser.norm at the end gives latent_predict;
  * decoder: latent_predict + the masked patches' positions, BEiT blocks with layer scale 0.1 over
    the masked tokens only, norm, head (p²·3);
  * loss = MSE(pred, norm-pix target of the masked patches) + 2 · MSE(latent_predict, latent_target).
Encoder and decoder blocks are timm's own timm.models.beit.Block (fused qkv with bias=False plus
q_bias / v_bias and a zero non-persistent k_bias, gamma_1 / gamma_2 layer scale; in timm 1.0.31 the
parameter names are exactly CAE's Block's: norm1, attn.qkv, attn.q_bias, attn.v_bias, attn.proj,
norm2, mlp.fc1, mlp.fc2, gamma_1, gamma_2); the patch embedding is timm.layers.PatchEmbed and the
regressor's MLP timm.layers.Mlp. The regressor block is CAE-specific and written here. Every
parameter name equals the official model's (minus alignment_encoder.*), so the official check loads
this model's state dict as it is.

Masks: train_and_report hands the forward per-step noise (B, L); each sample masks exactly
--mask-count patches, those with the lowest noise. CAE's block-wise MaskingGenerator is not used:
for timing only the count matters (the shapes are the same), not which patches are masked.
Tokens are selected with torch.gather on sorted indices, not boolean indexing, so torch.compile
needs no data-dependent shapes.

Usage: python3 tools/bench_torch_cae.py --width 192 --depth 12 --heads 3 --img 32 --patch 4 \
         --dec-width 192 --dec-depth 4 --dec-heads 3 --regressor-depth 4 --mask-count 32 \
         --batch 128 --steps 10 --warmup 3 --threads 2 --mode eager --attention sdpa
--attention explicit spells out softmax(q·kᵀ·scale)·v as the official code does (timm's non-fused
path for the timm blocks); sdpa uses F.scaled_dot_product_attention.
--check-against-official DIR compares this model's loss with the official ContextAutoencoderViT's
on the same weights (perturbed, so that layer scales, norms and biases are told apart), images and
mask instead of benchmarking, and fails unless they agree within 1e-5 relative. The official model
gets decoder_num_classes = p²·3 and its outputs are scored as above (its flattened decoder output
against the norm-pix targets of bool_masked_pos's patches, and 2 · MSE of its latent_predict /
latent_target): the check covers the model, the loss is this script's. DIR holds the exported
official sources (models/modeling_cae.py, models/modeling_cae_helper.py, models/modeling_finetune.py)
or is a git directory of the official repository, which is then exported (HEAD) into a temporary
folder (tools/official_code.py). furnace.utils, which modeling_finetune imports for linear probing,
is a stub that raises on use (the real one needs tensorboardX and CAE v2's CLIP); while the official
forward runs, Tensor.cuda is the identity (the model moves rd_pos_embed with .cuda() unconditionally).
The command line and the timed loop are tools/bench_torch_common.py's.
"""
import json
import sys
import tempfile
import types
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from timm.layers import Mlp, PatchEmbed
from timm.models.beit import Block as BeitBlock

import bench_torch_common
from bench_torch_common import norm_pix_target
from official_code import cuda_is_identity, exported_or_export, import_exported, stub_modules

NORM = partial(nn.LayerNorm, eps=1e-6)
LAYER_SCALE = 0.1
ALIGN_LOSS_WEIGHT = 2.0
# the options besides bench_torch_common's
FLAGS = [("dec-width", 192), ("dec-depth", 4), ("dec-heads", 3), ("regressor-depth", 4), ("mask-count", 32)]


def beit_blocks(n, d, heads, sdpa):
    blocks = nn.ModuleList(BeitBlock(d, heads, qkv_bias=True, mlp_ratio=4.0, init_values=LAYER_SCALE,
                                     norm_layer=NORM) for _ in range(n))
    for blk in blocks:
        blk.attn.fused_attn = sdpa
    return blocks


def gather(x, ids):
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class CrossAttention(nn.Module):
    """CAE's CrossAttention: bias-free q / k / v projections, learnable q_bias and v_bias (k none)."""

    def __init__(self, d, heads, sdpa):
        super().__init__()
        self.heads, self.sdpa = heads, sdpa
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(d))
        self.v_bias = nn.Parameter(torch.zeros(d))
        self.proj = nn.Linear(d, d)

    def split(self, t):
        b, n, d = t.shape
        return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x, k, v):
        b, n, d = x.shape
        q = self.split(F.linear(x, self.q.weight, self.q_bias))
        k = self.split(self.k(k))
        v = self.split(F.linear(v, self.v.weight, self.v_bias))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            y = ((q * (d // self.heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class RegressorBlock(nn.Module):
    def __init__(self, d, heads, sdpa):
        super().__init__()
        self.norm1_q, self.norm1_k, self.norm1_v, self.norm2_cross = NORM(d), NORM(d), NORM(d), NORM(d)
        self.cross_attn = CrossAttention(d, heads, sdpa)
        self.mlp_cross = Mlp(d, 4 * d)
        self.gamma_1_cross = nn.Parameter(torch.full((d,), LAYER_SCALE))
        self.gamma_2_cross = nn.Parameter(torch.full((d,), LAYER_SCALE))

    def forward(self, x_q, x_kv, pos_q, pos_k):
        x = x_q + self.gamma_1_cross * self.cross_attn(self.norm1_q(x_q + pos_q), self.norm1_k(x_kv + pos_k),
                                                       self.norm1_v(x_kv))
        x = self.norm2_cross(x)
        return x + self.gamma_2_cross * self.mlp_cross(x)


class Encoder(nn.Module):
    def __init__(self, a, sdpa):
        super().__init__()
        self.patch_embed = PatchEmbed(a.img, a.patch, 3, a.width)
        self.L = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.randn(1, 1, a.width) * 0.02)
        self.register_buffer("pos_embed", torch.randn(1, self.L + 1, a.width) * 0.02)
        self.blocks = beit_blocks(a.depth, a.width, a.heads, sdpa)
        self.norm = NORM(a.width)

    def forward(self, imgs, ids):
        """cls + the patches `ids` (B, n), in that order."""
        x = gather(self.patch_embed(imgs) + self.pos_embed[:, 1:], ids)
        x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1), x], 1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class Regresser(nn.Module):
    def __init__(self, a, sdpa):
        super().__init__()
        self.regressor_blocks = nn.ModuleList(RegressorBlock(a.dec_width, a.dec_heads, sdpa)
                                              for _ in range(a.regressor_depth))
        self.norm = NORM(a.dec_width)

    def forward(self, x_masked, x_visible, pos_masked, pos_visible):
        pos_k = torch.cat([pos_visible, pos_masked], 1)
        for blk in self.regressor_blocks:
            x_masked = blk(x_masked, torch.cat([x_visible, x_masked], 1), pos_masked, pos_k)
        return self.norm(x_masked)


class Decoder(nn.Module):
    def __init__(self, a, sdpa):
        super().__init__()
        self.decoder_blocks = beit_blocks(a.dec_depth, a.dec_width, a.dec_heads, sdpa)
        self.norm = NORM(a.dec_width)
        self.head = nn.Linear(a.dec_width, a.patch * a.patch * 3)

    def forward(self, x, pos):
        x = x + pos
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.head(self.norm(x))


class CAE(nn.Module):
    def __init__(self, a):
        super().__init__()
        sdpa = a.attention == "sdpa"
        self.p, self.m = a.patch, a.mask_count
        self.encoder = Encoder(a, sdpa)
        self.L = self.encoder.L
        assert 0 < self.m < self.L, f"--mask-count must be in 1 ..< {self.L}"
        if a.dec_width != a.width:
            self.encoder_to_regresser = nn.Linear(a.width, a.dec_width)
            self.encoder_to_regresser_norm = NORM(a.dec_width)
        else:
            self.encoder_to_regresser = None
        self.register_buffer("rd_pos_embed", torch.randn(1, self.L + 1, a.dec_width) * 0.02)
        self.regresser = Regresser(a, sdpa)
        self.mask_token = nn.Parameter(torch.randn(1, 1, a.dec_width) * 0.02)
        self.decoder = Decoder(a, sdpa)

    def project(self, z):
        if self.encoder_to_regresser is None:
            return z
        return self.encoder_to_regresser_norm(self.encoder_to_regresser(z))

    def masks(self, noise):
        """(masked ids, visible ids), each ascending: the mask_count lowest-noise patches are masked."""
        order = torch.argsort(noise, dim=1)
        return order[:, :self.m].sort(dim=1).values, order[:, self.m:].sort(dim=1).values

    def streams(self, imgs, masked, visible):
        b = imgs.shape[0]
        z = self.project(self.encoder(imgs, visible))
        with torch.no_grad():
            latent_target = self.project(self.encoder(imgs, masked)[:, 1:])
        pos = self.rd_pos_embed[:, 1:].expand(b, -1, -1)
        pos_masked, pos_visible = gather(pos, masked), gather(pos, visible)
        latent_predict = self.regresser(self.mask_token.expand(b, self.m, -1), z[:, 1:], pos_masked, pos_visible)
        pred = self.decoder(latent_predict, pos_masked)
        return pred, latent_predict, latent_target

    def pixel_targets(self, imgs):
        return norm_pix_target(imgs, self.p)

    def forward(self, imgs, noise):
        masked, visible = self.masks(noise)
        pred, latent_predict, latent_target = self.streams(imgs, masked, visible)
        target = gather(self.pixel_targets(imgs), masked)
        return F.mse_loss(pred, target) + ALIGN_LOSS_WEIGHT * F.mse_loss(latent_predict, latent_target)


# ----------------------------------------------------------------------------- official check

SOURCES = ["models/modeling_cae.py", "models/modeling_cae_helper.py", "models/modeling_finetune.py"]


def _import_official(path, tmp):
    path = exported_or_export(path, SOURCES, tmp, "CAE")
    stub_modules(always=["furnace.utils"])   # furnace/ itself is not exported: an empty package holds it
    sys.modules.setdefault("furnace", types.ModuleType("furnace")).utils = sys.modules["furnace.utils"]
    mod, = import_exported(path, "models.modeling_cae")
    return mod


def check_against_official(a, path):
    """One-off: same weights, images and mask through the official ContextAutoencoderViT (pixel
    head); prints both losses and fails unless they agree within 1e-5 relative."""
    with tempfile.TemporaryDirectory() as tmp:
        mod = _import_official(path, tmp)
    torch.manual_seed(0)
    mine = CAE(a)
    with torch.no_grad():   # tell norms, biases, layer scales apart (timm's init leaves them 1 / 0 / 0.1)
        for p in mine.parameters():
            p.add_(0.05 * torch.randn_like(p))
    official = mod.ContextAutoencoderViT(
        img_size=a.img, patch_size=a.patch, in_chans=3, embed_dim=a.width, depth=a.depth, num_heads=a.heads,
        mlp_ratio=4.0, qkv_bias=True, norm_layer=NORM, init_values=LAYER_SCALE, drop_path_rate=0.0,
        decoder_embed_dim=a.dec_width, regressor_depth=a.regressor_depth, decoder_num_classes=a.patch ** 2 * 3,
        decoder_num_heads=a.dec_heads, decoder_layer_scale_init_value=LAYER_SCALE, decoder_depth=a.dec_depth,
        args=types.SimpleNamespace(model_type="cae", regressor_depth=a.regressor_depth,
                                   decoder_embed_dim=a.dec_width, decoder_depth=a.dec_depth))
    sd = mine.state_dict()
    sd.update({"alignment_encoder." + k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")})
    missing, unexpected = official.load_state_dict(sd, strict=True)
    assert not missing and not unexpected

    imgs = torch.randn(a.batch, 3, a.img, a.img)
    noise = torch.rand(a.batch, mine.L)
    masked, visible = mine.masks(noise)
    bool_masked_pos = torch.zeros(a.batch, mine.L, dtype=torch.bool).scatter_(1, masked, True)
    mine.train()
    official.train()
    with cuda_is_identity() as calls:
        logits, ref_predict, ref_target = official(imgs, bool_masked_pos=bool_masked_pos)
    assert calls, "the official model no longer calls Tensor.cuda"
    targets = mine.pixel_targets(imgs)[bool_masked_pos]
    ref_main = F.mse_loss(logits.float(), targets)
    ref_align = ALIGN_LOSS_WEIGHT * F.mse_loss(ref_predict.float(), ref_target.detach().float())
    ref = (ref_main + ref_align).item()

    pred, latent_predict, latent_target = mine.streams(imgs, masked, visible)
    ours = mine(imgs, noise).item()

    def rel(x, y):
        return float((x - y).abs().max() / y.abs().max())

    out = {"official_loss": ref, "loss": ours, "rel_diff": abs(ours - ref) / abs(ref),
           "official_loss_main": float(ref_main), "official_loss_align": float(ref_align),
           "attention": a.attention, "mask_count": a.mask_count,
           "pred_rel_diff": rel(pred.reshape(-1, pred.shape[-1]), logits),
           "latent_predict_rel_diff": rel(latent_predict, ref_predict),
           "latent_target_rel_diff": rel(latent_target, ref_target)}
    print(json.dumps(out))
    assert out["rel_diff"] <= 1e-5, f"loss {out['loss']} vs official {out['official_loss']}"


if __name__ == "__main__":
    bench_torch_common.main(CAE, FLAGS, check=check_against_official)
