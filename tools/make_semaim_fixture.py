#!/usr/bin/env python3
"""PyTorch reference numbers for SemAIM, produced by the official skyoux/SemAIM code on tiny models.

Nothing of SemAIM is restated here. At run time the script exports models/models_semaim.py,
models/models_clip.py, engines/engine_pretrain.py, util/blocks.py, util/pos_embed.py, util/misc.py
and util/lr_sched.py from a snapshot of the official repository (a git directory, bare or not) into
a temporary folder, patches only what the installed timm / numpy / torch refuse (tools/official_code.py:
timm.layers imports, np.float, torch._six), and imports from there `AimViT`, the CLIP
`VisionTransformer` SemAIM builds its teacher from, and the engine's own `forward_teacher_features`,
`forward_features_clip`, `forward_features_dino` and `calculate_similarity`. engine_pretrain.py
imports cv2 for its heat-map visualisation only; when OpenCV is not installed, a stub module that
raises on any use stands in for it in sys.modules (official_code.stub_modules). The snapshot is
looked up in, by priority (tools/fixture_common.py):
    --semaim-repo PATH,  $SEMAIM_REPO,  /work/.mirror/skyoux+SemAIM/repo

Each fixture follows one iteration of engines/engine_pretrain.py:train_one_epoch (accum_iter 1, no
EMA model, no autocast / loss scaler, i.e. float32 on the CPU; drop path 0), batch 3:
  * the `torch` seen by models_semaim is a stand-in (official_code.TorchStandIn) whose rand(N, L)
    returns our U[0,1) tensor `uniform` (drawn from a seeded torch.Generator, so on torch.rand's
    2^-24 grid): it is the
    1e-3 tie-break noise of generate_attention_distance_center_permutation (permutation_type
    'attention_center'), checked to be drawn exactly once per forward; any other random draw
    raises. Tensor.cuda is the identity (the official code moves things to the GPU unconditionally).
  * every nn.LayerNorm gets weight 1 + 0.1 randn, bias 0.1 randn, and every Linear / attention
    bias gets + 0.02 randn after the official initialisation (which leaves them at 1 / 0), so
    norms and biases are exercised.
  * weights are saved the way main_pretrain.py saves them, torch.save({"epoch", "state_dict":
    {"module." + name: tensor}, "model"}), and converted by tools/pth_to_h5.py (which picks
    state_dict and strips module.); the converted names must equal model.state_dict()'s.

Grid. The official AimViT fills a hard-coded 14-row split_matrix (for the attention_guided /
stochastic_center orders) in its constructor, so any image_size / patch_size grid below 14 raises
IndexError there: both students therefore use img 56, patch 4, i.e. SemAIM's own 14 x 14 grid
(196 patches + cls = 197 tokens), and so do the teachers.

semaim.h5 -- pixel targets (predict_feature 'none', attention_center order from the cls attention):
    AimViT(img 56, patch 4, width 64, depth 4, 4 heads, mlp 4, 2 query blocks, share_weight False,
    MLP head, Gaussian blur 3 / sigma 1, norm_pix_loss, L2, attention_center, attention_type cls),
    built after torch.manual_seed(0). Sequence: model.eval(); no_grad: enc_tokens,
    feature_attention, self_attention = model(imgs, forward_encoder=True); model.train();
    attention = feature_attention; loss, permutation, loss_map = model(imgs, enc_tokens, attention)
    (the engine passes enc_tokens; pixel targets ignore it); loss.backward().
    params/<name>            every state-dict entry (gaussian_blur.weight is the blur buffer,
                             pos_embed the fixed sin-cos table)
    images [3,3,56,56]       uniform [3,196]
    f32/enc_tokens [3,197,64]       forward_encoder's tokens (after the final norm)
    f32/attention_cls [3,196]       forward_encoder's feature_attention (calculate_attention_cls)
    f32/attention_gap [3,196]       model.calculate_attention_gap(enc_tokens)
    f32/self_attention [3,196]      forward_encoder's head-averaged cls row of the last block
    f32/permutation [3,196]         the score generate_attention_mask returned (float32)
    f32/loss (float64 scalar of the float32 loss), f32/pred [3,197,48] (forward_aim's output,
    cls row included), f32/grads/<name> for every requires_grad parameter
    f64/loss                 the same sequence on model.double() and float64 images (the
                             permutation, float32 in the official code either way, is identical)

semaim_clip.h5 -- SemAIM*: CLIP feature targets (predict_feature 'clip'):
    teacher: SemAIM's models/models_clip.py VisionTransformer(input_resolution 56, patch 4, width
    48, 2 layers, 4 heads, output_dim 40) -- the class main_pretrain builds CLIP from, textually
    identical in its ViT parts to openai-clip's clip.model (when that package is installed, the
    script checks that its VisionTransformer gives bit-identical tokens) -- after
    torch.manual_seed(1), perturbed as above, float32, eval(). It is saved as a full-CLIP-like
    state dict ({"visual." + name} plus a text-side "token_embedding.weight") and converted by
    tools/teacher_to_h5.py --kind clip --heads 4 into semaim_clip_teacher.h5 (the teacher the Swift
    test loads; reloading it into a fresh VisionTransformer must give the same tokens bit for bit).
    student: AimViT(img 56, patch 4, width 32, depth 2, 2 heads, mlp 4, 2 query blocks, MLP head,
    out_dim 40, gaussian 3 / 1 (ignored for feature targets: no blur buffer), norm_pix_loss,
    attention_center, cls), torch.manual_seed(2), perturbed. Sequence: no_grad: enc_tokens =
    forward_teacher_features(teacher, imgs, 'clip'); attention = calculate_similarity(enc_tokens);
    loss, permutation, loss_map = model(imgs, enc_tokens, attention); loss.backward().
    params/<name> (student), images [3,3,56,56], uniform [3,196]
    f32/teacher_tokens [3,197,40]   forward_features_clip: all tokens, ln_post then @ proj
    f32/similarity [3,196]          calculate_similarity(teacher_tokens), min-max scaled
    f32/permutation [3,196], f32/loss, f32/pred [3,197,40], f32/grads/<name>
    f64/loss                 student in float64 on the float32 teacher tokens (CLIP's LayerNorm
                             subclass computes in float32 whatever the weights, so the teacher
                             itself is not rerun in float64)
    DINO teacher check: timm VisionTransformer(img 56, patch 4, width 48, depth 2, 4 heads,
    num_classes 0) after torch.manual_seed(3), perturbed, its cls_token redrawn with std 0.02
    (timm initialises it at std 1e-6); saved as a DINO training checkpoint {"teacher":
    {"module.backbone." + name, plus a fake "module.head.mlp.0.weight"}} and converted by
    teacher_to_h5.py --kind dino --heads 4 into semaim_dino_teacher.h5 (reload checked likewise).
    timm 1.0's ViT with num_classes 0 has every attribute forward_features_dino uses (patch_embed,
    cls_token, pos_embed covering the cls position, pos_drop, blocks, norm); with the defaults
    (class token, no registers, no_embed_class False, Identity norm_pre / patch_drop) the engine's
    function equals timm's own forward_features, which is checked.
    dino/tokens [3,197,48]   forward_features_dino(vit, imgs)
    dino/similarity [3,196]  calculate_similarity(dino/tokens)
Not covered, because the official code cannot run it: share_weight=True. Then query_blocks is the
encoder's ModuleList of Block_SelfMask, and forward_aim's query_blocks[i](g, h, mask=mask_g) passes
h as Block_SelfMask's `mask` positional argument as well as mask= -- TypeError (multiple values for
argument 'mask'); even without that, Block_SelfMask has no cross-attention input.

Root attributes: format / source (from the converter), config (JSON of the AimViT arguments plus
batch), semaim_repo_commit, image_seed / uniform_seed; semaim_clip.h5 also clip_teacher and
dino_teacher (JSON of the teachers' constructor arguments). The teacher files carry
teacher_to_h5.py's attributes (teacher, teacher_config).

Checks besides the above: the argmax of the attention map driving the order (attention_cls,
similarity) is unique per sample with a clear margin (> 1e-3 relative) and the same in float64;
the official score equals an independent numpy recomputation (correctly rounded sqrt), or at least
defines the same masks -- torch's CPU float32 sqrt (which `** 0.5` uses) is 1 ulp off the correctly
rounded value for some integers (60 of 0..399 with this torch build), so a few permutation entries
differ by 1 ulp from what a correctly rounded sqrt gives, without changing any mask; there are no
exact ties in either score; the loss changes when the uniforms do.

CPU only, a few seconds, one thread; deterministic (re-running rewrites the same bytes). Run from
the repository root:
    python3 tools/make_semaim_fixture.py [--semaim-repo PATH] [--rev REV] [--out DIR]
"""
import contextlib
import copy
import importlib.util
import json
import os

import numpy as np
import torch
import torch.nn as nn

import fixture_common as common
from fixture_common import f32, grads_of, load_h5_params, scalar
from official_code import cuda_is_identity, fed, import_exported, stub_modules

SOURCES = ["models/models_semaim.py", "models/models_clip.py", "engines/engine_pretrain.py",
           "util/blocks.py", "util/pos_embed.py", "util/misc.py", "util/lr_sched.py"]

B = 3
IMG, PATCH = 56, 4            # 14 x 14 grid: the smallest the official constructor accepts
GRID = IMG // PATCH
L = GRID * GRID
COMMON = dict(img_size=IMG, patch_size=PATCH, in_chans=3, mlp_ratio=4.0, drop_path_rate=0.0,
              query_depth=2, share_weight=False, prediction_head_type="MLP",
              gaussian_kernel_size=3, gaussian_sigma=1, norm_pix_loss=True, loss_type="L2",
              permutation_type="attention_center", attention_type="cls")
PIXEL = dict(COMMON, embed_dim=64, depth=4, num_heads=4, predict_feature="none")
FEATURE = dict(COMMON, embed_dim=32, depth=2, num_heads=2, out_dim=40, predict_feature="clip")
CLIP_TEACHER = dict(input_resolution=IMG, patch_size=PATCH, width=48, layers=2, heads=4, output_dim=40)
DINO_TEACHER = dict(img_size=IMG, patch_size=PATCH, embed_dim=48, depth=2, num_heads=4, num_classes=0)
SEEDS = {  # model seed, image seed, uniform seed
    "semaim.h5": (0, 100, 200),
    "semaim_clip.h5": (2, 101, 201),
}
CLIP_SEED, DINO_SEED = 1, 3
ACCUM_ITER = 1                # main_pretrain's default; the engine divides the loss by it


# ----------------------------------------------------------------------------- official code

def import_official(root):
    if stub_modules(if_missing=["cv2"]):
        print("cv2 not installed: a stub module stands in for it (engine_pretrain uses it for heat maps only)")
    return import_exported(root, "models.models_semaim", "models.models_clip", "engines.engine_pretrain")


@contextlib.contextmanager
def capture_pred(model, loss_method):
    """Wraps model.<loss_method>(target, pred) to keep pred, forward_aim's output."""
    captured = {}
    official = getattr(model, loss_method)

    def wrapper(target, pred):
        captured["pred"] = pred
        return official(target, pred)

    setattr(model, loss_method, wrapper)
    try:
        yield captured
    finally:
        delattr(model, loss_method)


# ----------------------------------------------------------------------------- helpers

@torch.no_grad()
def perturb(module):
    """LayerNorm weight 1 + 0.1 randn, bias 0.1 randn; other biases + 0.02 randn (global RNG)."""
    norm_params = common.perturb_layer_norms(module)
    for name, p in module.named_parameters():
        if name.endswith("bias") and id(p) not in norm_params:
            p.add_(0.02 * torch.randn_like(p))


def converted_teacher(tmp, name, *args):
    """Runs tools/teacher_to_h5.py on a checkpoint, returns its output path."""
    out = os.path.join(tmp, name)
    common.run_tool("teacher_to_h5.py", *args, out)
    return out


def save_like_main_pretrain(model, tmp, stem):
    return common.convert_state({"epoch": 1, "state_dict": {"module." + k: v for k, v in model.state_dict().items()},
                                 "model": stem}, tmp, stem)


def check_argmax(a, what, margin=1e-3):
    """Unique argmax per sample, the runner-up at least `margin` (relative) below; returns the argmax."""
    top = a.topk(2, dim=-1).values
    rel = ((top[:, 0] - top[:, 1]) / top[:, 0].abs()).tolist()
    assert all(r > margin for r in rel), f"{what}: argmax not clear enough (relative gaps {rel}); change the seed"
    return a.argmax(dim=-1).tolist(), rel


def recompute_score(attention, uniform):
    """attention_center score written out in numpy float32 (correctly rounded sqrt)."""
    width = GRID
    r, c = np.divmod(np.arange(L), width)
    out = np.empty((attention.shape[0], L), np.float32)
    for i, k in enumerate(attention.argmax(dim=-1).tolist()):
        cr, cc = divmod(k, width)
        d2 = ((r - cr) ** 2 + (c - cc) ** 2).astype(np.float32)
        out[i] = np.sqrt(d2) + uniform[i].numpy() * np.float32(1e-3)
    return out


def check_score(score, attention, uniform, what):
    """The official score against the recomputation; returns (note, tied pairs per sample)."""
    official = score.numpy()
    mine = recompute_score(attention, uniform)
    s = torch.as_tensor(official)
    ties = ((s.unsqueeze(-1) == s.unsqueeze(1)).sum(dim=(1, 2)) - L).div(2).long().tolist()
    if np.array_equal(official, mine):
        return "score = numpy recomputation bit for bit", ties
    m = torch.as_tensor(mine)
    same = torch.equal(s.unsqueeze(-1) < s.unsqueeze(1), m.unsqueeze(-1) < m.unsqueeze(1)) and \
        torch.equal(s.unsqueeze(-1) <= s.unsqueeze(1), m.unsqueeze(-1) <= m.unsqueeze(1))
    assert np.abs(official - mine).max() <= 1e-5 and same, f"{what}: score differs from the recomputation"
    n = int((official != mine).sum())
    return f"score: {n} entries 1 ulp off the numpy recomputation, same masks", ties


def draw_inputs(image_seed, uniform_seed):
    imgs = torch.randn(B, 3, IMG, IMG, generator=torch.Generator().manual_seed(image_seed))
    uniform = torch.rand(B, L, generator=torch.Generator().manual_seed(uniform_seed))
    return imgs, uniform


# ----------------------------------------------------------------------------- semaim.h5

def pixel_step(semaim, model, imgs, uniform):
    """train_one_epoch, predict_feature 'none' with an attention permutation."""
    model.eval()
    with torch.no_grad():
        enc_tokens, feature_attention, self_attention = model(imgs, forward_encoder=True)
    model.train()
    feature_attention, self_attention = feature_attention.detach(), self_attention.detach()
    attention = self_attention if model.attention_type == "self" else feature_attention
    with fed(semaim, [uniform]) as fake, capture_pred(model, "forward_pixel_loss") as cap:
        loss, permutation, loss_map = model(imgs, enc_tokens, attention)
    assert len(fake.calls) == 1, f"torch.rand drawn {len(fake.calls)} times in one forward"
    loss = loss / ACCUM_ITER
    return dict(enc_tokens=enc_tokens, attention=attention, feature_attention=feature_attention,
                self_attention=self_attention, loss=loss, permutation=permutation, pred=cap["pred"])


def make_pixel(semaim, out_tmp, tmp, commit):
    name = "semaim.h5"
    model_seed, image_seed, uniform_seed = SEEDS[name]
    torch.manual_seed(model_seed)
    model = semaim.AimViT(**PIXEL)
    perturb(model)
    imgs, uniform = draw_inputs(image_seed, uniform_seed)
    converted = save_like_main_pretrain(model, tmp, "aim_tiny")

    model.zero_grad(set_to_none=True)
    r = pixel_step(semaim, model, imgs, uniform)
    r["loss"].backward()
    grads = grads_of(model)
    with torch.no_grad():
        gap = model.calculate_attention_gap(r["enc_tokens"])
    centres, margins = check_argmax(r["attention"], "attention_cls")
    note, ties = check_score(r["permutation"], r["attention"], uniform, name)
    assert not any(ties), f"{name}: tied scores {ties}; change the uniform seed"
    assert tuple(r["pred"].shape) == (B, L + 1, PATCH * PATCH * 3)

    with torch.no_grad():   # the uniforms matter
        with fed(semaim, [uniform.flip(1)]):
            other = model(imgs, r["enc_tokens"], r["attention"])[0].item()
    assert other != r["loss"].item(), "loss does not depend on the fed uniforms"

    model64 = copy.deepcopy(model).double()
    model64.zero_grad(set_to_none=True)
    with torch.no_grad():
        r64 = pixel_step(semaim, model64, imgs.double(), uniform)
    assert r64["attention"].argmax(-1).tolist() == centres, "float64 attention has another argmax"
    assert torch.equal(r64["permutation"], r["permutation"]), "float64 run permutes differently"

    datasets = {
        "images": f32(imgs), "uniform": f32(uniform),
        "f32/enc_tokens": f32(r["enc_tokens"]), "f32/attention_cls": f32(r["feature_attention"]),
        "f32/attention_gap": f32(gap), "f32/self_attention": f32(r["self_attention"]),
        "f32/permutation": f32(r["permutation"]), "f32/loss": scalar(r["loss"]), "f32/pred": f32(r["pred"]),
        "f64/loss": scalar(r64["loss"]), "f32/grads": grads,
    }
    attrs = dict(config=json.dumps(dict(PIXEL, batch=B)), semaim_repo_commit=commit,
                 image_seed=image_seed, uniform_seed=uniform_seed, model_seed=model_seed)
    path = os.path.join(out_tmp, name)
    common.write_fixture(path, converted, model.state_dict().keys(), datasets, attrs)
    summary(name, r["loss"], r64["loss"], model, grads, path,
            f"centres {[divmod(k, GRID) for k in centres]}, argmax margins {fmt(margins)}, ties {ties}; {note}")
    return path


# ----------------------------------------------------------------------------- semaim_clip.h5

def find_openai_clip_model():
    """openai-clip's clip/model.py, loaded as a file: `import clip` itself needs pkg_resources."""
    spec = importlib.util.find_spec("clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model.py")
    if not os.path.isfile(path):
        return None
    s = importlib.util.spec_from_file_location("openai_clip_model", path)
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    return mod


def make_clip_teacher(clip_model, engine, imgs, tmp):
    torch.manual_seed(CLIP_SEED)
    teacher = clip_model.VisionTransformer(**CLIP_TEACHER)
    perturb(teacher)
    teacher.float().eval()
    pth = os.path.join(tmp, "clip_tiny_pretrain.pth")
    state = {"visual." + k: v for k, v in teacher.state_dict().items()}
    state["token_embedding.weight"] = torch.zeros(16, 8)     # a text-side entry, to be dropped
    torch.save(state, pth)
    h5 = converted_teacher(tmp, "semaim_clip_teacher.h5", "--kind", "clip", "--heads", str(CLIP_TEACHER["heads"]), pth)
    with torch.no_grad():
        tokens = engine.forward_teacher_features(teacher, imgs, "clip")
        assert torch.equal(tokens, engine.forward_features_clip(teacher, imgs))
        params, attrs = load_h5_params(h5)
        assert list(params) == list(teacher.state_dict()), "teacher_to_h5 changed the CLIP names"
        config = json.loads(attrs["teacher_config"])
        assert config == dict(width=48, layers=2, heads=4, patch=PATCH, grid=IMG // PATCH, output_dim=40), config
        fresh = clip_model.VisionTransformer(**CLIP_TEACHER)
        fresh.load_state_dict(params, strict=True)
        assert torch.equal(engine.forward_features_clip(fresh.eval(), imgs), tokens), "reloaded CLIP teacher differs"
        openai = find_openai_clip_model()
        if openai is None:
            note = "openai-clip not installed, cross-check skipped"
        else:
            other = openai.VisionTransformer(**CLIP_TEACHER)
            other.load_state_dict(teacher.state_dict(), strict=True)
            assert torch.equal(engine.forward_features_clip(other.eval(), imgs), tokens), "openai-clip differs"
            note = "openai-clip's VisionTransformer gives the same tokens"
    return tokens, h5, note


def make_dino_teacher(engine, imgs, tmp):
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(DINO_SEED)
    vit = VisionTransformer(**DINO_TEACHER)
    perturb(vit)
    with torch.no_grad():
        vit.cls_token.normal_(std=0.02)
    vit.eval()
    for attr in ("patch_embed", "cls_token", "pos_embed", "pos_drop", "blocks", "norm"):
        assert hasattr(vit, attr), f"timm's VisionTransformer has no {attr}"
    assert tuple(vit.pos_embed.shape) == (1, L + 1, 48) and vit.num_prefix_tokens == 1
    pth = os.path.join(tmp, "dino_tiny_checkpoint.pth")
    teacher = {"module.backbone." + k: v for k, v in vit.state_dict().items()}
    teacher["module.head.mlp.0.weight"] = torch.zeros(8, 48)  # DINO's projection head, to be dropped
    torch.save({"teacher": teacher, "epoch": 1}, pth)
    h5 = converted_teacher(tmp, "semaim_dino_teacher.h5", "--kind", "dino", "--heads", str(DINO_TEACHER["num_heads"]), pth)
    with torch.no_grad():
        tokens = engine.forward_teacher_features(vit, imgs, "dino")
        assert torch.equal(tokens, engine.forward_features_dino(vit, imgs))
        assert torch.allclose(tokens, vit.forward_features(imgs), atol=1e-6, rtol=0), "timm forward_features differs"
        params, attrs = load_h5_params(h5)
        assert list(params) == list(vit.state_dict()), "teacher_to_h5 changed the DINO names"
        config = json.loads(attrs["teacher_config"])
        assert config == dict(width=48, depth=2, heads=4, patch=PATCH, grid=IMG // PATCH), config
        fresh = VisionTransformer(**DINO_TEACHER)
        fresh.load_state_dict(params, strict=True)
        assert torch.equal(engine.forward_features_dino(fresh.eval(), imgs), tokens), "reloaded DINO teacher differs"
        similarity = engine.calculate_similarity(tokens)
    return tokens, similarity, h5


def feature_step(semaim, engine, model, teacher_tokens, imgs, uniform):
    """train_one_epoch, predict_feature 'clip', from the teacher's tokens on."""
    enc_tokens = teacher_tokens.detach()
    attention = engine.calculate_similarity(enc_tokens)
    with fed(semaim, [uniform]) as fake, capture_pred(model, "forward_feature_loss") as cap:
        loss, permutation, loss_map = model(imgs, enc_tokens, attention)
    assert len(fake.calls) == 1, f"torch.rand drawn {len(fake.calls)} times in one forward"
    loss = loss / ACCUM_ITER
    return dict(attention=attention, loss=loss, permutation=permutation, pred=cap["pred"])


def make_feature(semaim, clip_model, engine, out_tmp, tmp, commit):
    name = "semaim_clip.h5"
    model_seed, image_seed, uniform_seed = SEEDS[name]
    imgs, uniform = draw_inputs(image_seed, uniform_seed)
    teacher_tokens, clip_h5, clip_note = make_clip_teacher(clip_model, engine, imgs, tmp)
    dino_tokens, dino_similarity, dino_h5 = make_dino_teacher(engine, imgs, tmp)
    assert tuple(teacher_tokens.shape) == (B, L + 1, 40) and tuple(dino_tokens.shape) == (B, L + 1, 48)

    torch.manual_seed(model_seed)
    model = semaim.AimViT(**FEATURE)
    perturb(model)
    assert isinstance(model.gaussian_blur, nn.Identity), "Gaussian blur must be off for feature targets"
    converted = save_like_main_pretrain(model, tmp, "aim_tiny_clip")
    model.train()
    model.zero_grad(set_to_none=True)
    r = feature_step(semaim, engine, model, teacher_tokens, imgs, uniform)
    r["loss"].backward()
    grads = grads_of(model)
    centres, margins = check_argmax(r["attention"], "similarity")
    dino_centres, dino_margins = check_argmax(dino_similarity, "dino similarity")
    note, ties = check_score(r["permutation"], r["attention"], uniform, name)
    assert not any(ties), f"{name}: tied scores {ties}; change the uniform seed"
    assert tuple(r["pred"].shape) == (B, L + 1, 40)

    with torch.no_grad():
        with fed(semaim, [uniform.flip(1)]):
            other = model(imgs, teacher_tokens, r["attention"])[0].item()
    assert other != r["loss"].item(), "loss does not depend on the fed uniforms"

    model64 = copy.deepcopy(model).double()
    model64.zero_grad(set_to_none=True)
    with torch.no_grad():
        r64 = feature_step(semaim, engine, model64, teacher_tokens.double(), imgs.double(), uniform)
    assert r64["attention"].argmax(-1).tolist() == centres
    assert torch.equal(r64["permutation"], r["permutation"]), "float64 run permutes differently"

    datasets = {
        "images": f32(imgs), "uniform": f32(uniform),
        "f32/teacher_tokens": f32(teacher_tokens), "f32/similarity": f32(r["attention"]),
        "f32/permutation": f32(r["permutation"]), "f32/loss": scalar(r["loss"]), "f32/pred": f32(r["pred"]),
        "f64/loss": scalar(r64["loss"]),
        "dino/tokens": f32(dino_tokens), "dino/similarity": f32(dino_similarity), "f32/grads": grads,
    }
    attrs = dict(config=json.dumps(dict(FEATURE, batch=B)), semaim_repo_commit=commit,
                 image_seed=image_seed, uniform_seed=uniform_seed, model_seed=model_seed,
                 clip_teacher=json.dumps(dict(CLIP_TEACHER, seed=CLIP_SEED, file="semaim_clip_teacher.h5")),
                 dino_teacher=json.dumps(dict(DINO_TEACHER, seed=DINO_SEED, file="semaim_dino_teacher.h5")))
    path = os.path.join(out_tmp, name)
    common.write_fixture(path, converted, model.state_dict().keys(), datasets, attrs)
    summary(name, r["loss"], r64["loss"], model, grads, path,
            f"centres {[divmod(k, GRID) for k in centres]}, argmax margins {fmt(margins)}, ties {ties}; {note}")
    print(f"  clip teacher: tokens {list(teacher_tokens.shape)}; {clip_note}")
    print(f"  dino teacher: tokens {list(dino_tokens.shape)}, similarity argmax "
          f"{[divmod(k, GRID) for k in dino_centres]} (margins {fmt(dino_margins)}); reloads bit for bit")
    return [path, clip_h5, dino_h5]


# ----------------------------------------------------------------------------- main

def fmt(values):
    return "[" + ", ".join(f"{v:.2g}" for v in values) + "]"


def summary(filename, loss32, loss64, model, grads, path, extra):
    print(common.summary(filename, loss32, loss64, model, grads, path))
    print(f"  {extra}")


def main():
    args = common.parse_args(__doc__, "skyoux/SemAIM")
    torch.set_num_threads(1)

    with common.exported(args, SOURCES, "semaim-fixture-") as (tmp, code, commit):
        semaim, clip_model, engine = import_official(code)
        print(f"official SemAIM code: {commit} from {args.repo} (imported from {os.path.dirname(semaim.__file__)})")
        out_tmp = os.path.join(tmp, "out")
        os.makedirs(out_tmp)
        with cuda_is_identity():
            written = [make_pixel(semaim, out_tmp, tmp, commit)]
            written += make_feature(semaim, clip_model, engine, out_tmp, tmp, commit)
        common.install(written, args.out)   # only once everything has been computed and checked


if __name__ == "__main__":
    main()
