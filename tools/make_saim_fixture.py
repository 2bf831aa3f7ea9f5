#!/usr/bin/env python3
"""PyTorch reference numbers for SAIM, produced by the official qiy20/SAIM code on a tiny model.

Nothing of SAIM is restated here: at run time the script exports models_saim.py, util/blocks.py and
util/pos_embed.py from a snapshot of the official repository (a git directory, bare or not) into a
temporary folder, patches the few spots that newer timm / numpy no longer accept, and imports
`models_saim.SaimViT` from there (tools/official_code.py). The snapshot is looked up in, by priority
(tools/fixture_common.py):
    --saim-repo PATH,  $SAIM_REPO,  /work/.mirror/qiy20+SAIM/repo
(any git directory holding the official sources at the chosen --rev, default HEAD).

Model: img 32, patch 4, 3 channels, width 64, depth 4, 4 heads, mlp_ratio 4, 2 query blocks,
Gaussian target blur (kernel 3, sigma 1), norm_pix_loss, no drop path. Two fixtures:
    saim.h5         share_weight=False, prediction head MLP,    L2 loss
    saim_shared.h5  share_weight=True,  prediction head LINEAR, L1 loss; width 32, depth 2, 2 heads
Weights come from the official initialize_weights after torch.manual_seed(0). The permutation noise
that generate_attention_mask would draw with torch.rand is replaced by our own U[0,1) tensor (the
`torch` models_saim sees is official_code.TorchStandIn), so the Swift side can rebuild the same
attention masks; the replacement is checked before use.

Each file holds
    params/<name>        every model.state_dict() entry, written by tools/pth_to_h5.py (for
                         share_weight both blocks.* and query_blocks.* appear, holding the same
                         tensors; gaussian_blur.weight is the blur kernel buffer)
    images [3,3,32,32]   noise [3,64]                                   (float32)
    f32/loss (float64 scalar of the float32 loss), f32/pred [3,65,48] (forward_saim output, cls row
    included), f32/grads/<name> for every trainable parameter (named_parameters, requires_grad)
    f64/loss, f64/pred   the same forward in float64 (model.double()), for reference
and root attributes: format/source (from the converter), config (JSON of the hyper-parameters),
saim_repo_commit.

Run from the repository root (idempotent, overwrites both fixtures):
    python3 tools/make_saim_fixture.py [--saim-repo PATH] [--out DIR]
"""
import json
import os

import torch

import fixture_common as common
from fixture_common import f32, scalar
from h5_checkpoint import replacing
from official_code import fed, import_exported

SOURCES = ["models_saim.py", "util/blocks.py", "util/pos_embed.py"]

BASE = dict(img_size=32, patch_size=4, in_chans=3, embed_dim=64, depth=4, num_heads=4,
            mlp_ratio=4.0, drop_path_rate=0.0, query_depth=2, gaussian_kernel_size=3,
            gaussian_sigma=1, norm_pix_loss=True)
VARIANTS = {
    "saim.h5": dict(share_weight=False, prediction_head_type="MLP", loss_type="L2"),
    # Smaller (width 32, depth 2, 2 heads, 2 query blocks), so the second file stays small.
    "saim_shared.h5": dict(share_weight=True, prediction_head_type="LINEAR", loss_type="L1",
                           embed_dim=32, depth=2, num_heads=2, query_depth=2),
}
BATCH = 3


def check_masks(model, models_saim, imgs, noise):
    """The masks built under the patch must be the ones the noise defines."""
    with torch.no_grad(), fed(models_saim, [noise]) as fake:
        mask_h, mask_g = model.generate_attention_mask(model.patch_embed(imgs))
    assert len(fake.calls) == 1, "generate_attention_mask did not draw its noise through torch.rand"
    n, L = noise.shape
    assert mask_h.shape == mask_g.shape == (n, 1, L + 1, L + 1)
    inf = torch.tensor(-float("inf"))
    zero = torch.tensor(0.0)
    a, b = noise.unsqueeze(-1), noise.unsqueeze(1)  # [n, i, 1], [n, 1, j]
    assert torch.equal(mask_h[:, 0, 1:, 1:], torch.where(a < b, inf, zero)), "content mask differs"
    assert torch.equal(mask_g[:, 0, 1:, 1:], torch.where(a <= b, inf, zero)), "query mask differs"
    for m in (mask_h, mask_g):
        assert torch.all(m[:, 0, :, 0] == 0) and torch.all(torch.isinf(m[:, 0, 0, 1:]))
    # and the forward really uses it: a different noise gives a different loss
    with torch.no_grad():
        with fed(models_saim, [noise]):
            l1 = model(imgs).item()
        with fed(models_saim, [noise.flip(1)]):
            l2 = model(imgs).item()
    assert l1 != l2, "loss does not depend on the patched noise"


def run_forward(model, models_saim, imgs, noise):
    """loss = model(imgs) under the fixed noise; also returns forward_saim's output."""
    captured = {}
    official_loss = model.forward_loss

    def forward_loss(imgs_, pred):
        captured["pred"] = pred
        return official_loss(imgs_, pred)

    model.forward_loss = forward_loss
    try:
        with fed(models_saim, [noise]) as fake:
            loss = model(imgs)
    finally:
        del model.forward_loss
    assert len(fake.calls) == 1
    return loss, captured["pred"]


# ----------------------------------------------------------------------------- fixtures

def make_fixture(models_saim, filename, variant, out_dir, tmp, commit):
    config = dict(BASE, **variant)
    torch.manual_seed(0)
    model = models_saim.SaimViT(**config)
    model.train()
    imgs = torch.randn(BATCH, config["in_chans"], config["img_size"], config["img_size"])
    L = (config["img_size"] // config["patch_size"]) ** 2
    noise = torch.rand(BATCH, L)
    assert all(row.unique().numel() == L for row in noise), "ties in the noise would make the order ambiguous"

    # weights: through the repository's own converter
    converted = common.convert_state({"model": model.state_dict()}, tmp, filename.replace(".h5", ""))

    check_masks(model, models_saim, imgs, noise)

    model.zero_grad(set_to_none=True)
    loss32, pred32 = run_forward(model, models_saim, imgs, noise)
    loss32.backward()
    grads = common.grads_of(model)

    model64 = model.double()  # in place; the float32 results above are already taken
    with torch.no_grad():
        loss64, pred64 = run_forward(model64, models_saim, imgs.double(), noise.double())

    path = os.path.join(out_dir, filename)
    datasets = {"images": f32(imgs), "noise": f32(noise), "f32/loss": scalar(loss32), "f32/pred": f32(pred32),
                "f32/grads": grads, "f64/loss": scalar(loss64), "f64/pred": f32(pred64)}
    attrs = dict(config=json.dumps(dict(config, batch=BATCH)), saim_repo_commit=commit)
    with replacing(path) as temporary:
        common.write_fixture(temporary, converted, model.state_dict().keys(), datasets, attrs, assign=True)
    print(common.summary(filename, loss32, loss64, model, grads, path))


def main():
    args = common.parse_args(__doc__, "qiy20/SAIM")
    with common.exported(args, SOURCES, "saim-fixture-") as (tmp, code, commit):
        models_saim, = import_exported(code, "models_saim")
        print(f"official SAIM code: {commit} from {args.repo} (imported from {models_saim.__file__})")
        for filename, variant in VARIANTS.items():
            make_fixture(models_saim, filename, variant, args.out, tmp, commit)


if __name__ == "__main__":
    main()
