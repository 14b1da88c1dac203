"""Backpropagated gradients at initialisation shrink geometrically with depth for
saturating activations with default init, and stay O(1) with matched inits."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers
from graddoctor.lab.measure import layer_grad_norms, probe_profile, watched_grad_norms

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
    source = "Hochreiter 1991; Bengio, Simard & Frasconi 1994; Glorot & Bengio 2010 (eq. 14)"
    setup = ("zoo.mlp(depth=20, width=64) on a batch of MNIST-1D at initialisation, one "
             "forward/backward, no training. Backpropagated gradient = RMS of dL/d(layer output) "
             "from graddoctor.check's init probe; ratio = layer 1 / layer 20 (output). Weight "
             "gradients (eq. 14) = norms of the weight matrices' gradients (plain autograd); "
             "graddoctor.watch's per-layer norms (weights + biases) are reported beside them.")
    scaled = ("the papers argue from the chain rule (Hochreiter 1991) and show 5-hidden-layer "
              "1000-unit nets (Glorot & Bengio Fig. 7, Shapeset); here 20x64 MLPs at init on a "
              "batch of MNIST-1D: the per-layer factor compares, not the end-to-end ratio.")
    can_fail = ("if saturating activations with default init did not shrink the gradient, their "
                "log10 first/last would stay above -6 (sigmoid) / -3 (tanh) on some seed; if "
                "the matched inits did not keep it, ReLU+He would fall below 0.1 and "
                "tanh+Xavier/orthogonal below 0.05; if weight gradients showed the decay too, "
                "|log10 weight-gradient first/last| would reach 1.")
    cost_s = 7.0
    quick = {"depth": 20, "width": 64, "batch": 256}
    full = {"depth": 20, "width": 64, "batch": 1000}
    checks = [
        Check("log10_ratio_sigmoid-default", "<", -6, "sigmoid + default init: log10 first/last",
              "≤ 0.25^19 = 3.6e-12 (sigmoid' ≤ 1/4 per layer, Hochreiter 1991): log10 ≤ -11.4"),
        Check("log10_ratio_tanh-default", "<", -3, "tanh + default init: log10 first/last",
              "decays toward the input (Glorot & Bengio Fig. 7; no number given)"),
        Check("ratio_relu-he", ">", 0.1, "ReLU + He: first/last", "1 in expectation (He et al. 2015, eq. 14)"),
        Check("ratio_tanh-xavier", ">", 0.05, "tanh + Xavier: first/last", "~1 by design (Glorot & Bengio eq. 16; Fig. 7 flat)"),
        Check("ratio_tanh-orthogonal", ">", 0.05, "tanh + orthogonal: first/last", "depth-independent (Saxe et al. 2014)"),
        Check("log10_ratio_tanh-standard", "<", -3,
              "eq. 14 trap, tanh + standard init (zero bias): log10 backprop first/last",
              "backprop gradients shrink toward the input (Sec. 4.2.2)"),
        Check("abs_log10_weight_ratio_tanh-standard", "<", 1,
              "... while |log10 weight-gradient first/last| (flat = 0)",
              "weight-gradient variance independent of the layer (eq. 14)"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        d = data.load("mnist1d", seed=0)
        x, y = d.x_train[: settings["batch"]], d.y_train[: settings["batch"]]
        out: Numbers = {}
        for cfg, (act, init) in CONFIGS.items():
            net = zoo.mlp(depth=settings["depth"], width=settings["width"],
                          in_features=x.shape[1], out_features=10, activation=act, init=init,
                          seed=seed)
            p = probe_profile(net, x, y)
            g = layer_grad_norms(net, x, y)
            w = watched_grad_norms(net, x, y)
            ratio = p["grad_rms"][0] / p["grad_rms"][-1]
            out[f"ratio_{cfg}"] = ratio
            out[f"log10_ratio_{cfg}"] = math.log10(ratio)
            out[f"weight_ratio_{cfg}"] = g["weight"][0] / g["weight"][-1]
            out[f"watch_log10_ratio_{cfg}"] = math.log10(w["grad_norm"][0] / w["grad_norm"][-1])
            out[f"backprop_{cfg}"] = p["grad_rms"]
            out[f"weight_{cfg}"] = g["weight"]
            out[f"watch_{cfg}"] = w["grad_norm"]
            out[f"check_flags_vanishing_{cfg}"] = float("vanishing-gradient" in p["codes"])
        out["abs_log10_weight_ratio_tanh-standard"] = abs(
            math.log10(out["weight_ratio_tanh-standard"]))
        out["bound_0.25^L"] = 0.25 ** (settings["depth"] - 1)
        return out

    def notes(self, runs: list[Numbers]) -> list[str]:
        flags = {cfg: np.mean([r[f"check_flags_vanishing_{cfg}"] for r in runs]) for cfg in CONFIGS}
        text = ", ".join(f"{cfg} {v:.0%}" for cfg, v in flags.items())
        watch = np.mean([r["watch_log10_ratio_tanh-standard"] for r in runs])
        return [f"graddoctor check reports `vanishing-gradient` (fraction of seeds): {text}",
                f"tanh-standard: graddoctor.watch's per-layer norm (weights + biases) first/last "
                f"= 10^{watch:.1f}: bias gradients carry the backpropagated signal, so watch's "
                f"norms are not fooled by the eq. 14 trap"]

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        ax1, ax2 = fig.subplots(1, 2)
        depth = settings["depth"]
        layers = np.arange(1, depth + 1)
        for cfg in list(CONFIGS)[:5]:
            g = np.mean([np.log10(r[f"backprop_{cfg}"]) for r in runs], axis=0)
            ax1.plot(layers, g, marker=".", label=cfg)
        last = np.mean([np.log10(r["backprop_sigmoid-default"][-1]) for r in runs])
        ax1.plot(layers, last + (depth - layers) * np.log10(0.25), "k:", label="0.25^(L-l) (sigmoid' <= 1/4)")
        ax1.set(xlabel="layer", ylabel="log10 RMS dL/d out", title="backpropagated gradient (check)")
        ax1.legend(fontsize=6)
        for key, style, label in (("backprop", "-", "backprop RMS (check)"),
                                  ("weight", "--", "weight-matrix grad norm"),
                                  ("watch", ":", "layer grad norm (watch)")):
            g = np.mean([np.log10(r[f"{key}_tanh-standard"]) for r in runs], axis=0)
            ax2.plot(layers, g, style, marker=".", label=label)
        ax2.set(xlabel="layer", ylabel="log10 norm", title="tanh + standard init: eq. 14 trap")
        ax2.legend(fontsize=7)
