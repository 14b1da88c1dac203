"""Orthogonal weights near criticality give a deep tanh net a well-conditioned Jacobian;
Gaussian weights (tanh or ReLU) do not, at any scale."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from graddoctor import zoo
from graddoctor.lab.base import Check, Experiment, Numbers
from graddoctor.lab.measure import jacobian_singular_values, probe_profile

CONFIGS = ("tanh-orthogonal", "tanh-gaussian", "relu-gaussian")


def fixed_point_q(sigma_w: float, iters: int = 200) -> float:
    """The fixed point q* of q <- sigma_w^2 E[tanh(sqrt(q) z)^2] (sigma_b = 0), by iteration.

    Example:
        >>> round(fixed_point_q(1.05), 3)
        0.053
    """
    z = torch.linspace(-6, 6, 2001, dtype=torch.float64)
    w = torch.exp(-z ** 2 / 2)
    w /= w.sum()
    q = 1.0
    for _ in range(iters):
        q = sigma_w ** 2 * float((w * torch.tanh(math.sqrt(q) * z) ** 2).sum())
    return q


def build(config: str, depth: int, width: int, sigma_w: float, seed: int) -> nn.Module:
    """A ``depth``x``width`` MLP (width in, width out) with the config's weights, biases 0."""
    act = config.split("-")[0]
    if config == "relu-gaussian":
        return zoo.mlp(depth=depth, width=width, in_features=width, out_features=width,
                       activation="relu", init="he", seed=seed)
    net = zoo.mlp(depth=depth, width=width, in_features=width, out_features=width,
                  activation=act, init=sigma_w / math.sqrt(width), seed=seed)
    if config == "tanh-orthogonal":
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, nn.Linear):
                    q, r = torch.linalg.qr(torch.randn(width, width, generator=gen))
                    m.weight.copy_(sigma_w * q * torch.sign(torch.diagonal(r)))
    return net


class DynamicalIsometry(Experiment):
    name = "dynamical-isometry"
    claim = ("A 32x128 tanh net with orthogonal weights near criticality has most Jacobian "
             "singular values near 1 (dynamical isometry); Gaussian tanh and ReLU nets do not.")
    source = ("Pennington, Schoenholz & Ganguli 2017 (Resurrecting the sigmoid: dynamical "
              "isometry)")
    setup = ("Exact Jacobians (one batched backward); graddoctor.check's sketch in the notes. "
             "zoo.mlp(depth=32, width=128, 128 -> 128), biases 0: tanh with orthogonal or "
             "Gaussian weights of scale sigma_w=1.05 (sigma_w^2 = 1.1, near critical), ReLU with He "
             "Gaussian weights; inputs x ~ N(0, q*) at the tanh fixed point; singular values of "
             "the input-output Jacobian pooled over several inputs.")
    scaled = ("Pennington et al. plot spectra at several depths and train nets to show the "
              "speed-up; here one depth (32) and width (128) at init, exact Jacobians on 4 "
              "inputs: the spectrum's shape is what compares (the paper has no single number "
              "for it).")
    can_fail = ("if orthogonal weights did not concentrate the spectrum, fewer than half its "
                "singular values would lie in [0.5, 2]; if Gaussian weights did too, more than "
                "20% of theirs would.")
    cost_s = 1.0
    quick = {"depth": 32, "width": 128, "sigma_w": 1.05, "inputs": 4}
    full = {"depth": 32, "width": 128, "sigma_w": 1.05, "inputs": 32}
    checks = [
        Check("frac_tanh-orthogonal", ">=", 0.5, "orthogonal tanh: fraction of singular values "
              "in [0.5, 2]", "spectrum stays concentrated near 1 at any depth (Pennington et al. 2017, Fig. 1)"),
        Check("frac_tanh-gaussian", "<=", 0.2, "Gaussian tanh: fraction in [0.5, 2]", "spectrum widens with depth (Fig. 1)"),
        Check("frac_relu-gaussian", "<=", 0.2, "ReLU (He Gaussian): fraction in [0.5, 2]",
              "no isometry for ReLU at any init (Sec. 3)"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        q = fixed_point_q(s["sigma_w"])
        gen = torch.Generator().manual_seed(seed)
        xs = torch.randn(s["inputs"], s["width"], generator=gen) * math.sqrt(q)
        out: Numbers = {"q_star": q}
        for cfg in CONFIGS:
            net = build(cfg, s["depth"], s["width"], s["sigma_w"], seed)
            sv = jacobian_singular_values(net, xs).flatten()
            out[f"frac_{cfg}"] = float(((sv >= 0.5) & (sv <= 2)).float().mean())
            out[f"log10_sv_{cfg}"] = torch.log10(sv.clamp_min(1e-30)).tolist()
            out[f"check_spread_{cfg}"] = probe_profile(net, xs)["jacobian"]["spread"]
        return out

    def notes(self, runs: list[Numbers]) -> list[str]:
        spread = ", ".join(f"{cfg} {np.mean([r[f'check_spread_{cfg}'] for r in runs]):.3g}"
                           for cfg in CONFIGS)
        return [f"graddoctor check's Jacobian sketch, spread = mean(s^4)/mean(s^2)^2 (1 = isometry): "
                f"{spread}"]

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        ax = fig.subplots()
        bins = np.linspace(-8, 3, 56)
        for cfg in CONFIGS:
            v = np.concatenate([r[f"log10_sv_{cfg}"] for r in runs])
            ax.hist(np.clip(v, -8, 3), bins=bins, histtype="step", density=True, label=cfg)
        for b in (np.log10(0.5), np.log10(2)):
            ax.axvline(b, color="k", ls=":")
        ax.set(xlabel="log10 singular value of the input-output Jacobian", ylabel="density",
               title=f"{settings['depth']}x{settings['width']} nets at init")
        ax.legend(fontsize=7)
