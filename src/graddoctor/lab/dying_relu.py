"""Dying ReLU: from a healthy init, a too-large learning rate kills ReLU units during training
(they get no gradient and stay dead); LeakyReLU under the same schedule keeps a gradient."""

from __future__ import annotations

from typing import Any

from torch import nn

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers, codes_note, plot_curves
from graddoctor.lab.measure import dead_fraction, evaluate, train

#: configuration -> (activation, negative slope)
CONFIGS: dict[str, tuple[str, float]] = {"relu": ("relu", 0.0), "leaky0.1": ("leaky_relu", 0.1)}


def build(config: str, depth: int, width: int, seed: int) -> nn.Module:
    """zoo.mlp with He init and zero biases (a healthy start), the config's activation and slope."""
    act, slope = CONFIGS[config]
    net = zoo.mlp(depth=depth, width=width, in_features=64, out_features=10, activation=act,
                  init="he", seed=seed)
    for m in net.modules():
        if isinstance(m, nn.LeakyReLU):
            m.negative_slope = slope
    return net


class DyingReLU(Experiment):
    name = "dying-relu"
    claim = ("Units of a ReLU MLP that starts healthy (He init, zero bias, few units dead) die "
             "during training when the learning rate is too large, and stay dead; the same net "
             "with LeakyReLU(0.1), same schedule, keeps far fewer units silent.")
    source = ("Maas, Hannun & Ng 2013 (leaky ReLU: a gradient for inactive units); Karpathy, "
              "CS231n notes ('as much as 40% of your network can be dead' with a high learning "
              "rate); Lu et al. 2019 (Dying ReLU)")
    setup = ("zoo.mlp(depth=4, width=64, init='he', bias 0) on digits, Adam lr 0.1 (too large; "
             "0.001 is the usual value), batch 32, 400 steps. Dead = a hidden unit whose input is "
             "<= 0 on every training sample (full training set, eval mode), measured at init "
             "and after training; graddoctor.watch's dead-relu finding reported beside it. For "
             "LeakyReLU 'dead' means never positive: such units still get a 0.1 gradient.")
    scaled = "none needed: digits and a 4-layer MLP; the papers give no single dataset number."
    can_fail = ("if a large learning rate did not kill units, the ReLU net's dead fraction "
                "after training would stay near its init value (< 10%) and miss the 50% bar; if "
                "LeakyReLU were equally affected, the relu-minus-leaky gap would be < 0.3.")
    cost_s = 11.0
    quick = {"depth": 4, "width": 64, "steps": 400, "lr": 0.1, "batch": 32}
    full = {"depth": 4, "width": 128, "steps": 2000, "lr": 0.1, "batch": 32}
    checks = [
        Check("dead_init_relu", "<", 0.1, "ReLU: dead units at init (healthy start)",
              "— (the claim is about training, not init)"),
        Check("dead_relu", ">", 0.5, "ReLU: dead units after training at lr 0.1",
              "'as much as 40%' (CS231n, high lr)"),
        Check("dead_gap", ">", 0.3, "dead units ReLU minus LeakyReLU(0.1) after training",
              "LeakyReLU units keep a gradient (Maas et al.)"),
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
            out[f"dead_watch_{cfg}"] = r["watch"]["dead_frac"]
            out[f"dead_{cfg}"] = dead_fraction(net, d.x_train)
            out[f"acc_{cfg}"] = evaluate(net, d.x_test, d.y_test)["acc"]
            out[f"curve_{cfg}"] = r["evals"]
            out[f"codes_{cfg}"] = r["watch"]["codes"]
        out["dead_gap"] = out["dead_relu"] - out["dead_leaky0.1"]
        return out

    def notes(self, runs: list[Numbers]) -> list[str]:
        return [codes_note(runs, list(CONFIGS), "graddoctor.watch")]

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        import numpy as np

        ax1, ax2 = fig.subplots(1, 2)
        x = np.arange(len(CONFIGS))
        for k, (key, label) in enumerate((("dead_init", "at init"), ("dead", "after (full data)"),
                                          ("dead_watch", "after (watch window)"))):
            v = np.array([[r[f"{key}_{c}"] or 0.0 for c in CONFIGS] for r in runs])
            ax1.bar(x + (k - 1) * 0.27, v.mean(0), 0.27, yerr=v.std(0), label=label)
        ax1.set_xticks(x, list(CONFIGS), fontsize=7)
        ax1.set(ylabel="dead unit fraction", title="dead units, Adam lr 0.1")
        ax1.legend(fontsize=6)
        plot_curves(ax2, runs, CONFIGS)
        ax2.set(xlabel="step", ylabel="test accuracy", title="training")
        ax2.legend(fontsize=6)
