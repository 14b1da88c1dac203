"""Tiny LightningModules for the integration tests (also run by the DDP worker): each measures
the per-layer gradient norms in its own ``on_before_optimizer_step`` hook (the oracle)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def layer_norms(modules: dict[str, nn.Module]) -> dict[str, float]:
    """Per layer: the L2 norm of all its parameters' gradients (None: no gradient)."""
    out = {}
    for name, m in modules.items():
        grads = [p.grad.flatten() for p in m.parameters(recurse=False) if p.grad is not None]
        out[name] = torch.cat(grads).double().norm().item() if grads else None
    return out


def loader(n: int = 48, batch_size: int = 8, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, :1] * 2 - x[:, 1:2]).tanh()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


class Regressor(pl.LightningModule):
    """A 3-layer tanh MLP trained with SGD (automatic optimisation)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
        self.oracle: list[dict[str, float]] = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self(x).float(), y)

    def on_before_optimizer_step(self, optimizer):
        self.oracle.append(layer_norms({f"net.{i}": self.net[i] for i in (0, 2, 4)}))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class TinyGAN(pl.LightningModule):
    """Manual optimisation with two optimizers: a discriminator step, then a generator step."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.automatic_optimization = False
        self.gen = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6))
        self.disc = nn.Sequential(nn.Linear(6, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
        self.oracle: list[dict[str, float]] = []

    def forward(self, z):
        return self.gen(z)

    def training_step(self, batch, batch_idx):
        real, _ = batch
        opt_d, opt_g = self.optimizers()
        z = torch.randn(real.shape[0], 4)
        bce = nn.functional.binary_cross_entropy_with_logits
        fake = self(z)
        d_loss = bce(self.disc(real), torch.ones(len(real), 1)) + bce(self.disc(fake.detach()), torch.zeros(len(real), 1))
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        g_loss = bce(self.disc(fake), torch.ones(len(real), 1))
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        return g_loss.detach()

    def on_before_optimizer_step(self, optimizer):
        mods = {"gen.0": self.gen[0], "gen.2": self.gen[2], "disc.0": self.disc[0], "disc.2": self.disc[2]}
        owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
        self.oracle.append({n: v for n, v in layer_norms(mods).items()
                            if all(id(p) in owned for p in mods[n].parameters())})

    def configure_optimizers(self):
        return (torch.optim.Adam(self.disc.parameters(), lr=1e-3),
                torch.optim.Adam(self.gen.parameters(), lr=1e-3))


def trainer(**kw) -> pl.Trainer:
    base = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, max_epochs=1)
    return pl.Trainer(**{**base, **kw})
