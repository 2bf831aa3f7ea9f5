"""Reference numbers for MAE (official and MAE-priv variants) on a tiny model, from PyTorch.

The model below restates the computation of facebookresearch/mae models_mae.py (official) and
BUPT-PRIV/MAE-priv mae/modeling_pretrain.py (variant) as described in the spec; parameter names are
the repositories' own, so the fixture also checks Tessera's naming.
Writes Tests/TesseraTests/Fixtures/mae_official.h5 and mae_priv.h5: parameters, images, noise, and the
float32 loss, prediction and every gradient (plus the float64 loss and prediction for reference).
Run once: python3 tools/make_mae_fixture.py
"""
import math
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "TesseraTests", "Fixtures")


def sincos(dim, grid, cls, layout):
    q = dim // 4
    omega = 1.0 / 10000 ** (np.arange(q, dtype=np.float64) / q)
    rows = []
    for r in range(grid):
        for c in range(grid):
            a, b = (c, r) if layout == "mae" else (r, c)
            rows.append(np.concatenate([np.sin(a * omega), np.cos(a * omega), np.sin(b * omega), np.cos(b * omega)]))
    t = np.stack(rows)
    if cls:
        t = np.concatenate([np.zeros((1, dim)), t])
    return torch.tensor(t[None], dtype=torch.float32)


def layer_norm(p, name, x):
    return F.layer_norm(x, x.shape[-1:], p[name + ".weight"], p[name + ".bias"], eps=1e-6)


def block(p, pre, x, heads, layout):
    b, n, d = x.shape
    h = layer_norm(p, pre + "norm1", x)
    if layout == "fused":
        qkv = F.linear(h, p[pre + "attn.qkv.weight"], p[pre + "attn.qkv.bias"])
    else:  # beit: k has no bias
        bias = torch.cat([p[pre + "attn.q_bias"], torch.zeros_like(p[pre + "attn.q_bias"]), p[pre + "attn.v_bias"]])
        qkv = F.linear(h, p[pre + "attn.qkv.weight"], bias)
    qkv = qkv.reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    att = (q @ k.transpose(-2, -1)) * (d // heads) ** -0.5
    y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)
    x = x + F.linear(y, p[pre + "attn.proj.weight"], p[pre + "attn.proj.bias"])
    h = layer_norm(p, pre + "norm2", x)
    h = F.linear(F.gelu(F.linear(h, p[pre + "mlp.fc1.weight"], p[pre + "mlp.fc1.bias"])), p[pre + "mlp.fc2.weight"], p[pre + "mlp.fc2.bias"])
    return x + h


def block_params(pre, d, layout, g):
    p = {pre + "norm1.weight": 1 + 0.1 * torch.randn(d, generator=g), pre + "norm1.bias": 0.1 * torch.randn(d, generator=g)}
    if layout == "fused":
        p[pre + "attn.qkv.weight"] = torch.randn(3 * d, d, generator=g) / math.sqrt(d)
        p[pre + "attn.qkv.bias"] = 0.1 * torch.randn(3 * d, generator=g)
    else:
        p[pre + "attn.qkv.weight"] = torch.randn(3 * d, d, generator=g) / math.sqrt(d)
        p[pre + "attn.q_bias"] = 0.1 * torch.randn(d, generator=g)
        p[pre + "attn.v_bias"] = 0.1 * torch.randn(d, generator=g)
    p[pre + "attn.proj.weight"] = torch.randn(d, d, generator=g) / math.sqrt(d)
    p[pre + "attn.proj.bias"] = 0.1 * torch.randn(d, generator=g)
    p[pre + "norm2.weight"] = 1 + 0.1 * torch.randn(d, generator=g)
    p[pre + "norm2.bias"] = 0.1 * torch.randn(d, generator=g)
    p[pre + "mlp.fc1.weight"] = torch.randn(4 * d, d, generator=g) / math.sqrt(d)
    p[pre + "mlp.fc1.bias"] = 0.1 * torch.randn(4 * d, generator=g)
    p[pre + "mlp.fc2.weight"] = torch.randn(d, 4 * d, generator=g) / math.sqrt(4 * d)
    p[pre + "mlp.fc2.bias"] = 0.1 * torch.randn(d, generator=g)
    return p


CFG = dict(img=16, patch=4, chans=3, width=32, depth=2, heads=4, dwidth=16, ddepth=2, dheads=2, batch=2, ratio=0.75)


def make_params(variant, g):
    c = CFG
    d, dd, pp = c["width"], c["dwidth"], c["patch"]
    enc = "" if variant == "official" else "encoder."
    layout = "fused" if variant == "official" else "beit"
    p = {enc + "patch_embed.proj.weight": torch.randn(d, c["chans"], pp, pp, generator=g) * 0.1,
         enc + "patch_embed.proj.bias": 0.1 * torch.randn(d, generator=g)}
    if variant == "official":
        p["cls_token"] = 0.02 * torch.randn(1, 1, d, generator=g)
    for i in range(c["depth"]):
        p.update(block_params(f"{enc}blocks.{i}.", d, layout, g))
    p[enc + "norm.weight"] = 1 + 0.1 * torch.randn(d, generator=g)
    p[enc + "norm.bias"] = 0.1 * torch.randn(d, generator=g)
    if variant == "official":
        p["decoder_embed.weight"] = torch.randn(dd, d, generator=g) / math.sqrt(d)
        p["decoder_embed.bias"] = 0.1 * torch.randn(dd, generator=g)
        dec, pred = "decoder_blocks.", "decoder_pred."
        p["decoder_norm.weight"] = 1 + 0.1 * torch.randn(dd, generator=g)
        p["decoder_norm.bias"] = 0.1 * torch.randn(dd, generator=g)
    else:
        p["encoder_to_decoder.weight"] = torch.randn(dd, d, generator=g) / math.sqrt(d)
        dec, pred = "decoder.blocks.", "decoder.head."
        p["decoder.norm.weight"] = 1 + 0.1 * torch.randn(dd, generator=g)
        p["decoder.norm.bias"] = 0.1 * torch.randn(dd, generator=g)
    p["mask_token"] = 0.02 * torch.randn(1, 1, dd, generator=g)
    for i in range(c["ddepth"]):
        p.update(block_params(f"{dec}{i}.", dd, layout, g))
    p[pred + "weight"] = torch.randn(pp * pp * c["chans"], dd, generator=g) / math.sqrt(dd)
    p[pred + "bias"] = 0.1 * torch.randn(pp * pp * c["chans"], generator=g)
    return p


def forward(p, variant, imgs, noise, dtype):
    c = CFG
    b, L, pp, d = imgs.shape[0], (c["img"] // c["patch"]) ** 2, c["patch"], c["width"]
    grid = c["img"] // pp
    official = variant == "official"
    enc = "" if official else "encoder."
    layout = "fused" if official else "beit"
    x = F.conv2d(imgs, p[enc + "patch_embed.proj.weight"], p[enc + "patch_embed.proj.bias"], stride=pp)
    x = x.flatten(2).transpose(1, 2)
    if official:
        pos = sincos(d, grid, True, "mae").to(dtype)
        x = x + pos[:, 1:]
        keep = int(L * (1 - c["ratio"]))
        ids_shuffle = torch.argsort(noise, dim=1, stable=True)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :keep]
        x = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones(b, L, dtype=dtype)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        cls = p["cls_token"] + pos[:, :1]
        x = torch.cat([cls.expand(b, -1, -1), x], 1)
        for i in range(c["depth"]):
            x = block(p, f"blocks.{i}.", x, c["heads"], layout)
        x = layer_norm(p, "norm", x)
        x = F.linear(x, p["decoder_embed.weight"], p["decoder_embed.bias"])
        mt = p["mask_token"].repeat(b, L + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:], mt], 1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1], x_], 1) + sincos(c["dwidth"], grid, True, "mae").to(dtype)
        for i in range(c["ddepth"]):
            x = block(p, f"decoder_blocks.{i}.", x, c["dheads"], layout)
        x = layer_norm(p, "decoder_norm", x)
        pred = F.linear(x, p["decoder_pred.weight"], p["decoder_pred.bias"])[:, 1:]
        t = imgs.reshape(b, 3, grid, pp, grid, pp)
        t = torch.einsum("nchpwq->nhwpqc", t).reshape(b, L, pp * pp * 3)
        mean = t.mean(-1, keepdim=True)
        var = t.var(-1, keepdim=True)
        t = (t - mean) / (var + 1e-6) ** 0.5
        loss = ((pred - t) ** 2).mean(-1)
        loss = (loss * mask).sum() / mask.sum()
        return loss, pred, mask
    # MAE-priv: no cls (GAP config), BEiT blocks, MoCo table, one mask for the batch, chw targets, layer-norm targets
    pos = sincos(d, grid, False, "moco").to(dtype)
    x = x + pos
    masked = int(c["ratio"] * L)
    visible = L - masked
    shuffle = torch.argsort(noise[:1], dim=1, stable=True).repeat(b, 1)
    vis = shuffle[:, :visible]
    x = x.gather(1, vis.unsqueeze(-1).expand(-1, -1, d))
    for i in range(c["depth"]):
        x = block(p, f"encoder.blocks.{i}.", x, c["heads"], layout)
    x = layer_norm(p, "encoder.norm", x)
    x = F.linear(x, p["encoder_to_decoder.weight"])
    mt = p["mask_token"].repeat(b, masked, 1)
    x = torch.cat([x, mt], 1)
    x = x.gather(1, shuffle.argsort(1).unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    x = x + sincos(c["dwidth"], grid, False, "moco").to(dtype)
    for i in range(c["ddepth"]):
        x = block(p, f"decoder.blocks.{i}.", x, c["dheads"], layout)
    pred = F.linear(layer_norm(p, "decoder.norm", x), p["decoder.head.weight"], p["decoder.head.bias"])
    t = imgs.reshape(b, 3, grid, pp, grid, pp).permute(0, 2, 4, 1, 3, 5).reshape(b, L, -1)
    t = F.layer_norm(t, t.shape[-1:], eps=1e-6)
    idx = shuffle[:, visible:].unsqueeze(-1).expand(-1, -1, pred.shape[-1])
    loss = F.mse_loss(pred.gather(1, idx), t.gather(1, idx))
    mask = torch.ones(b, L, dtype=dtype)
    mask.scatter_(1, shuffle[:, :visible], 0)
    return loss, pred, mask


def run(variant):
    g = torch.Generator().manual_seed(7 if variant == "official" else 11)
    params = make_params(variant, g)
    c = CFG
    L = (c["img"] // c["patch"]) ** 2
    imgs = torch.randn(c["batch"], 3, c["img"], c["img"], generator=g)
    noise = torch.rand(c["batch"], L, generator=g)
    path = os.path.join(OUT, f"mae_{variant}.h5")
    with h5py.File(path, "w") as f:
        for k, v in params.items():
            f[f"params/{k}"] = v.numpy().astype(np.float32)
        f["images"] = imgs.numpy().astype(np.float32)
        f["noise"] = noise.numpy().astype(np.float32)
        for dtype, tag in [(torch.float32, "f32"), (torch.float64, "f64")]:
            p = {k: v.to(dtype).clone().requires_grad_(True) for k, v in params.items()}
            loss, pred, mask = forward(p, variant, imgs.to(dtype), noise, dtype)
            loss.backward()
            f[f"{tag}/loss"] = np.array(loss.item(), dtype=np.float64)
            f[f"{tag}/pred"] = pred.detach().numpy().astype(np.float32)
            f[f"{tag}/mask"] = mask.numpy().astype(np.float32)
            if tag == "f32":  # the float64 run contributes its loss and prediction only
                for k, v in p.items():
                    f[f"{tag}/grads/{k}"] = v.grad.numpy().astype(np.float32)
        for k, v in CFG.items():
            f.attrs[k] = str(v)
    print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    run("official")
    run("priv")
