#!/usr/bin/env python3
"""Writes Tests/TesseraCoreTests/Fixtures/ops.h5: PyTorch references for TesseraCore's ops and for
whole ViT blocks (timm fused qkv, SAIM split q/k/v, BEiT q_bias/v_bias with layer scale, and SAIM's
cross-attention block), forward and backward.

Every case runs twice on the same float32 inputs: in float32 torch (the reference the Swift tests
hold to 1e-4) and in float64 torch (to report how far each side is from the exact answer).
Layout of one case `<group>`:

    <group>/inputs/<name>     float32   differentiable inputs (blocks: `x`, or `g` and `h`)
    <group>/params/<name>     float32   block parameters under their PyTorch names
    <group>/consts/<name>     float32   non-differentiable tensors (masks, targets, running stats)
    <group>/ints/<name>       int64     labels and token indices
    <group>/gy                float32   the upstream gradient fed to backward
    <group>/out, out64                  forward result in float32 / float64 torch
    <group>/grads/<name>, grads64/<name>  gradient of every input and parameter
    <group>/after/<name>      float32   state after the call (batch-norm running statistics)

Run from the repository root: python3 tools/make_op_fixtures.py   (torch 2.x, h5py, numpy; CI never runs it)
"""
import math
import os
import zlib

import h5py
import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "TesseraCoreTests", "Fixtures", "ops.h5")
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def randn(rng, *shape, std=1.0):
    return (rng.standard_normal(shape) * std).astype(np.float32)


def saim_mask(rng, batch, patches, strict):
    """SAIM's additive masks [B, 1+P, 1+P]: 0 where attention is allowed, -inf elsewhere."""
    n = patches + 1
    m = np.zeros((batch, n, n), dtype=np.float32)
    for b in range(batch):
        noise = rng.random(patches)
        for i in range(n):
            for j in range(1, n):
                hidden = i == 0 or (noise[i - 1] <= noise[j - 1] if strict else noise[i - 1] < noise[j - 1])
                if hidden:
                    m[b, i, j] = -np.inf
    return m


def write_case(f, group, inputs, fn, params=None, consts=None, ints=None, after=None):
    """inputs/params: name -> float32 array (differentiable); consts: name -> float32 array;
    ints: name -> int array. fn(t, c, i) gets dicts of torch tensors and returns the output.
    after(c) names post-call state in the consts dict to record."""
    params = params or {}
    consts = consts or {}
    ints = ints or {}
    g = f.create_group(group)
    for k, v in inputs.items():
        g.create_dataset(f"inputs/{k}", data=v)
    for k, v in params.items():
        g.create_dataset(f"params/{k}", data=v)
    for k, v in consts.items():
        g.create_dataset(f"consts/{k}", data=v)
    for k, v in ints.items():
        g.create_dataset(f"ints/{k}", data=np.asarray(v, dtype=np.int64))
    gy = None
    for dtype, suffix in ((torch.float32, ""), (torch.float64, "64")):
        t = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in {**inputs, **params}.items()}
        c = {k: torch.tensor(v, dtype=dtype) for k, v in consts.items()}
        i = {k: torch.tensor(np.asarray(v), dtype=torch.int64) for k, v in ints.items()}
        out = fn(t, c, i)
        if gy is None:
            gy = randn(rng_for(group + "/gy"), *out.shape) if out.dim() > 0 else np.asarray(1.7, dtype=np.float32)
            g.create_dataset("gy", data=gy)
        out.backward(torch.tensor(gy, dtype=dtype))
        store = np.float32 if suffix == "" else np.float64
        g.create_dataset("out" + suffix, data=out.detach().numpy().astype(store))
        for k, v in t.items():
            grad = v.grad if v.grad is not None else torch.zeros_like(v)
            g.create_dataset(f"grads{suffix}/{k}", data=grad.numpy().astype(store))
        if after and suffix == "":
            for k in after:
                g.create_dataset(f"after/{k}", data=c[k].numpy().astype(np.float32))


# ----------------------------------------------------------------------------------------------
# Attention as the blocks compute it: heads split from the channel axis (timm's reshape order).

def mha(q, k, v, heads, mask=None):
    """q [B, Lq, D], k/v [B, Lk, D]; mask [B, Lq, Lk] or [Lq, Lk] added to the logits."""
    b, lq, d = q.shape
    lk = k.shape[1]
    hd = d // heads
    qh = q.reshape(b, lq, heads, hd).transpose(1, 2)
    kh = k.reshape(b, lk, heads, hd).transpose(1, 2)
    vh = v.reshape(b, lk, heads, hd).transpose(1, 2)
    logits = (qh @ kh.transpose(-2, -1)) * hd ** -0.5
    if mask is not None:
        logits = logits + (mask.unsqueeze(1) if mask.dim() == 3 else mask)
    p = logits.softmax(dim=-1)
    return (p @ vh).transpose(1, 2).reshape(b, lq, d)


def ln(x, p, name):
    return F.layer_norm(x, (x.shape[-1],), p[name + ".weight"], p[name + ".bias"], 1e-6)


def mlp(x, p):
    return F.linear(F.gelu(F.linear(x, p["mlp.fc1.weight"], p["mlp.fc1.bias"])), p["mlp.fc2.weight"], p["mlp.fc2.bias"])


def block_a(t, c, heads):
    """timm Block: fused qkv Linear(D, 3D) with bias."""
    x, p = t["x"], t
    d = x.shape[-1]
    qkv = F.linear(ln(x, p, "norm1"), p["attn.qkv.weight"], p["attn.qkv.bias"])
    q, k, v = qkv.split(d, dim=-1)
    x = x + F.linear(mha(q, k, v, heads, c.get("mask")), p["attn.proj.weight"], p["attn.proj.bias"])
    return x + mlp(ln(x, p, "norm2"), p)


def split_attention(xq, xkv, p, heads, mask):
    q = F.linear(xq, p["attn.q.weight"], p["attn.q.bias"])
    k = F.linear(xkv, p["attn.k.weight"], p["attn.k.bias"])
    v = F.linear(xkv, p["attn.v.weight"], p["attn.v.bias"])
    return F.linear(mha(q, k, v, heads, mask), p["attn.proj.weight"], p["attn.proj.bias"])


def block_b(t, c, heads):
    """SAIM Block (util/blocks.py) used as self-attention: split q, k, v Linears with bias."""
    x, p = t["x"], t
    h = ln(x, p, "norm1")
    x = x + split_attention(h, h, p, heads, c.get("mask"))
    return x + mlp(ln(x, p, "norm2"), p)


def block_c(t, c, heads):
    """BEiT / MAE-priv / CAE block: qkv weight without bias, q_bias and v_bias (k bias zero),
    layer scale gamma_1 and gamma_2."""
    x, p = t["x"], t
    d = x.shape[-1]
    bias = torch.cat([p["attn.q_bias"], torch.zeros_like(p["attn.v_bias"]), p["attn.v_bias"]])
    qkv = F.linear(ln(x, p, "norm1"), p["attn.qkv.weight"], bias)
    q, k, v = qkv.split(d, dim=-1)
    a = F.linear(mha(q, k, v, heads, c.get("mask")), p["attn.proj.weight"], p["attn.proj.bias"])
    x = x + p["gamma_1"] * a
    return x + p["gamma_2"] * mlp(ln(x, p, "norm2"), p)


def block_cross(t, c, heads):
    """SAIM Block with separate query and key/value streams: norm1 normalises both,
    the residual is on the query stream."""
    g, h, p = t["g"], t["h"], t
    g = g + split_attention(ln(g, p, "norm1"), ln(h, p, "norm1"), p, heads, c["mask"])
    return g + mlp(ln(g, p, "norm2"), p)


def block_params(rng, d, layout):
    s = 1 / math.sqrt(d)
    p = {
        "norm1.weight": 1 + randn(rng, d, std=0.1),
        "norm1.bias": randn(rng, d, std=0.1),
    }
    if layout == "A":
        p["attn.qkv.weight"] = randn(rng, 3 * d, d, std=s)
        p["attn.qkv.bias"] = randn(rng, 3 * d, std=0.1)
    elif layout == "B":
        for n in ("q", "k", "v"):
            p[f"attn.{n}.weight"] = randn(rng, d, d, std=s)
            p[f"attn.{n}.bias"] = randn(rng, d, std=0.1)
    else:
        p["attn.qkv.weight"] = randn(rng, 3 * d, d, std=s)
        p["attn.q_bias"] = randn(rng, d, std=0.1)
        p["attn.v_bias"] = randn(rng, d, std=0.1)
    p.update({
        "attn.proj.weight": randn(rng, d, d, std=s),
        "attn.proj.bias": randn(rng, d, std=0.1),
        "norm2.weight": 1 + randn(rng, d, std=0.1),
        "norm2.bias": randn(rng, d, std=0.1),
        "mlp.fc1.weight": randn(rng, 4 * d, d, std=s),
        "mlp.fc1.bias": randn(rng, 4 * d, std=0.1),
        "mlp.fc2.weight": randn(rng, d, 4 * d, std=1 / math.sqrt(4 * d)),
        "mlp.fc2.bias": randn(rng, d, std=0.1),
    })
    if layout == "C":
        p["gamma_1"] = (0.5 + 0.5 * rng.random(d)).astype(np.float32)
        p["gamma_2"] = (0.5 + 0.5 * rng.random(d)).astype(np.float32)
    return p


def write_blocks(f):
    b, l, d, heads = 2, 9, 32, 4
    for layout, fn, masked in (("A", block_a, False), ("B", block_b, True), ("C", block_c, False)):
        r = rng_for("block" + layout)
        consts = {"mask": saim_mask(r, b, l - 1, strict=False)} if masked else {}
        write_case(f, "block" + layout, {"x": randn(r, b, l, d)}, lambda t, c, i, fn=fn: fn(t, c, heads),
                   params=block_params(r, d, layout), consts=consts)
    r = rng_for("blockCross")
    write_case(f, "blockCross", {"g": randn(r, b, l, d), "h": randn(r, b, l, d)},
               lambda t, c, i: block_cross(t, c, heads),
               params=block_params(r, d, "B"), consts={"mask": saim_mask(r, b, l - 1, strict=True)})


# ----------------------------------------------------------------------------------------------
# Single ops.

def write_ops(f):
    def case(name, inputs, fn, **kw):
        write_case(f, "ops/" + name, inputs, fn, **kw)

    r = rng_for("ops")
    case("linear", {"x": randn(r, 2, 3, 5), "w": randn(r, 4, 5), "b": randn(r, 4)},
         lambda t, c, i: F.linear(t["x"], t["w"], t["b"]))
    case("linear_nobias", {"x": randn(r, 3, 5), "w": randn(r, 4, 5)}, lambda t, c, i: F.linear(t["x"], t["w"]))
    for ta in (0, 1):
        for tb in (0, 1):
            a = randn(r, 2, 4, 3) if ta else randn(r, 2, 3, 4)
            bs = randn(r, 5, 4) if tb else randn(r, 4, 5)
            bb = randn(r, 2, 5, 4) if tb else randn(r, 2, 4, 5)

            def mm(t, c, i, ta=ta, tb=tb):
                x = t["a"].transpose(-1, -2) if ta else t["a"]
                y = t["b"].transpose(-1, -2) if tb else t["b"]
                return x @ y
            case(f"matmul_shared_{ta}{tb}", {"a": a, "b": bs}, mm)
            case(f"matmul_batched_{ta}{tb}", {"a": a, "b": bb}, mm)
    case("add_general", {"a": randn(r, 2, 1, 4), "b": randn(r, 1, 3, 1)}, lambda t, c, i: t["a"] + t["b"])
    case("sub_suffix", {"a": randn(r, 2, 3, 4), "b": randn(r, 4)}, lambda t, c, i: t["a"] - t["b"])
    case("mul_general", {"a": randn(r, 2, 3, 4), "b": randn(r, 2, 1, 1)}, lambda t, c, i: t["a"] * t["b"])
    case("mul_scalar_like", {"a": randn(r, 1), "b": randn(r, 2, 3)}, lambda t, c, i: t["a"] * t["b"])
    case("sum_axis1", {"x": randn(r, 2, 3, 4)}, lambda t, c, i: t["x"].sum(dim=1))
    case("mean_axis2_keep", {"x": randn(r, 2, 3, 4)}, lambda t, c, i: t["x"].mean(dim=2, keepdim=True))
    case("permute", {"x": randn(r, 2, 3, 4, 5)}, lambda t, c, i: t["x"].permute(2, 0, 3, 1))
    case("concat", {"a": randn(r, 2, 2, 3), "b": randn(r, 2, 1, 3)}, lambda t, c, i: torch.cat([t["a"], t["b"]], dim=1))
    case("slice", {"x": randn(r, 2, 5, 3)}, lambda t, c, i: t["x"][:, 1:4])

    def gather(t, c, i):
        idx = i["index"].view(2, 3, 1).expand(2, 3, 4)
        return torch.gather(t["x"], 1, idx)
    case("gather_tokens", {"x": randn(r, 2, 5, 4)}, gather, ints={"index": [4, 0, 0, 2, 1, 3]})

    def scatter(t, c, i):
        idx = i["index"].view(2, 3, 1).expand(2, 3, 4)
        return t["base"].scatter(1, idx, t["src"])
    case("scatter_tokens", {"src": randn(r, 2, 3, 4), "base": randn(r, 2, 5, 4)}, scatter, ints={"index": [4, 0, 2, 2, 1, 3]})

    case("layer_norm", {"x": randn(r, 2, 3, 8, std=2) + 1, "w": 1 + randn(r, 8, std=0.3), "b": randn(r, 8)},
         lambda t, c, i: F.layer_norm(t["x"], (8,), t["w"], t["b"], 1e-6))
    case("layer_norm_plain", {"x": randn(r, 4, 8)}, lambda t, c, i: F.layer_norm(t["x"], (8,), None, None, 1e-6))

    def bn(training):
        def fn(t, c, i):
            return F.batch_norm(t["x"], c["running_mean"], c["running_var"], training=training, momentum=0.1, eps=1e-5)
        return fn
    stats = {"running_mean": randn(r, 6, std=0.5), "running_var": (0.5 + r.random(6)).astype(np.float32)}
    case("batch_norm_train", {"x": randn(r, 5, 6, std=2)}, bn(True), consts=dict(stats), after=["running_mean", "running_var"])
    case("batch_norm_eval", {"x": randn(r, 5, 6)}, bn(False), consts=dict(stats))
    case("l2_normalize", {"x": randn(r, 3, 7)}, lambda t, c, i: F.normalize(t["x"], dim=-1))
    case("gelu", {"x": randn(r, 4, 9, std=2)}, lambda t, c, i: F.gelu(t["x"]))
    case("softmax", {"x": randn(r, 3, 4, 6, std=2)}, lambda t, c, i: t["x"].softmax(dim=-1))

    def self_attn(t, c, i):
        q, k, v = t["qkv"].split(8, dim=-1)
        return mha(q, k, v, 2, c.get("mask"))
    case("self_attention", {"qkv": randn(r, 2, 5, 24)}, self_attn)
    case("self_attention_mask", {"qkv": randn(r, 2, 5, 24)}, self_attn, consts={"mask": saim_mask(r, 2, 4, strict=False)})
    cross_mask = np.where(r.random((2, 3, 6)) < 0.3, -np.inf, 0).astype(np.float32)
    cross_mask[:, :, 0] = 0
    case("cross_attention", {"q": randn(r, 2, 3, 8), "k": randn(r, 2, 6, 8), "v": randn(r, 2, 6, 8)},
         lambda t, c, i: mha(t["q"], t["k"], t["v"], 2, c["mask"]), consts={"mask": cross_mask})

    case("im2col", {"img": randn(r, 2, 3, 4, 6)}, lambda t, c, i: F.unfold(t["img"], 2, stride=2).transpose(1, 2))
    case("patch_embed", {"img": randn(r, 2, 3, 8, 8), "w": randn(r, 6, 3, 4, 4, std=0.2), "b": randn(r, 6)},
         lambda t, c, i: F.conv2d(t["img"], t["w"], t["b"], stride=4).flatten(2).transpose(1, 2))

    # SAIM's Gaussian: exp(-((x-mu)^2 + (y-mu)^2) / 2 sigma^2), mu = (k-1)//2, normalised.
    k, sigma = 5, 1.0
    ax = np.arange(k) - (k - 1) // 2
    gk = np.exp(-(ax[None, :] ** 2 + ax[:, None] ** 2) / (2 * sigma ** 2))
    gk = (gk / gk.sum()).astype(np.float32)
    case("depthwise_blur", {"img": randn(r, 2, 3, 7, 6)},
         lambda t, c, i: F.conv2d(t["img"], c["kernel"].expand(3, 1, k, k), padding=k // 2, groups=3),
         consts={"kernel": gk})

    case("mse_loss", {"pred": randn(r, 3, 5)}, lambda t, c, i: F.mse_loss(t["pred"], c["target"]), consts={"target": randn(r, 3, 5)})
    case("l1_loss", {"pred": randn(r, 3, 5)}, lambda t, c, i: F.l1_loss(t["pred"], c["target"]), consts={"target": randn(r, 3, 5)})
    labels = [1, 0, 4, 4]
    case("cross_entropy", {"logits": randn(r, 4, 5, std=2)}, lambda t, c, i: F.cross_entropy(t["logits"], i["labels"]),
         ints={"labels": labels})
    case("cross_entropy_smooth", {"logits": randn(r, 4, 5, std=2)},
         lambda t, c, i: F.cross_entropy(t["logits"], i["labels"], label_smoothing=0.1), ints={"labels": labels})
    soft = r.random((4, 5)).astype(np.float32)
    soft /= soft.sum(axis=1, keepdims=True)
    case("cross_entropy_soft", {"logits": randn(r, 4, 5, std=2)},
         lambda t, c, i: torch.sum(-c["q"] * F.log_softmax(t["logits"], dim=-1), dim=-1).mean(), consts={"q": soft})

    patch_mask = np.array([1, 0, 1, 1, 0, 1], dtype=np.float32)
    case("masked_patch_mse", {"pred": randn(r, 2, 3, 4)},
         lambda t, c, i: (((t["pred"] - c["target"]) ** 2).mean(dim=-1) * c["mask"].view(2, 3)).sum() / c["mask"].sum(),
         consts={"target": randn(r, 2, 3, 4), "mask": patch_mask})


def main():
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    tmp = OUT + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["generator"] = "tools/make_op_fixtures.py"
        f.attrs["torch"] = str(torch.__version__)
        write_ops(f)
        write_blocks(f)
    os.replace(tmp, OUT)
    print(f"wrote {OUT} ({os.path.getsize(OUT) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
