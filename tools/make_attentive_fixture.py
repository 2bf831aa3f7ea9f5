#!/usr/bin/env python3
"""PyTorch reference numbers for CAE's attentive probe, produced by the official Atten4Vis/CAE code.

Nothing of CAE is restated here. At run time the script exports models/modeling_finetune.py,
models/modeling_discrete_vae.py, furnace/utils.py, dall_e/{__init__,encoder,decoder,utils}.py,
tools/run_attentive.py and scripts/cae_base_800e.sh from a snapshot of the official repository
(tools/official_code.py; furnace/utils.py gets its `from torch._six import inf` -> `from torch import
inf`, torch 2 has no torch._six) into a temporary folder and runs from there:
  * the argument parser: run_attentive.py's own get_args (its function's source, taken out of the
    file with `ast` and executed; the script itself imports datasets / deepspeed machinery) on the
    command line of the attentive-probing part of scripts/cae_base_800e.sh (parsed out of the
    script, $VARIABLES replaced by placeholders), followed by the overrides --nb_classes 10
    --input_size 32. Everything the model sees is the recipe's or get_args' default:
    --enable_linear_eval, --linear_type attentive, --use_cls (use_mean_pooling False: the backbone
    ends in `norm`, a LayerNorm), --drop_path 0.0, rel_pos_bias True (get_args' default, which the
    recipe does not disable), sin_pos_emb True (default), layer_scale_init_value 0.1, drop 0,
    attn_drop_rate 0, init_scale 0.001;
  * the model construction: main()'s own `model = create_model(...)` statement and the
    `if args.enable_linear_eval:` block after it (freezing and head initialisation), executed
    from the file's source. `create_model` there is a stand-in that builds the official
    models.modeling_finetune.VisionTransformer with the tiny architecture below (as the registered
    cae_*_patch16_224 functions do: qkv_bias, mlp_ratio 4, LayerNorm eps 1e-6) plus the keyword
    arguments main() passes, minus those that are None (drop_block_rate; timm's create_model drops
    None kwargs the same way). The recipe's --model name is therefore not used.
Module stubs (official_code.stub_modules: raise on any use; modules the path imports but never
uses): tensorboardX and CAE v2's clip.modeling_clip (both imported by furnace/utils.py), einops when
not installed (modeling_discrete_vae). LP_BatchNorm is the official class of the real
furnace/utils.py. The snapshot is looked up in, by priority (tools/fixture_common.py):
    --cae-repo PATH,  $CAE_REPO,  /work/.mirror/Atten4Vis+CAE/repo

One patch of the released code, at run time: VisionTransformer.forward_features calls every
attentive block as blk(query_tokens, x, 0, 0, bool_masked_pos=None, rel_pos_bias=None), but
AttentiveBlock.forward(x_q, x_kv, pos_q, pos_k) takes no such keywords, so the released attentive
probe raises TypeError (checked). While the fixture runs, AttentiveBlock.forward is wrapped to
accept exactly these two keywords, check that both are None, and call the original forward without
them. Nothing else is changed.

What run_attentive.py does (and so this fixture): every parameter is frozen (requires_grad False)
except query_token, attentive_blocks.*, head.weight, head.bias and names containing fc_norm
(LP_BatchNorm(D, affine=False) has none); gamma_* are explicitly frozen. Then head.weight ~ N(0,
0.01), head.bias = 0 (overriding init_scale). Training is train_class_batch: model.train(),
outputs = model(samples) (is_train defaults to True: fc_norm normalises with the batch statistics
and updates its running statistics, momentum 0.1), criterion CrossEntropyLoss (--smoothing 0.0,
no mixup). Evaluation (engine_for_finetuning.evaluate) is model.eval() and model(images), i.e. is_train
is STILL True: the released evaluation normalises with the eval batch's own statistics, and updates
the running statistics again.

Model: VisionTransformer(img 32, patch 4 -> 8 x 8 grid, embed_dim 32, depth 2, 4 heads, mlp_ratio 4,
qkv_bias, LayerNorm eps 1e-6, init_values 0.1, num_classes 10, use_rel_pos_bias True, sin-cos
position table (args.sin_pos_emb; requires_grad False, zero cls row, the MoCo v3 layout CAE's
pre-training encoder uses), use_mean_pooling False, lin_probe True, linear_type 'attentive'), built
after torch.manual_seed(0) (the head initialisation of the official block follows in the same RNG
stream). With use_rel_pos_bias every block has its own relative_position_bias_table ((2*8-1)^2 + 3
= 228 rows x 4 heads) and relative_position_index buffer [65, 65]; a CAE pre-training checkpoint
has no such tables (its encoder has none), so after run_attentive loads one they stay at their zero
initialisation, frozen. They are left at zero here; the check below shows they change nothing.
Then, after torch.manual_seed(1):
  * every nn.LayerNorm (blocks' norm1 / norm2, the final norm, the attentive block's norm_q / norm_k
    / norm_v) gets weight 1 + 0.1 randn, bias 0.1 randn;
  * every other bias of the backbone and the attentive block (patch_embed.proj.bias, attn.q_bias /
    attn.v_bias, attn.proj.bias, mlp.fc1/fc2.bias, cross_attn.q_bias / v_bias, cross_attn.proj.bias)
    + 0.02 randn; every gamma_* multiplied by 1 + 0.1 randn;
  * query_token (official: zeros) = 0.02 randn;
  * the attentive block's cross_attn q / k / v / proj weights multiplied by 10: with the official
    trunc_normal(std 0.02) the attention over the 65 keys is nearly uniform and the probe's
    features nearly constant over the batch (batch variance ~1e-6, below fc_norm's eps 1e-5, so
    the normalisation would be mostly eps); x10 gives a peaked softmax (max weight ~0.26) and
    batch variances 1e-3 .. 7e-2.
  head.* keep the official N(0, 0.01) / 0; relative_position_bias_table stays 0.
The weights are those before the step, saved as {"model": state_dict} and converted by
tools/pth_to_h5.py (float32; relative_position_index and fc_norm.num_batches_tracked, int64 in
PyTorch, become float32 too); fc_norm.running_mean / running_var there are the initial 0 / 1.

Inputs: images = randn(4, 3, 32, 32) (seeded generator), labels = [3, 7, 0, 9] (int64),
eval_images = another randn(4, 3, 32, 32) (a separate batch, so that the batch-statistics
evaluation differs from the training forward: with no optimizer step in between, the same images
would give the training logits again).

attentive.h5 holds
    params/<name>          every model.state_dict() entry (before the step)
    images [4,3,32,32], labels [4] (int64), eval_images [4,3,32,32]
    f32/features [4,65,32]       norm(x) of cls + all 64 patches (the attentive block's keys/values)
    f32/probe_features [4,32]    the attentive block's output for the query token (fc_norm's input)
    f32/logits [4,10]            training forward (model.train(), is_train True)
    f32/loss                     CrossEntropyLoss (float64 scalar of the float32 value)
    f32/grads/<name>             for every parameter with requires_grad: query_token,
                                 attentive_blocks.0.* and head.* (the backbone is frozen through
                                 requires_grad by run_attentive.py itself). Four of them are zero
                                 in exact arithmetic and hold only rounding noise (|g| < 1e-7):
                                 norm_k.bias (a shift of every key by the same vector moves all
                                 logits of a query equally; softmax ignores it) and norm_v.bias,
                                 cross_attn.v_bias, cross_attn.proj.bias (each adds the same
                                 vector to every sample's probe feature, which fc_norm's batch
                                 mean removes): compare those with an absolute tolerance
    f32/fc_norm_running_mean [32], f32/fc_norm_running_var [32]   after the step
                                 (0.9 * 0 + 0.1 * batch mean, 0.9 * 1 + 0.1 * unbiased batch var)
    f32/eval_logits_running [4,10]     eval_images, model.eval(), is_train=False: running statistics
                                       of after the step (computed first)
    f32/eval_logits_batchstats [4,10]  eval_images, model.eval(), model(images) as the released
                                       evaluate does (is_train True: the eval batch's statistics)
    f64/loss                     the step rerun in float64 (a copy taken before the step)
Root attributes: format / source (from the converter), config (JSON: architecture, create_model
keyword arguments, the recipe's argv and the overrides, batch, labels, perturbation), cae_repo_commit,
seeds (JSON), trainable_params (JSON list), patch (the AttentiveBlock.forward note).

Checks: the released forward raises TypeError on the extra keywords; requires_grad is exactly
query_token, attentive_blocks.*, head.*; every one of them got a gradient, no frozen one did; the
converted names equal model.state_dict()'s; the running statistics equal the momentum formula on
probe_features; the logits equal those of a VisionTransformer built with use_rel_pos_bias False and
the same weights (the zero tables are a no-op); the two eval forwards differ.

CPU only, a few seconds, one thread; deterministic. Run from the repository root:
    python3 tools/make_attentive_fixture.py [--cae-repo PATH] [--rev REV] [--out DIR]
"""
import argparse
import ast
import contextlib
import copy
import json
import os
import re
import shlex
import sys
import types
from functools import partial

import h5py
import numpy as np
import torch
import torch.nn as nn

import fixture_common as common
from fixture_common import f32, generator, grads_of, scalar
from official_code import import_exported, stub_modules

SOURCES = ["models/modeling_finetune.py", "models/modeling_discrete_vae.py", "furnace/utils.py",
           "dall_e/__init__.py", "dall_e/encoder.py", "dall_e/decoder.py", "dall_e/utils.py",
           "tools/run_attentive.py", "scripts/cae_base_800e.sh"]
FILENAME = "attentive.h5"

B, NUM_CLASSES = 4, 10
IMG, PATCH, WIDTH = 32, 4, 32
# the tiny architecture in place of the registered cae_*_patch16_224 functions' (which add
# qkv_bias=True, mlp_ratio=4, norm_layer=partial(nn.LayerNorm, eps=1e-6))
ARCH = dict(img_size=IMG, patch_size=PATCH, in_chans=3, embed_dim=WIDTH, depth=2, num_heads=4,
            mlp_ratio=4, qkv_bias=True)
NORM_EPS = 1e-6
OVERRIDES = ["--nb_classes", str(NUM_CLASSES), "--input_size", str(IMG)]
LABELS = [3, 7, 0, 9]
ATTENTIVE_WEIGHT_SCALE = 10.0
SEEDS = dict(model=0, perturb=1, images=100, eval_images=101)


# ----------------------------------------------------------------------------- official code

def import_official(root):
    stubs = stub_modules(always=["tensorboardX", "clip", "clip.modeling_clip"], if_missing=["einops"])
    sys.modules["clip"].modeling_clip = sys.modules["clip.modeling_clip"]
    print(f"stub modules (raise on use): {', '.join(stubs)}")
    furnace_utils, finetune = import_exported(root, "furnace.utils", "models.modeling_finetune")
    assert finetune.utils is furnace_utils
    return types.SimpleNamespace(finetune=finetune, utils=furnace_utils)


def recipe_argv(script):
    """The argument list of the attentive-probing run_attentive.py call in scripts/cae_base_800e.sh."""
    part = script.split("attentive probing", 1)[1]
    command = part.split("tools/run_attentive.py", 1)[1]
    lines = []
    for line in command.splitlines()[1:] if command.startswith(" \\") else command.splitlines():
        lines.append(line.rstrip())
        if not line.rstrip().endswith("\\"):
            break
    text = " ".join(l.rstrip("\\") for l in lines)
    text = re.sub(r"\$\{?(\w+)\}?", lambda m: f"<{m.group(1)}>", text)
    return shlex.split(text)


def _function(tree, name):
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)


def official_args(run_attentive_source, argv):
    """run_attentive.get_args() (the function's own source) on argv."""
    tree = ast.parse(run_attentive_source)
    ns = {"argparse": argparse}
    exec(compile(ast.Module(body=[_function(tree, "get_args")], type_ignores=[]), "run_attentive.py", "exec"), ns)
    saved = sys.argv
    sys.argv = ["run_attentive.py", *argv]
    try:
        args, ds_init = ns["get_args"]()
    finally:
        sys.argv = saved
    assert ds_init is None
    return args


def official_model_statements(run_attentive_source):
    """main()'s `model = create_model(...)` and the `if args.enable_linear_eval:` block after it."""
    main = _function(ast.parse(run_attentive_source), "main")
    create = next(i for i, n in enumerate(main.body) if isinstance(n, ast.Assign)
                  and isinstance(n.value, ast.Call) and getattr(n.value.func, "id", None) == "create_model")
    probe = main.body[create + 1]
    assert isinstance(probe, ast.If) and ast.unparse(probe.test) == "args.enable_linear_eval", ast.unparse(probe.test)
    return ast.Module(body=[main.body[create], probe], type_ignores=[])


def build_model(off, args, statements):
    created = {}

    def create_model(name, pretrained=False, **kwargs):
        assert not pretrained
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        created.update(name=name, kwargs={k: v for k, v in kwargs.items() if k != "args"})
        return off.finetune.VisionTransformer(**ARCH, norm_layer=partial(nn.LayerNorm, eps=NORM_EPS), **kwargs)

    printed = []
    ns = {"create_model": create_model, "args": args, "torch": torch, "print": lambda *a: printed.append(a)}
    torch.manual_seed(SEEDS["model"])
    exec(compile(statements, "run_attentive.py", "exec"), ns)
    return ns["model"], created, ns["parameters_requires_grad"]


@contextlib.contextmanager
def attentive_block_accepts_extra_kwargs(finetune):
    """The one run-time patch: AttentiveBlock.forward accepts (and ignores) the two keywords
    forward_features passes it; both must be None."""
    original = finetune.AttentiveBlock.forward
    calls = []

    def forward(self, x_q, x_kv, pos_q, pos_k, **extra):
        assert extra == {"bool_masked_pos": None, "rel_pos_bias": None}, extra
        calls.append(1)
        return original(self, x_q, x_kv, pos_q, pos_k)

    finetune.AttentiveBlock.forward = forward
    try:
        yield calls
    finally:
        finetune.AttentiveBlock.forward = original


# ----------------------------------------------------------------------------- helpers

@torch.no_grad()
def perturb(model):
    torch.manual_seed(SEEDS["perturb"])
    norm_params = common.perturb_layer_norms(model)
    for name, p in model.named_parameters():
        if id(p) in norm_params or name.startswith("head."):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf.endswith("bias"):            # bias, q_bias, v_bias (not relative_position_bias_table)
            p.add_(0.02 * torch.randn_like(p))
        elif leaf.startswith("gamma"):
            p.mul_(1 + 0.1 * torch.randn_like(p))
    model.query_token.copy_(0.02 * torch.randn_like(model.query_token))
    # the official trunc_normal(0.02) weights make the attention almost uniform and the probe's
    # features almost constant over the batch (batch variance ~1e-6, below fc_norm's eps 1e-5);
    # x10 (std ~0.2 ~ 1/sqrt(D)) gives a peaked softmax and a batch variance well above eps
    for blk in model.attentive_blocks:
        for proj in (blk.cross_attn.q, blk.cross_attn.k, blk.cross_attn.v, blk.cross_attn.proj):
            proj.weight.mul_(ATTENTIVE_WEIGHT_SCALE)


@torch.no_grad()
def attention_peak(model, x_kv):
    """Largest softmax weight of the attentive block over the 65 keys (1 / 65 = 0.015 is uniform)."""
    blk = model.attentive_blocks[0]
    ca = blk.cross_attn
    q = nn.functional.linear(blk.norm_q(model.query_token.expand(x_kv.shape[0], -1, -1)), ca.q.weight, ca.q_bias)
    k = nn.functional.linear(blk.norm_k(x_kv), ca.k.weight)
    b, n, d = k.shape
    h = ca.num_heads
    q = q.reshape(b, 1, h, d // h).transpose(1, 2) * ca.scale
    k = k.reshape(b, n, h, d // h).transpose(1, 2)
    return float((q @ k.transpose(-2, -1)).softmax(-1).max())


def capture(module, index=0):
    """Records positional input `index` of every call of `module`."""
    seen = []
    handle = module.register_forward_hook(lambda m, inputs, output: seen.append(inputs[index].detach().clone()))
    return seen, handle


# ----------------------------------------------------------------------------- fixture

def make(off, tmp, args, statements, argv, commit):
    model, created, requires_grad_names = build_model(off, args, statements)
    kw = created["kwargs"]
    assert kw["lin_probe"] and kw["linear_type"] == "attentive" and kw["use_mean_pooling"] is False
    assert kw["use_rel_pos_bias"] is True and kw["init_values"] == 0.1 and args.sin_pos_emb
    assert kw["drop_path_rate"] == 0.0 and kw["drop_rate"] == 0.0 and kw["attn_drop_rate"] == 0.0
    assert isinstance(model.fc_norm, off.utils.LP_BatchNorm) and not model.fc_norm.affine
    assert model.fc_norm.eps == 1e-5 and model.fc_norm.momentum == 0.1
    assert isinstance(model.norm, nn.LayerNorm) and model.rel_pos_bias is None
    assert model.pos_embed is not None and not model.pos_embed.requires_grad
    perturb(model)

    named = dict(model.named_parameters())
    trainable = [n for n, p in named.items() if p.requires_grad]
    assert trainable == requires_grad_names
    assert set(trainable) == {"query_token", "head.weight", "head.bias"} | {
        n for n in named if n.startswith("attentive_blocks.")}, trainable

    converted = common.convert_state({"model": model.state_dict()}, tmp, "attentive_tiny")
    model64 = copy.deepcopy(model).double()
    initial_state = copy.deepcopy(model.state_dict())

    images = torch.randn(B, 3, IMG, IMG, generator=generator(SEEDS["images"]))
    eval_images = torch.randn(B, 3, IMG, IMG, generator=generator(SEEDS["eval_images"]))
    labels = torch.tensor(LABELS, dtype=torch.int64)
    criterion = nn.CrossEntropyLoss()    # --smoothing 0.0, no mixup

    model.train()
    try:
        with torch.no_grad():
            model(images)
        raise AssertionError("the released attentive forward no longer fails; drop the AttentiveBlock patch")
    except TypeError as e:
        assert "bool_masked_pos" in str(e), e
    model.load_state_dict(initial_state)   # (the failed call never reached fc_norm; reset anyway)

    features, h1 = capture(model.attentive_blocks[0], 1)   # x_kv = norm(x)
    probe_features, h2 = capture(model.fc_norm)
    with attentive_block_accepts_extra_kwargs(off.finetune) as calls:
        model.zero_grad(set_to_none=True)
        logits = model(images)                   # train_class_batch: model(samples), is_train True
        loss = criterion(logits, labels)
        loss.backward()
        h1.remove()
        h2.remove()
        assert len(calls) == 1
        running_mean = model.fc_norm.running_mean.clone()
        running_var = model.fc_norm.running_var.clone()

        grads = grads_of(model)

        with torch.no_grad():
            pf = probe_features[0]
            assert torch.allclose(running_mean, 0.1 * pf.mean(0), rtol=0, atol=1e-7)
            assert torch.allclose(running_var, 0.9 + 0.1 * pf.var(0, unbiased=True), rtol=1e-6, atol=1e-7)
            assert int(model.fc_norm.num_batches_tracked) == 1
            model.eval()
            eval_running = model(eval_images, is_train=False)
            assert torch.equal(model.fc_norm.running_mean, running_mean)
            eval_batchstats = model(eval_images)     # evaluate(): model.eval(); model(images)
            assert not torch.equal(model.fc_norm.running_mean, running_mean)   # the released side effect
            assert not torch.allclose(eval_running, eval_batchstats, atol=1e-3)

            # the zero relative-position tables change nothing: the same weights without them
            torch.manual_seed(12345)
            plain = off.finetune.VisionTransformer(**ARCH, norm_layer=partial(nn.LayerNorm, eps=NORM_EPS),
                                                   **dict(kw, use_rel_pos_bias=False), args=args)
            plain.load_state_dict({k: v for k, v in initial_state.items() if "relative_position" not in k}, strict=True)
            plain.eval()
            same = plain(images, is_train=False)
            model_again = copy.deepcopy(model)
            model_again.load_state_dict(initial_state)
            model_again.eval()
            ref = model_again(images, is_train=False)
            assert torch.equal(same, ref), (same - ref).abs().max()

        with torch.no_grad():
            model64.train()
            loss64 = criterion(model64(images.double()), labels)
        assert len(calls) == 6

    datasets = {
        "images": f32(images), "labels": labels.numpy(), "eval_images": f32(eval_images),
        "f32/features": f32(features[0]), "f32/probe_features": f32(probe_features[0]),
        "f32/logits": f32(logits), "f32/loss": scalar(loss),
        "f32/fc_norm_running_mean": f32(running_mean), "f32/fc_norm_running_var": f32(running_var),
        "f32/eval_logits_running": f32(eval_running), "f32/eval_logits_batchstats": f32(eval_batchstats),
        "f64/loss": scalar(loss64), "f32/grads": grads,
    }
    assert tuple(features[0].shape) == (B, (IMG // PATCH) ** 2 + 1, WIDTH)
    config = dict(ARCH, norm_layer="LayerNorm", norm_eps=NORM_EPS, num_classes=NUM_CLASSES,
                  create_model_kwargs={k: v for k, v in kw.items() if k != "num_classes"},
                  sin_pos_emb=args.sin_pos_emb, recipe="scripts/cae_base_800e.sh (attentive probing)",
                  recipe_argv=argv, overrides=OVERRIDES, recipe_model_name_unused=created["name"],
                  fc_norm=dict(cls="furnace.utils.LP_BatchNorm", affine=False, eps=1e-5, momentum=0.1),
                  head_init="normal(0, 0.01), bias 0 (run_attentive.py)", criterion="CrossEntropyLoss",
                  batch=B, labels=LABELS,
                  perturbation="LayerNorm w 1+0.1randn b 0.1randn; other biases +0.02randn (not head); "
                               "gamma *(1+0.1randn); query_token 0.02randn; attentive cross_attn q/k/v/proj weights "
                               f"*{ATTENTIVE_WEIGHT_SCALE}; relative_position_bias_table 0")
    attrs = dict(config=json.dumps(config), cae_repo_commit=commit, seeds=json.dumps(SEEDS),
                 trainable_params=json.dumps(trainable),
                 patch="AttentiveBlock.forward wrapped to accept and ignore bool_masked_pos=None, rel_pos_bias=None "
                       "(the released forward_features passes them; the released AttentiveBlock.forward rejects them)")

    with h5py.File(converted, "r") as src:
        for name in src["params"]:
            assert np.array_equal(src["params"][name][()], initial_state[name].float().numpy()), name
    path = os.path.join(tmp, FILENAME)
    common.write_fixture(path, converted, initial_state.keys(), datasets, attrs)

    print(f"{FILENAME}: loss f32 {loss.item():.9g}  f64 {loss64.item():.17g}  |diff| {abs(loss.item() - loss64.item()):.2e}; "
          f"{len(initial_state)} state-dict entries, {len(grads)} grads")
    print(f"  trainable: {', '.join(trainable)}")
    print(f"  state dict: {', '.join(f'{k} {list(v.shape)}' for k, v in initial_state.items())}")
    print(f"  probe features: batch variance min {probe_features[0].var(0).min():.3g} max {probe_features[0].var(0).max():.3g} "
          f"(fc_norm eps 1e-5); attention max weight {attention_peak(model, features[0]):.3g}")
    print(f"  eval logits, running vs batch statistics: max |diff| {(eval_running - eval_batchstats).abs().max():.3g}")
    return path


def main():
    cli = common.parse_args(__doc__, "Atten4Vis/CAE")
    torch.set_num_threads(1)
    with common.exported(cli, SOURCES, "attentive-fixture-") as (tmp, code, commit):
        off = import_official(code)
        with open(os.path.join(code, "tools", "run_attentive.py")) as f:
            run_attentive = f.read()
        with open(os.path.join(code, "scripts", "cae_base_800e.sh")) as f:
            argv = recipe_argv(f.read())
        args = official_args(run_attentive, argv + OVERRIDES)
        print(f"official CAE code: {commit} from {cli.repo}; recipe argv: {' '.join(argv)}")
        written = make(off, tmp, args, official_model_statements(run_attentive), argv, commit)
        common.install([written], cli.out)


if __name__ == "__main__":
    main()
