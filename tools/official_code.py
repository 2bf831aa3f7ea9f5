"""Exporting an official repository's model code from a git snapshot, for the fixture scripts.

The fixture generators run the original repositories' own code, never a copy kept here: at run time
`export(repo, rev, sources, into)` writes the listed files of commit `rev` below `into`, applies only
the patches the installed timm / numpy / torch need (the import moves of timm.layers, numpy's removed
np.float, torch._six, torch.load's weights_only default), adds empty __init__.py files to the
packages it wrote (unless the package's own __init__.py is among the sources), and returns the
commit id.
"""
import os
import subprocess

import numpy as np


def _imports(statement):
    try:
        exec(statement, {})
        return True
    except ImportError:
        return False


# (file name, original text, replacement, needed?): only what the installed timm / numpy / torch reject.
# Matched by file name, so one list serves models_saim.py and models/models_semaim.py alike.
PATCHES = [
    # timm moved these layers to timm.layers; vision_transformer may stop re-exporting them
    ("blocks.py",
     "from timm.models.vision_transformer import Mlp, DropPath",
     "from timm.layers import Mlp, DropPath",
     lambda: not _imports("from timm.models.vision_transformer import Mlp, DropPath")),
    ("models_saim.py",
     "from timm.models.vision_transformer import PatchEmbed, Mlp",
     "from timm.layers import PatchEmbed, Mlp",
     lambda: not _imports("from timm.models.vision_transformer import PatchEmbed, Mlp")),
    ("models_semaim.py",
     "from timm.models.vision_transformer import PatchEmbed, Mlp",
     "from timm.layers import PatchEmbed, Mlp",
     lambda: not _imports("from timm.models.vision_transformer import PatchEmbed, Mlp")),
    # np.float (an alias of the builtin float, i.e. float64) was removed in numpy 1.24
    ("pos_embed.py",
     "np.arange(embed_dim // 2, dtype=np.float)",
     "np.arange(embed_dim // 2, dtype=float)",
     lambda: not hasattr(np, "float")),
    # torch._six (re-exporting math.inf as `inf`) was removed in torch 2.0; SemAIM's util/misc.py,
    # which engines/engine_pretrain.py imports, still takes inf from there
    ("misc.py",
     "from torch._six import inf",
     "from torch import inf",
     lambda: not _imports("from torch._six import inf")),
    # the same for CAE's furnace/utils.py, which tools/make_attentive_fixture.py imports for
    # LP_BatchNorm (its other imports the fixture stubs)
    ("utils.py",
     "from torch._six import inf",
     "from torch import inf",
     lambda: not _imports("from torch._six import inf")),
    # torch 2.6 made weights_only=True the default of torch.load, which refuses the pickled
    # nn.Module that DALL-E's encoder.pkl is; dall_e/__init__.py's load_model (what CAE's
    # Dalle_VAE.load_model calls) reads it with the old default
    ("__init__.py",
     "torch.load(f, map_location=device)",
     "torch.load(f, map_location=device, weights_only=False)",
     lambda: _torch_loads_weights_only()),
    ("__init__.py",
     "torch.load(buf, map_location=device)",
     "torch.load(buf, map_location=device, weights_only=False)",
     lambda: _torch_loads_weights_only()),
]


def _torch_loads_weights_only():
    import torch
    major, minor = (int("".join(ch for ch in part if ch.isdigit()) or 0)
                    for part in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 6)


def git(repo, *args):
    return subprocess.run(["git", "--git-dir", repo, *args], check=True, capture_output=True).stdout


def export(repo, rev, sources, into):
    """Writes `sources` (paths in the repository) at `rev` below `into`, patched; returns the commit."""
    commit = git(repo, "rev-parse", f"{rev}^{{commit}}").decode().strip()
    texts = {path: git(repo, "show", f"{commit}:{path}").decode() for path in sources}
    for path in texts:
        for name, old, new, needed in PATCHES:
            if os.path.basename(path) == name and old in texts[path] and needed():
                texts[path] = texts[path].replace(old, new)
                print(f"patched {path}: {old!r} -> {new!r}")
    for path, text in texts.items():
        os.makedirs(os.path.join(into, os.path.dirname(path)), exist_ok=True)
        with open(os.path.join(into, path), "w") as f:
            f.write(text)
    # most repositories have no __init__.py files; empty ones keep other `util` / `models` away
    # (an __init__.py that is itself among the sources is kept)
    for pkg in {os.path.dirname(p) for p in sources if os.path.dirname(p)}:
        init = os.path.join(pkg, "__init__.py")
        if init not in texts:
            open(os.path.join(into, init), "w").close()
    return commit
