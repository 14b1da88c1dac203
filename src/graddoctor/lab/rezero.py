"""ReZero: a residual branch with a zero-initialised gain trains a 64-layer MLP that the
vanilla (non-residual) net cannot, and that a plain residual net blows up."""

from __future__ import annotations

import math
from typing import Any

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers, codes_note
from graddoctor.lab.measure import evaluate, train

STYLES = {"vanilla": None, "residual": "plain", "rezero": "rezero"}


class ReZero(Experiment):
    name = "rezero"
    claim = ("In a 64-layer, 128-wide ReLU MLP with Xavier init, ReZero (x + alpha*F(x), "
             "alpha=0 at init) trains, while the same net as a plain residual net (x + F(x)) "
             "blows up and the vanilla (non-residual) net stalls at chance loss.")
    source = ("Bachlechner et al. 2020 (ReZero is All You Need), Sec. 3 (a residual signal "
              "grows like (1+w)^L at init) and Fig. 3 (deep fully connected nets: vanilla, "
              "residual, residual + norm, ReZero)")
    scaled = ("the paper trains 32-layer FC nets on CIFAR-10 for many epochs; here 64 layers on "
              "digits for 150 steps (2 CPU cores). The paper reports convergence speed in "
              "epochs, we report the final training loss ratio: only the ordering is comparable.")
    can_fail = ("if the zero-initialised gain did not matter, ReZero would blow up like the "
                "plain residual net (ratio ~1) or stall like the vanilla one (ratio ~1); each "
                "ratio must be ≤ 0.5 on every seed.")
    setup = ("zoo.mlp(depth=64, width=128, activation='relu', init='xavier', residual=None|"
             "'plain'|'rezero') on digits; Adam lr 1e-3, batch 32, same budget; training loss "
             "on the full training set at the end (inf if it went non-finite).")
    cost_s = 67.0
    quick = {"depth": 64, "width": 128, "steps": 150, "lr": 1e-3, "batch": 32}
    full = {"depth": 64, "width": 128, "steps": 2000, "lr": 1e-3, "batch": 128}
    checks = [
        Check("loss_ratio_residual", "<=", 0.5, "final train loss ReZero / plain residual",
              "ReZero: '1,500% faster convergence for deep fully connected networks' (abstract; "
              "against which baseline: not confirmed)"),
        Check("loss_ratio", "<=", 0.5, "final train loss ReZero / vanilla",
              "vanilla deep FC net trains slowest (Fig. 3, not confirmed)"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        d = data.load("digits", seed=seed)
        out: Numbers = {}
        for style, res in STYLES.items():
            net = zoo.mlp(depth=s["depth"], width=s["width"], in_features=64, out_features=10,
                          activation="relu", init="xavier", residual=res, seed=seed)
            r = train(net, d, steps=s["steps"], lr=s["lr"], batch_size=s["batch"],
                      optimizer="adam", seed=seed, watch=True)
            out[f"codes_{style}"] = r["watch"]["codes"]
            loss = evaluate(net, d.x_train, d.y_train)["loss"]
            out[f"final_loss_{style}"] = loss if math.isfinite(loss) else float("inf")
            out[f"losses_{style}"] = r["losses"]
        out["loss_ratio"] = out["final_loss_rezero"] / out["final_loss_vanilla"]
        out["loss_ratio_residual"] = out["final_loss_rezero"] / out["final_loss_residual"]
        return out

    def notes(self, runs: list[Numbers]) -> list[str]:
        return [codes_note(runs, list(STYLES))]

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        ax = fig.subplots()
        for i, style in enumerate(STYLES):
            for j, r in enumerate(runs):
                ax.plot(r[f"losses_{style}"], color=f"C{i}", alpha=0.7,
                        label=style if j == 0 else None)
        ax.set(yscale="log", xlabel="step", ylabel="minibatch train loss",
               title=f"{settings['depth']}x{settings['width']} ReLU MLP, Xavier init")
        ax.legend(fontsize=7)
