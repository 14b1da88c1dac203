"""Dead ReLUs: units pushed below zero for every input get no gradient and never recover;
LeakyReLU units under the same push still get a gradient and come back."""

from __future__ import annotations

from typing import Any

from torch import nn

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers, codes_note, plot_curves
from graddoctor.lab.measure import dead_fraction, evaluate, train

#: configuration -> (activation, negative slope, initial bias)
CONFIGS: dict[str, tuple[str, float, float]] = {
    "relu": ("relu", 0.0, -1.0), "leaky0.1": ("leaky_relu", 0.1, -1.0),
    "leaky0.01": ("leaky_relu", 0.01, -1.0), "relu-healthy": ("relu", 0.0, 0.0),
}


def build(config: str, depth: int, width: int, seed: int) -> nn.Module:
    """zoo.mlp with He init, the config's activation, slope and constant initial bias."""
    act, slope, bias = CONFIGS[config]
    net = zoo.mlp(depth=depth, width=width, in_features=64, out_features=10, activation=act,
                  init="he", bias=bias, seed=seed)
    for m in net.modules():
        if isinstance(m, nn.LeakyReLU):
            m.negative_slope = slope
    return net


class DyingReLU(Experiment):
    name = "dying-relu"
    claim = ("A ReLU MLP whose units are pushed below zero (negative bias) keeps most of them "
             "dead and does not train; LeakyReLU under the same push revives them and trains.")
    source = ("Maas, Hannun & Ng 2013 (leaky ReLU); Lu et al. 2019 (Dying ReLU and "
              "initialization)")
    setup = ("zoo.mlp(depth=4, width=64, init='he', bias=-1) on digits, Adam lr 0.01, batch 32. "
             "Dead fraction = units never active over graddoctor.measure.monitor.watcher's last activation window "
             "(the full-training-set oracle is reported beside it). LeakyReLU slope 0.1 is the "
             "checked one; slope 0.01 and a healthy ReLU net (bias 0) are shown for reference: "
             "with this lr even the healthy ReLU net ends with ~15-20% units never active, and "
             "slope 0.01 revives units only down to ~10-15%.")
    quick = {"depth": 4, "width": 64, "steps": 500, "lr": 0.01, "batch": 32}
    full = {"depth": 4, "width": 128, "steps": 2000, "lr": 0.01, "batch": 32}
    checks = [
        Check("dead_relu", ">", 0.5, "ReLU, bias -1: dead units after training (watch)", "> 50%"),
        Check("acc_relu", "<=", 0.2, "ReLU, bias -1: test accuracy", "does not train"),
        Check("dead_leaky0.1", "<", 0.1, "LeakyReLU(0.1), bias -1: dead units (watch)", "< 10%"),
        Check("acc_leaky0.1", ">=", 0.9, "LeakyReLU(0.1), bias -1: test accuracy", "trains"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        d = data.load("digits", seed=seed)
        out: Numbers = {}
        for cfg in CONFIGS:
            net = build(cfg, s["depth"], s["width"], seed)
            out[f"dead_init_{cfg}"] = dead_fraction(net, d.x_train)
            r = train(net, d, steps=s["steps"], lr=s["lr"], batch_size=s["batch"],
                      optimizer="adam", seed=seed, watch=True, eval_every=max(1, s["steps"] // 20))
            out[f"dead_{cfg}"] = r["watch"]["dead_frac"]
            out[f"dead_oracle_{cfg}"] = dead_fraction(net, d.x_train)
            out[f"acc_{cfg}"] = evaluate(net, d.x_test, d.y_test)["acc"]
            out[f"curve_{cfg}"] = r["evals"]
            out[f"codes_{cfg}"] = r["watch"]["codes"]
        return out

    def notes(self, runs: list[Numbers]) -> list[str]:
        return [codes_note(runs, list(CONFIGS))]

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        import numpy as np

        ax1, ax2 = fig.subplots(1, 2)
        x = np.arange(len(CONFIGS))
        for k, (key, label) in enumerate((("dead_init", "at init"), ("dead", "after (watch)"),
                                          ("dead_oracle", "after (full data)"))):
            v = np.array([[r[f"{key}_{c}"] for c in CONFIGS] for r in runs])
            ax1.bar(x + (k - 1) * 0.27, v.mean(0), 0.27, yerr=v.std(0), label=label)
        ax1.set_xticks(x, list(CONFIGS), fontsize=7)
        ax1.set(ylabel="dead unit fraction", title="dead units")
        ax1.legend(fontsize=6)
        plot_curves(ax2, runs, CONFIGS)
        ax2.set(xlabel="step", ylabel="test accuracy", title="training")
        ax2.legend(fontsize=6)
