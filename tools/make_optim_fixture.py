"""Reference parameter trajectories for Tessera's optimizers, from PyTorch.

Three updates of two parameters (a [4, 3] weight and a [3] bias) with fixed gradients and learning
rates, for torch.optim.AdamW (decay on the weight only), torch.optim.SGD with Nesterov momentum and
coupled decay, and MAE's LARS (util/lars.py: restated from the spec, §7.2). Also the MAE per-iteration
schedule and the BEiT cosine array for a few settings.
Writes Tests/TesseraTests/Fixtures/optim.h5. Run once: python3 tools/make_optim_fixture.py
"""
import math
import os

import h5py
import numpy as np
import torch

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "TesseraTests", "Fixtures", "optim.h5")
g = torch.Generator().manual_seed(3)
W0 = torch.randn(4, 3, generator=g)
B0 = torch.randn(3, generator=g)
GW = [torch.randn(4, 3, generator=g) for _ in range(3)]
GB = [torch.randn(3, generator=g) for _ in range(3)]
LRS = [0.1, 0.05, 0.02]


def trajectory(make_opt):
    w, b = W0.clone().requires_grad_(True), B0.clone().requires_grad_(True)
    opt = make_opt(w, b)
    ws, bs = [], []
    for i in range(3):
        for group in opt.param_groups:
            group["lr"] = LRS[i]
        w.grad, b.grad = GW[i].clone(), GB[i].clone()
        opt.step()
        ws.append(w.detach().clone())
        bs.append(b.detach().clone())
    return torch.stack(ws), torch.stack(bs)


class MAELars(torch.optim.Optimizer):
    """MAE's LARS as the spec describes it: trust ratio for ndim > 1, plain momentum otherwise."""

    def __init__(self, params, lr=0, weight_decay=0, momentum=0.9, trust_coefficient=0.001):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, trust=trust_coefficient))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                d = p.grad
                if p.ndim > 1:
                    d = d.add(p, alpha=group["weight_decay"])
                    pn, dn = torch.norm(p), torch.norm(d)
                    q = torch.where(pn > 0, torch.where(dn > 0, group["trust"] * pn / dn, torch.ones_like(pn)), torch.ones_like(pn))
                    d = d.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(d)
                p.add_(mu, alpha=-group["lr"])


def main():
    with h5py.File(OUT, "w") as f:
        f["w0"], f["b0"] = W0.numpy(), B0.numpy()
        f["gw"], f["gb"] = torch.stack(GW).numpy(), torch.stack(GB).numpy()
        f["lrs"] = np.array(LRS, dtype=np.float32)
        runs = {
            "adamw": lambda w, b: torch.optim.AdamW([{"params": [w], "weight_decay": 0.05}, {"params": [b], "weight_decay": 0.0}],
                                                    lr=0.1, betas=(0.9, 0.95), eps=1e-8),
            "sgd_nesterov": lambda w, b: torch.optim.SGD([{"params": [w], "weight_decay": 1e-2}, {"params": [b], "weight_decay": 0.0}],
                                                         lr=0.1, momentum=0.9, nesterov=True),
            "lars": lambda w, b: MAELars([{"params": [w], "weight_decay": 0.05}, {"params": [b], "weight_decay": 0.05}], lr=0.1),
        }
        for name, make in runs.items():
            ws, bs = trajectory(make)
            f[f"{name}/w"], f[f"{name}/b"] = ws.numpy(), bs.numpy()
        # Schedules: MAE's adjust_learning_rate at every iteration; BEiT's cosine_scheduler array.
        epochs, warm, iters, base, minlr = 5, 2, 4, 1e-3, 1e-5
        mae = []
        for it in range(epochs * iters):
            e = it / iters
            lr = base * e / warm if e < warm else minlr + (base - minlr) * 0.5 * (1 + math.cos(math.pi * (e - warm) / (epochs - warm)))
            mae.append(lr)
        f["sched/mae"] = np.array(mae)
        warmup = np.linspace(0, base, warm * iters)
        rest = np.array([minlr + 0.5 * (base - minlr) * (1 + math.cos(math.pi * i / ((epochs - warm) * iters))) for i in range((epochs - warm) * iters)])
        f["sched/beit"] = np.concatenate([warmup, rest])
    print(OUT, os.path.getsize(OUT))


if __name__ == "__main__":
    main()
