#!/usr/bin/env python3
"""PyTorch reference numbers for CAE, produced by the official Atten4Vis/CAE (v1) code on a tiny model.

Nothing of CAE is restated here. At run time the script exports models/modeling_cae.py,
models/modeling_cae_helper.py, models/modeling_finetune.py, models/modeling_discrete_vae.py,
furnace/masking_generator.py and dall_e/{__init__,encoder,decoder,utils}.py (the repository's own
copy of OpenAI's DALL-E package; the PyPI dall-e package is not used) from a snapshot of the
official repository (a git directory, bare or not) into a temporary folder, patches only what the
installed torch refuses (tools/official_code.py: dall_e.load_model's torch.load needs
weights_only=False since torch 2.6), and imports from there `ContextAutoencoderViT`, `Dalle_VAE`,
`MaskingGenerator`, `dall_e.Encoder`, `dall_e.load_model` and `dall_e.utils.map_pixels`. Two
modules the code imports but this path never uses are stubs that raise on any use
(official_code.stub_modules): furnace.utils (modeling_finetune takes LP_BatchNorm from it, for
linear probing; the real file needs tensorboardX, torch._six and the CLIP package) and, when not
installed, einops (modeling_discrete_vae imports rearrange for its own DiscreteVAE). The snapshot is
looked up in, by priority (tools/fixture_common.py):
    --cae-repo PATH,  $CAE_REPO,  /work/.mirror/Atten4Vis+CAE/repo

Model (cae.h5): ContextAutoencoderViT(img 32, patch 4 -> 8 x 8 grid, 3 channels, embed_dim 64,
depth 2, 4 heads, mlp_ratio 4, qkv_bias, LayerNorm eps 1e-6, init_values 0.1, drop_path 0,
decoder_embed_dim 64, regressor_depth 2, decoder_depth 2, decoder_num_heads 4,
decoder_layer_scale_init_value 0.1, decoder_num_classes 64), args = Namespace(model_type 'cae',
regressor_depth 2, decoder_embed_dim 64, decoder_depth 2), built after torch.manual_seed(0).
Width 64, the size the CAE issue names (weights plus gradients about 2.9 MB). With embed_dim ==
decoder_embed_dim (as in every CAE recipe) there is no encoder_to_regresser projection. Then
  * every nn.LayerNorm gets weight 1 + 0.1 randn, bias 0.1 randn; every other bias (Linear
    biases, the patch-embedding bias, the attention q_bias / v_bias) + 0.02 randn; every layer
    scale (gamma_*) is multiplied by 1 + 0.1 randn -- the official initialisation leaves them at
    1 / 0 / 0 / 0.1 -- so norms, biases and the two layer scales of a block are told apart;
  * then the official model._init_alignment_encoder() copies encoder.* into alignment_encoder.*
    again (and sets their requires_grad False), so the two are equal, as after construction.
Weights are saved under "model", as run_pretraining's checkpoints hold them, torch.save({"model":
state_dict}), and converted by tools/pth_to_h5.py; the converted names must equal
model.state_dict()'s.

Tokenizer (cae_dvae.h5): dall_e.Encoder(n_hid 8, n_blk_per_group 1, input_channels 3, vocab_size
64) -- group_count is not an argument (a plain class attribute, fixed at 4: the constructor
rejects it); the attrs validators n_hid >= 64 and vocab_size >= 512 are lambdas returning a bool,
which attrs ignores, so the tiny encoder is accepted as is -- built after torch.manual_seed(2)
with its own initialisation (w ~ N(0, 1 / (n_in kw^2)), b = 0), then every b + 0.1 randn (zero
biases would leave the Swift bias path untested), float32, eval. It downsamples by 8, so for the
8 x 8 patch grid its input, the tokenizer view, is 64 x 64. It is saved the way encoder.pkl is,
torch.save(module), converted by tools/dalle_to_h5.py (--dall-e-path = the exported dall_e), and
read back through the official dall_e.load_model into a Dalle_VAE(image_size=64) (its
load_model(dir) would also want a decoder.pkl, so .encoder is set to what dall_e.load_model
returns, which is all that Dalle_VAE.get_codebook_indices uses). A fresh Encoder loaded from
cae_dvae.h5 must give the same logits bit for bit.

Inputs, batch B = 3 (each from its own seeded torch.Generator):
    images            torch.randn(3, 3, 32, 32), the normalised network input
    tokenizer_images  map_pixels(torch.rand(3, 3, 64, 64)) (dall_e.utils.map_pixels: 0.8 x + 0.1)
    mask              8 of 64 patches per sample, the official MaskingGenerator(8, 8,
                      min_num_patches=4) (max None, min_aspect 0.3) driven through
                      tools/make_cae_mask_fixture.py's UniformStream stand-in (the contract is
                      documented there): mask_uniforms [3, 128] (used prefix, rest -1) and
                      mask_consumed [3] let the Swift generator rebuild it.
One iteration of furnace/engine_for_pretraining.train_one_epoch (model_type 'cae', no autocast /
loss scaler, i.e. float32 on the CPU), model.train() (dropout and drop path are 0):
    no_grad: input_ids = d_vae.get_codebook_indices(tokenizer_images).flatten(1)  (argmax over the
             64 channels, row-major over the 8 x 8 token grid); bool_masked_pos = mask.bool();
             labels = input_ids[bool_masked_pos]
    outputs, latent_predict, latent_target = model(images, bool_masked_pos=bool_masked_pos)
    loss_main = CrossEntropyLoss()(outputs.float(), labels)
    loss_align = 2 * mse_loss(latent_predict.float(), latent_target.detach().float())
    loss = loss_main + loss_align;  accuracy = (outputs.max(-1)[1] == labels).float().mean()
    loss.backward()
with Tensor.cuda the identity during the forward (the model moves rd_pos_embed with
`.cuda(x_unmasked.device)` unconditionally; the call is checked to happen).

cae.h5 holds
    params/<name>             every model.state_dict() entry (tools/pth_to_h5.py): rd_pos_embed
                              [1,65,64] and encoder.pos_embed / alignment_encoder.pos_embed
                              [1,65,64] are requires_grad=False nn.Parameters holding the fixed
                              MoCo-v3 sin-cos table with a zero cls row; mask_token [1,1,64]
    images [3,3,32,32], tokenizer_images [3,3,64,64], mask [3,64] (float32 0/1),
    mask_uniforms [3,128] (float32), mask_consumed [3] (int32)
    f32/dvae_logits [3,64,8,8]       the tokenizer's logits (float32)
    f32/input_ids [3,64]             token ids as float32
    f32/logits [24,64]               outputs: the masked positions of sample 0, then 1, then 2,
                                     each in ascending patch order (= labels' order)
    f32/latent_predict [3,8,64], f32/latent_target [3,8,64]
    f32/loss_main, f32/loss_align, f32/loss, f32/accuracy   float64 scalars of the float32 values
    f32/grads/<name>                 for every parameter with requires_grad (all but rd_pos_embed,
                                     *.pos_embed and alignment_encoder.*, which get none)
    f64/loss, f64/loss_main, f64/loss_align   the model part rerun in float64 (a copy taken
                                     before the forward, .double(); float64 images, the same
                                     mask and labels; no .float() casts). The tokenizer is not
                                     rerun: dall_e.Encoder.forward refuses non-float32 input.
Root attributes: format / source (from the converter), config (JSON of the model arguments,
batch, tokenizer, mask generator, loss weight), cae_repo_commit, seeds (JSON),
no_grad_params (JSON list of the state-dict names without a gradient), dvae_file.
cae_dvae.h5 carries dalle_to_h5.py's params/<name> and attributes (format, source, dvae_config).

Checks besides the above: every mask has 8 patches; the tokenizer's top-2 logit gap is at least
1e-4 at every position (so a float32 reimplementation picks the same ids); latent_target equals
model.encoder(images, ~mask)[:, 1:] computed afterwards (the alignment encoder is the encoder);
after the forward the alignment encoder's parameters share the encoder's storage (the official
alignment_parameter_update assigns .data); every requires_grad parameter got a gradient; the loss
changes with the mask.

Worth knowing about the official code (seen in this run): ContextAutoencoderViT's own
_init_weights runs last over the whole model, so every nn.Linear ends up xavier_uniform with zero
bias (the sub-modules' trunc_normal and their BEiT-style fix_init_weight depth rescaling are
overwritten); the Conv2d patch embedding, cls_token and mask_token keep trunc_normal_(std 0.02),
whose local wrapper truncates at a = -std, b = std, i.e. +-1 sigma (effective std ~0.011). The
sin-cos tables use torch.meshgrid(grid_w, grid_h) with 'ij' indexing, so the channel blocks are
[sin(r o), cos(r o), sin(c o), cos(c o)] with r = p // 8 the patch row, c = p % 8 the column,
o_k = 10000^(-k / (D/4)), k < D/4, and a zero cls row. The alignment encoder sees the
complement mask (~bool_masked_pos: the masked patches plus cls, cls dropped from the target),
under no_grad.
alignment_parameter_update runs inside forward and makes alignment_encoder's parameters views of
the encoder's (.data assignment), so after the first step the two share storage.

CPU only, about 20 seconds (mostly imports), one thread; deterministic (re-running rewrites the
same bytes). Run from the repository root:
    python3 tools/make_cae_fixture.py [--cae-repo PATH] [--rev REV] [--out DIR]
"""
import copy
import json
import os
import types
from functools import partial

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import fixture_common as common
from fixture_common import f32, generator, grads_of, load_h5_params, scalar
from make_cae_mask_fixture import draw_mask, padded
from official_code import cuda_is_identity, import_exported, stub_modules

SOURCES = ["models/modeling_cae.py", "models/modeling_cae_helper.py", "models/modeling_finetune.py",
           "models/modeling_discrete_vae.py", "furnace/masking_generator.py",
           "dall_e/__init__.py", "dall_e/encoder.py", "dall_e/decoder.py", "dall_e/utils.py"]

B = 3
IMG, PATCH, GRID = 32, 4, 8
L = GRID * GRID
VOCAB = 64
WIDTH = 64
TOKENIZER_IMG = 8 * GRID          # the dVAE downsamples by 8
NORM_EPS = 1e-6
MODEL = dict(img_size=IMG, patch_size=PATCH, in_chans=3, embed_dim=WIDTH, depth=2, num_heads=4,
             mlp_ratio=4.0, qkv_bias=True, init_values=0.1, drop_path_rate=0.0,
             decoder_embed_dim=WIDTH, regressor_depth=2, decoder_depth=2, decoder_num_heads=4,
             decoder_layer_scale_init_value=0.1, decoder_num_classes=VOCAB)
ARGS = dict(model_type="cae", regressor_depth=2, decoder_embed_dim=WIDTH, decoder_depth=2)
DVAE = dict(n_hid=8, n_blk_per_group=1, input_channels=3, vocab_size=VOCAB)
MASK = dict(input_size=GRID, num_masking_patches=8, min_num_patches=4)   # max None, min_aspect 0.3
MASK_CAPACITY = 128
ALIGN_LOSS_WEIGHT = 2.0           # run_pretraining's --align_loss_weight default (and recipe)
SEEDS = dict(model=0, dvae=2, images=100, tokenizer_images=101, mask=102, other_mask=103)
MIN_TOKEN_GAP = 1e-4      # float32 reimplementations differ by ~1e-6 here


# ----------------------------------------------------------------------------- official code

def import_official(root):
    stubs = stub_modules(always=["furnace.utils"], if_missing=["einops"])
    print(f"stub modules (raise on use): {', '.join(stubs)}")
    names = ["models.modeling_cae", "models.modeling_discrete_vae", "furnace.masking_generator", "dall_e", "dall_e.utils"]
    modeling_cae, discrete_vae, masking_generator, dall_e, dalle_utils = import_exported(root, *names)
    return types.SimpleNamespace(modeling_cae=modeling_cae, discrete_vae=discrete_vae,
                                 masking_generator=masking_generator, dall_e=dall_e, dalle_utils=dalle_utils)


# ----------------------------------------------------------------------------- helpers

@torch.no_grad()
def perturb(model):
    """LayerNorm weight 1 + 0.1 randn, bias 0.1 randn; other biases + 0.02 randn; gamma_* scaled
    by 1 + 0.1 randn (global RNG, in named_parameters order)."""
    norm_params = common.perturb_layer_norms(model)
    for name, p in model.named_parameters():
        if id(p) in norm_params or name.startswith("alignment_encoder."):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf.endswith("bias"):            # bias, q_bias, v_bias
            p.add_(0.02 * torch.randn_like(p))
        elif leaf.startswith("gamma"):
            p.mul_(1 + 0.1 * torch.randn_like(p))


# ----------------------------------------------------------------------------- pieces

def build_model(off):
    torch.manual_seed(SEEDS["model"])
    model = off.modeling_cae.ContextAutoencoderViT(
        **MODEL, norm_layer=partial(nn.LayerNorm, eps=NORM_EPS), args=types.SimpleNamespace(**ARGS))
    assert model.encoder_to_regresser is None
    perturb(model)
    model._init_alignment_encoder()          # official: alignment_encoder <- encoder
    enc, ali = model.encoder.state_dict(), model.alignment_encoder.state_dict()
    assert list(enc) == list(ali) and all(torch.equal(enc[k], ali[k]) for k in enc), "alignment encoder differs"
    return model


def build_dvae(off, tmp, code):
    torch.manual_seed(SEEDS["dvae"])
    try:
        off.dall_e.Encoder(group_count=4, **DVAE)
        raise AssertionError("dall_e.Encoder now accepts group_count; pass it explicitly")
    except TypeError:
        pass
    torch.manual_seed(SEEDS["dvae"])
    enc = off.dall_e.Encoder(**DVAE)
    assert enc.group_count == 4
    with torch.no_grad():
        for name, p in enc.named_parameters():
            if name.endswith(".b"):
                p.add_(0.1 * torch.randn_like(p))
    enc = enc.float().eval()
    pkl = os.path.join(tmp, "encoder.pkl")
    torch.save(enc, pkl)
    h5 = os.path.join(tmp, "cae_dvae.h5")
    common.run_tool("dalle_to_h5.py", pkl, h5, "--dall-e-path", code)
    # the tokenizer as CAE loads it: Dalle_VAE + dall_e.load_model(encoder.pkl)
    d_vae = off.discrete_vae.Dalle_VAE(image_size=TOKENIZER_IMG)
    d_vae.encoder = off.dall_e.load_model(pkl, torch.device("cpu"))
    d_vae.eval()
    params, attrs = load_h5_params(h5)
    assert list(params) == list(enc.state_dict()), "dalle_to_h5 changed the encoder's names"
    assert all(torch.equal(params[k], v) for k, v in enc.state_dict().items())
    config = json.loads(attrs["dvae_config"])
    assert config == dict(group_count=4, **DVAE), config
    torch.manual_seed(12345)
    fresh = off.dall_e.Encoder(**DVAE)
    fresh.load_state_dict(params, strict=True)
    return d_vae, fresh.eval(), h5


def make_mask(off):
    gen = off.masking_generator.MaskingGenerator(MASK["input_size"], num_masking_patches=MASK["num_masking_patches"],
                                                 min_num_patches=MASK["min_num_patches"])
    rows = torch.rand(B, MASK_CAPACITY, generator=generator(SEEDS["mask"])).numpy()
    masks, stored, consumed = [], [], []
    for row in rows:
        mask, used = draw_mask(off.masking_generator, gen, row)
        assert mask.sum() == MASK["num_masking_patches"]
        masks.append(mask)
        stored.append(padded(row, used))
        consumed.append(used)
    return torch.from_numpy(np.stack(masks)).bool(), np.stack(stored), np.array(consumed, dtype=np.int32), repr(gen)


def token_gap(logits):
    top = logits.permute(0, 2, 3, 1).reshape(-1, logits.shape[1]).topk(2, dim=-1).values
    return (top[:, 0] - top[:, 1]).min().item()


def step(model, images, mask, labels):
    """The engine's forward and losses (float32 casts as in the engine when the model is float32)."""
    with cuda_is_identity() as calls:
        outputs, latent_predict, latent_target = model(images, bool_masked_pos=mask)
    assert calls, "the model no longer calls Tensor.cuda"
    cast = (lambda t: t.float()) if images.dtype == torch.float32 else (lambda t: t)
    loss_main = nn.CrossEntropyLoss()(input=cast(outputs), target=labels)
    loss_align = ALIGN_LOSS_WEIGHT * F.mse_loss(cast(latent_predict), cast(latent_target.detach()), reduction="mean")
    loss = loss_main + loss_align
    accuracy = (outputs.max(-1)[1] == labels).float().mean()
    return dict(outputs=outputs, latent_predict=latent_predict, latent_target=latent_target,
                loss_main=loss_main, loss_align=loss_align, loss=loss, accuracy=accuracy)


# ----------------------------------------------------------------------------- fixture

def make(off, tmp, code, commit):
    model = build_model(off)
    converted = common.convert_state({"model": model.state_dict()}, tmp, "cae_tiny")
    model64 = copy.deepcopy(model).double()       # before the forward aliases alignment_encoder

    d_vae, fresh_dvae, dvae_h5 = build_dvae(off, tmp, code)
    images = torch.randn(B, 3, IMG, IMG, generator=generator(SEEDS["images"]))
    raw = torch.rand(B, 3, TOKENIZER_IMG, TOKENIZER_IMG, generator=generator(SEEDS["tokenizer_images"]))
    tokenizer_images = off.dalle_utils.map_pixels(raw)
    mask, mask_uniforms, mask_consumed, gen_repr = make_mask(off)

    model.train()
    with torch.no_grad():
        dvae_logits = d_vae.encoder(tokenizer_images)
        assert torch.equal(fresh_dvae(tokenizer_images), dvae_logits), "the converted dVAE differs"
        input_ids = d_vae.get_codebook_indices(tokenizer_images).flatten(1)
        assert torch.equal(input_ids, dvae_logits.argmax(1).flatten(1))
        bool_masked_pos = mask.flatten(1).to(torch.bool)
        labels = input_ids[bool_masked_pos]
    gap = token_gap(dvae_logits)
    assert gap >= MIN_TOKEN_GAP, f"tokenizer top-2 gap {gap:.2e} too small; change the dVAE seed"
    assert tuple(dvae_logits.shape) == (B, VOCAB, GRID, GRID)

    model.zero_grad(set_to_none=True)
    r = step(model, images, bool_masked_pos, labels)
    r["loss"].backward()
    n_masked = MASK["num_masking_patches"]
    assert tuple(r["outputs"].shape) == (B * n_masked, VOCAB)
    assert tuple(r["latent_predict"].shape) == tuple(r["latent_target"].shape) == (B, n_masked, WIDTH)

    grads = grads_of(model)
    no_grad = [n for n in model.state_dict() if n not in grads]

    with torch.no_grad():
        # the alignment encoder is the encoder: its target is the encoder's view of the masked patches
        again = model.encoder(images, bool_masked_pos=~bool_masked_pos)[:, 1:]
        assert torch.equal(again, r["latent_target"]), "latent_target is not the encoder on the masked patches"
        shared = all(a.data_ptr() == e.data_ptr() for a, e in
                     zip(model.alignment_encoder.parameters(), model.encoder.parameters()))
        assert shared, "alignment_parameter_update no longer aliases the encoder's parameters"
        other_rows = torch.rand(B, MASK_CAPACITY, generator=generator(SEEDS["other_mask"])).numpy()
        gen = off.masking_generator.MaskingGenerator(MASK["input_size"], num_masking_patches=n_masked,
                                                     min_num_patches=MASK["min_num_patches"])
        other = torch.from_numpy(np.stack([draw_mask(off.masking_generator, gen, row)[0] for row in other_rows])).bool()
        assert not torch.equal(other, bool_masked_pos)
        other_loss = step(model, images, other, input_ids[other])["loss"].item()
        assert other_loss != r["loss"].item(), "loss does not depend on the mask"

    with torch.no_grad():
        model64.train()
        r64 = step(model64, images.double(), bool_masked_pos, labels)

    datasets = {
        "images": f32(images), "tokenizer_images": f32(tokenizer_images),
        "mask": bool_masked_pos.numpy().astype(np.float32),
        "mask_uniforms": mask_uniforms.astype(np.float32), "mask_consumed": mask_consumed,
        "f32/dvae_logits": f32(dvae_logits), "f32/input_ids": input_ids.numpy().astype(np.float32),
        "f32/logits": f32(r["outputs"]), "f32/latent_predict": f32(r["latent_predict"]),
        "f32/latent_target": f32(r["latent_target"]),
        "f32/loss_main": scalar(r["loss_main"]), "f32/loss_align": scalar(r["loss_align"]),
        "f32/loss": scalar(r["loss"]), "f32/accuracy": scalar(r["accuracy"]),
        "f64/loss": scalar(r64["loss"]), "f64/loss_main": scalar(r64["loss_main"]),
        "f64/loss_align": scalar(r64["loss_align"]), "f32/grads": grads,
    }
    config = dict(MODEL, norm_layer="LayerNorm", norm_eps=NORM_EPS, args=ARGS, batch=B,
                  tokenizer=dict(DVAE, group_count=4, image_size=TOKENIZER_IMG, file="cae_dvae.h5",
                                 bias_perturbation=0.1),
                  mask_generator=dict(MASK, max_num_patches=None, min_aspect=0.3, max_aspect=None,
                                      capacity=MASK_CAPACITY, repr=gen_repr),
                  align_loss_weight=ALIGN_LOSS_WEIGHT)
    attrs = dict(config=json.dumps(config), cae_repo_commit=commit, seeds=json.dumps(SEEDS),
                 no_grad_params=json.dumps(no_grad), dvae_file="cae_dvae.h5")

    path = os.path.join(tmp, "cae.h5")
    common.write_fixture(path, converted, model.state_dict().keys(), datasets, attrs)

    n_values = sum(v.numel() for v in model.state_dict().values())
    print(f"cae.h5: loss f32 {r['loss'].item():.9g} (main {r['loss_main'].item():.9g}, align "
          f"{r['loss_align'].item():.9g}, accuracy {r['accuracy'].item():.4g})  f64 {r64['loss'].item():.17g}  "
          f"|diff| {abs(r['loss'].item() - r64['loss'].item()):.2e}; {len(model.state_dict())} state-dict "
          f"entries ({n_values:,} values), {len(grads)} grads; other mask's loss {other_loss:.6g}")
    print(f"  mask: {gen_repr}, uniforms used {mask_consumed.tolist()}; masked patches "
          f"{[torch.nonzero(m).flatten().tolist() for m in bool_masked_pos]}")
    print(f"  tokenizer: ids {input_ids.unique().numel()} distinct of {VOCAB}, min top-2 logit gap {gap:.3g}; "
          f"labels {labels.tolist()}")
    print(f"  no gradient ({len(no_grad)}): rd_pos_embed, encoder.pos_embed, alignment_encoder.* "
          f"({sum(n.startswith('alignment_encoder.') for n in no_grad)} entries)")
    assert set(no_grad) == {"rd_pos_embed", "encoder.pos_embed"} | {n for n in model.state_dict()
                                                                      if n.startswith("alignment_encoder.")}
    return [path, dvae_h5]


def main():
    args = common.parse_args(__doc__, "Atten4Vis/CAE")
    torch.set_num_threads(1)
    with common.exported(args, SOURCES, "cae-fixture-") as (tmp, code, commit):
        off = import_official(code)
        print(f"official CAE code: {commit} from {args.repo} (imported from {os.path.dirname(off.modeling_cae.__file__)})")
        common.install(make(off, tmp, code, commit), args.out)   # only once everything has been computed and checked


if __name__ == "__main__":
    main()
