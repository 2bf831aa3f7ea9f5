"""Exporting an official repository's model code from a git snapshot, for the fixture scripts.

The fixture generators run the original repositories' own code, never a copy kept here: at run time
`export(repo, rev, sources, into)` writes the listed files of commit `rev` below `into`, applies only
the patches the installed timm / numpy need (the import moves of timm.layers, numpy's removed
np.float), adds empty __init__.py files to the packages it wrote, and returns the commit id.
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


# (file name, original text, replacement, needed?): only what the installed timm / numpy reject.
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
]


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
    # the repositories have no __init__.py files; empty ones keep other `util` / `models` away
    for pkg in {os.path.dirname(p) for p in sources if os.path.dirname(p)}:
        open(os.path.join(into, pkg, "__init__.py"), "w").close()
    return commit
