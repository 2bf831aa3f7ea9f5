"""Exporting an official repository's model code from a git snapshot, and running it, for the
fixture scripts and the bench scripts' --check-against-official.

The fixture generators run the original repositories' own code, never a copy kept here: at run time
`export(repo, rev, sources, into)` writes the listed files of commit `rev` below `into`, applies only
the patches the installed timm / numpy / torch need (the import moves of timm.layers, numpy's removed
np.float, torch._six, torch.load's weights_only default), adds empty __init__.py files to the
packages it wrote (unless the package's own __init__.py is among the sources), and returns the
commit id. `exported_or_export(path, sources, into, what)` is the bench scripts' DIR: exported
sources as they are, or a git directory whose HEAD is exported into `into`.

Running the exported code:
  * `import_exported(root, *names)` imports the named modules from `root` (on sys.path for the
    imports only) and checks that each comes from there;
  * `stub_modules(always, if_missing)` puts an `Unavailable` module (any use raises) in sys.modules
    for modules the official code imports but the path taken never uses; timm is imported first, so
    it never sees a stub;
  * `fed(module, uniforms)` replaces `module.torch` (the official module's global `torch`) by a
    `TorchStandIn`: torch itself, except that torch.rand returns the given tensors in call order
    (each checked to have the shape asked for, `calls` records the shapes) and the other random
    functions raise; `torch_of(module, stand_in)` does the same for another stand-in, and
    `replaced(module, name, stand_in)` for any other global of the module (e.g. `random`);
  * `cuda_is_identity()` makes Tensor.cuda return the tensor itself (the official code moves things
    to the GPU unconditionally) and yields the list of the calls' arguments.
"""
import contextlib
import importlib
import os
import subprocess
import sys
import types

import numpy as np
import torch


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


def exported_or_export(path, sources, into, what):
    """`path` when it holds the exported sources already (sources[0] is there), else `path` is a
    git directory of the official repository: its HEAD is exported into `into`, which is returned."""
    if os.path.exists(os.path.join(path, sources[0])):
        return path
    print(f"exported {what} {export(path, 'HEAD', sources, into)} into {into}", file=sys.stderr)
    return into


# ----------------------------------------------------------------------------- running it

def import_exported(root, *names):
    """The modules `names` (dotted), imported from the exported folder `root`, as a tuple."""
    sys.path.insert(0, root)
    try:
        modules = tuple(importlib.import_module(name) for name in names)
    finally:
        sys.path.remove(root)
    for mod in modules:
        assert os.path.abspath(mod.__file__).startswith(os.path.abspath(root)), mod.__file__
    return modules


class Unavailable(types.ModuleType):
    """A module the official code imports but the path taken never uses: any use raises."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise AssertionError(f"{self.__name__}.{name} used: {self.__name__} is a stub here")
        return unavailable


def stub_modules(always=(), if_missing=()):
    """An Unavailable module in sys.modules for each name of `always` and each name of
    `if_missing` that does not import; returns the names stubbed."""
    import timm  # noqa: F401  (before any stub is in sys.modules)
    names = list(always) + [name for name in if_missing if not _imports(f"import {name}")]
    for name in names:
        sys.modules[name] = Unavailable(name)
    return names


def rand_shape(size):
    """The shape of torch.rand(*size): rand(2, 3) and rand((2, 3)) alike."""
    return tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else tuple(size)


class TorchStandIn:
    """Stands in for the `torch` module inside an official module: torch itself, except that rand()
    returns the next of `uniforms` (its shape must match; `calls` records the shapes asked for) and
    the other random functions raise."""

    RANDOM = ("randn", "randint", "randperm", "rand_like", "randn_like", "randint_like",
              "normal", "bernoulli", "multinomial", "poisson")

    def __init__(self, uniforms=()):
        self._uniforms = list(uniforms)
        self.calls = []

    def rand(self, *size, device=None, dtype=None, **kwargs):
        assert not kwargs and dtype in (None, torch.float32), f"unexpected torch.rand arguments {kwargs} dtype={dtype}"
        shape = rand_shape(size)
        k = len(self.calls)
        self.calls.append(shape)
        assert k < len(self._uniforms), f"unexpected extra torch.rand{shape}"
        t = self._uniforms[k]
        assert tuple(t.shape) == shape, f"torch.rand{shape} but uniform {k} is {tuple(t.shape)}"
        t = t.clone()
        return t.to(device) if device is not None else t

    def _forbidden(self, name):
        def f(*args, **kwargs):
            raise AssertionError(f"the official code called torch.{name}; only rand is fed")
        return f

    def __getattr__(self, name):
        if name in self.RANDOM:
            return self._forbidden(name)
        return getattr(torch, name)


@contextlib.contextmanager
def replaced(module, name, stand_in):
    """The module's global `name` is `stand_in` inside the block (yields the stand-in)."""
    saved = getattr(module, name)
    setattr(module, name, stand_in)
    try:
        yield stand_in
    finally:
        setattr(module, name, saved)


def torch_of(module, stand_in):
    """module.torch is `stand_in` inside the block."""
    return replaced(module, "torch", stand_in)


def fed(module, uniforms):
    """module.torch is a TorchStandIn over `uniforms` inside the block (yields the stand-in)."""
    return torch_of(module, TorchStandIn(uniforms))


@contextlib.contextmanager
def cuda_is_identity():
    saved, calls = torch.Tensor.cuda, []

    def cuda(self, *args, **kwargs):
        calls.append(args)
        return self

    torch.Tensor.cuda = cuda
    try:
        yield calls
    finally:
        torch.Tensor.cuda = saved
