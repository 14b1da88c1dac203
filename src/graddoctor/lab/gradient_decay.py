"""Backpropagated gradients at initialisation shrink geometrically with depth for
saturating activations with default init, and stay O(1) with matched inits."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import data, zoo
from .base import Check, Experiment, Numbers
from .measure import layer_grad_norms

#: configuration -> (activation, init)
CONFIGS: dict[str, tuple[str, str]] = {
    "sigmoid-default": ("sigmoid", "default"), "tanh-default": ("tanh", "default"),
    "relu-he": ("relu", "he"), "tanh-xavier": ("tanh", "xavier"),
    "tanh-orthogonal": ("tanh", "orthogonal"),
    "tanh-standard": ("tanh", "uniform"),  # Glorot's "standard" U[-1/sqrt(n), 1/sqrt(n)], biases 0
}


class GradientDecay(Experiment):
    name = "gradient-decay"
    claim = ("At init, a 20x64 MLP's backpropagated gradient shrinks by orders of magnitude "
             "from the output to the first layer with sigmoid/tanh and default init, "
             "not with ReLU+He or tanh+Xavier/orthogonal; weight-gradient norms hide it.")
    source = ("Hochreiter 1991; Bengio et al. 1994; Glorot & Bengio 2010 (Sec. 4.2.2, eq. 14, "
              "Fig. 7)")
    setup = ("zoo.mlp(depth=20, width=64) on a batch of MNIST-1D at initialisation; "
             "ratio = ||dL/d out(layer 1)|| / ||dL/d out(layer 20)|| per config; one fwd/bwd, "
             "no training.")
    quick = {"depth": 20, "width": 64, "batch": 256}
    full = {"depth": 20, "width": 64, "batch": 1000}
    checks = [
        Check("log10_ratio_sigmoid-default", "<", -6, "sigmoid + default init: log10 first/last",
              "< 1e-6 (0.25^19 bound = 3.6e-12)"),
        Check("log10_ratio_tanh-default", "<", -3, "tanh + default init: log10 first/last",
              "< 1e-3"),
        Check("ratio_relu-he", ">", 0.1, "ReLU + He: first/last", "> 0.1"),
        Check("ratio_tanh-xavier", ">", 0.05, "tanh + Xavier: first/last", "> 0.05"),
        Check("ratio_tanh-orthogonal", ">", 0.05, "tanh + orthogonal: first/last", "> 0.05"),
        Check("log10_ratio_tanh-standard", "<", -3,
              "eq. 14 trap, tanh + standard init (zero bias): log10 backprop first/last",
              "backprop vanishes"),
        Check("abs_log10_weight_ratio_tanh-standard", "<", 1,
              "... while |log10 weight-gradient first/last| (flat = 0)",
              "weight gradients flat (eq. 14)"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        d = data.load("mnist1d", seed=0)
        x, y = d.x_train[: settings["batch"]], d.y_train[: settings["batch"]]
        out: Numbers = {}
        for cfg, (act, init) in CONFIGS.items():
            net = zoo.mlp(depth=settings["depth"], width=settings["width"],
                          in_features=x.shape[1], out_features=10, activation=act, init=init,
                          seed=seed)
            g = layer_grad_norms(net, x, y)
            ratio = g["backprop"][0] / g["backprop"][-1]
            wratio = g["weight"][0] / g["weight"][-1]
            out[f"ratio_{cfg}"] = ratio
            out[f"log10_ratio_{cfg}"] = math.log10(ratio)
            out[f"weight_ratio_{cfg}"] = wratio
            out[f"backprop_{cfg}"] = g["backprop"]
            out[f"weight_{cfg}"] = g["weight"]
        out["abs_log10_weight_ratio_tanh-standard"] = abs(
            math.log10(out["weight_ratio_tanh-standard"]))
        out["bound_0.25^L"] = 0.25 ** (settings["depth"] - 1)
        return out

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        ax1, ax2 = fig.subplots(1, 2)
        depth = settings["depth"]
        layers = np.arange(1, depth + 1)
        for cfg in list(CONFIGS)[:5]:
            g = np.mean([np.log10(r[f"backprop_{cfg}"]) for r in runs], axis=0)
            ax1.plot(layers, g, marker=".", label=cfg)
        last = np.mean([np.log10(r["backprop_sigmoid-default"][-1]) for r in runs])
        ax1.plot(layers, last + (depth - layers) * np.log10(0.25), "k:", label="0.25^(L-l) bound")
        ax1.set(xlabel="layer", ylabel="log10 ||dL/d out||", title="backpropagated gradient")
        ax1.legend(fontsize=6)
        for key, style in (("backprop", "-"), ("weight", "--")):
            g = np.mean([np.log10(r[f"{key}_tanh-standard"]) for r in runs], axis=0)
            ax2.plot(layers, g, style, marker=".", label=f"{key} gradient")
        ax2.set(xlabel="layer", ylabel="log10 norm", title="tanh + standard init: eq. 14 trap")
        ax2.legend(fontsize=7)
