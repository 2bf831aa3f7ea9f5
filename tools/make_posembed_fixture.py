"""Reference for Tessera's interpolatePosEmbed: PyTorch's bicubic resize of a position table.

Follows interpolate_pos_embed from facebookresearch/mae util/pos_embed.py: keep the leading extra
(cls) rows, reshape the patch rows to (1, s, s, D), permute to (1, D, s, s), F.interpolate with
mode='bicubic', align_corners=False, permute back and flatten to (1, t*t, D).
Writes Tests/TesseraTests/Fixtures/posembed.h5 with two cases:
  cls/input   [1, 1 + 4*4, 8]  -> cls/output   [1, 1 + 7*7, 8]  (upsampling, one cls row)
  nocls/input [1, 5*5, 8]      -> nocls/output [1, 3*3, 8]      (downsampling, no extra rows)
Run once: python3 tools/make_posembed_fixture.py
"""
import os

import h5py
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "TesseraTests", "Fixtures", "posembed.h5")


def interpolate(table, extra, new_size):
    dim = table.shape[-1]
    orig_size = int((table.shape[-2] - extra) ** 0.5)
    extra_tokens = table[:, :extra]
    pos_tokens = table[:, extra:]
    pos_tokens = pos_tokens.reshape(-1, orig_size, orig_size, dim).permute(0, 3, 1, 2)
    pos_tokens = F.interpolate(pos_tokens, size=(new_size, new_size), mode="bicubic", align_corners=False)
    pos_tokens = pos_tokens.permute(0, 2, 3, 1).flatten(1, 2)
    return torch.cat((extra_tokens, pos_tokens), dim=1)


def main():
    g = torch.Generator().manual_seed(7)
    cases = {
        "cls": (torch.randn(1, 1 + 4 * 4, 8, generator=g), 1, 7),
        "nocls": (torch.randn(1, 5 * 5, 8, generator=g), 0, 3),
    }
    with h5py.File(OUT, "w") as f:
        for name, (table, extra, size) in cases.items():
            f[f"{name}/input"] = table.numpy()
            f[f"{name}/output"] = interpolate(table, extra, size).numpy()
            f[name].attrs["extra"] = extra
            f[name].attrs["grid"] = size
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
