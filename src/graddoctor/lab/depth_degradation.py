"""The degradation problem: deeper plain nets train worse; residual nets of the same depth do not."""

from __future__ import annotations

from typing import Any

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers
from graddoctor.lab.measure import evaluate, train

STYLES = ("plain", "residual")


class DepthDegradation(Experiment):
    name = "depth-degradation"
    claim = ("With batch normalisation and He init (so gradients do not simply vanish at init), "
             "deeper plain nets reach a higher training error than shallower ones, while "
             "residual nets of the same depths do not.")
    source = "He et al. 2015 (ResNet), Fig. 1 and Fig. 6 (CIFAR-10 plain vs residual by depth)"
    setup = ("zoo.mlp(width=32, activation='relu', init='he', norm='batch', residual=None|"
             "'plain') on MNIST-1D at several depths; Adam lr 1e-3, batch 64, same budget for "
             "all; training error (eval mode, full training set) at the end.")
    quick = {"depths": [4, 16, 48], "width": 32, "steps": 500, "lr": 1e-3, "batch": 64}
    full = {"depths": [4, 8, 16, 32, 56, 110], "width": 64, "steps": 5000, "lr": 1e-3,
            "batch": 128}
    checks = [
        Check("plain_degradation", ">", 0.05,
              "plain: train error deepest minus shallowest", "> 0 (Fig. 6 left: 56 > 20 layers)"),
        Check("residual_degradation", "<=", 0.05,
              "residual: train error deepest minus shallowest (0.05 noise allowance)",
              "<= 0 (Fig. 6 middle: deeper is better)"),
        Check("deep_gap", ">", 0.1, "deepest: plain minus residual train error",
              "residual far better at depth"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        d = data.load("mnist1d", seed=seed)
        out: Numbers = {}
        for style in STYLES:
            errs = []
            for depth in s["depths"]:
                net = zoo.mlp(depth=depth, width=s["width"], in_features=d.x_train.shape[1],
                              out_features=10, activation="relu", init="he", norm="batch",
                              residual=None if style == "plain" else "plain", seed=seed)
                train(net, d, steps=s["steps"], lr=s["lr"], batch_size=s["batch"],
                      optimizer="adam", seed=seed)
                errs.append(1 - evaluate(net, d.x_train, d.y_train)["acc"])
            out[f"train_err_{style}"] = errs
            out[f"{style}_degradation"] = errs[-1] - errs[0]
        out["deep_gap"] = out["train_err_plain"][-1] - out["train_err_residual"][-1]
        return out

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        import numpy as np

        ax = fig.subplots()
        for i, style in enumerate(STYLES):
            errs = np.array([r[f"train_err_{style}"] for r in runs])
            ax.errorbar(settings["depths"], errs.mean(0), yerr=errs.std(0), marker="o",
                        color=f"C{i}", label=style, capsize=3)
        ax.set(xscale="log", xlabel="depth (Linear layers)", ylabel="training error",
               title="MNIST-1D, BN + He init, same budget")
        ax.set_xticks(settings["depths"], [str(x) for x in settings["depths"]])
        ax.minorticks_off()
        ax.legend(fontsize=7)
