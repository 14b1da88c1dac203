"""Batch normalisation makes sigmoid MLPs train fast, and trainable at depth 20."""

from __future__ import annotations

from typing import Any

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers, codes_note
from graddoctor.lab.measure import evaluate, train

NORMS = ("none", "batch")


def steps_to(curve: list[list[float]], target: float, budget: int) -> int:
    """First evaluated step whose accuracy reaches ``target`` (``budget`` if none does).

    Example:
        >>> steps_to([[10, 0.5], [20, 0.95]], 0.9, 100), steps_to([[10, 0.5]], 0.9, 100)
        (20, 100)
    """
    return next((int(s) for s, a in curve if a >= target), budget)


class BatchNormSigmoid(Experiment):
    name = "batchnorm-sigmoid"
    claim = ("Batch normalisation lets a sigmoid MLP reach a target accuracy in far fewer "
             "steps, and train at depth 20 where the plain sigmoid net does not learn at all.")
    source = ("Ioffe & Szegedy 2015, Sec. 4.1 / Fig. 1 (MNIST, 3 hidden sigmoid layers); BN "
              "makes saturating nonlinearities trainable (Sec. 3)")
    setup = ("data.load('digits') (1437 train / 360 test); zoo.mlp(width=64, activation="
             "'sigmoid', norm='none'|'batch'), default init; SGD momentum 0.9, lr 0.1, batch 32. "
             "(a) depth 4 (3 hidden): steps until test accuracy >= 90% (evaluated every 10 "
             "steps; a run that never gets there counts its full budget, which only favours "
             "the baseline); (b) depth 20: test accuracy after a fixed budget.")
    scaled = ("Ioffe & Szegedy's MNIST net has 3 hidden sigmoid layers (Fig. 1; 100 units "
              "each: not confirmed) and their deep sigmoid net is Inception on ImageNet; here "
              "3 x 64 on digits, and a 20-layer 64-wide sigmoid MLP stands in for Inception: "
              "steps and accuracies are in our units, only which side of each bar compares.")
    can_fail = ("if BN did not speed up training, BN would need more than half the plain net's "
                "steps to 90%; if the 20-layer plain sigmoid net could learn, its test accuracy "
                "would exceed 0.2 (chance 0.1); if BN did not make it trainable, the BN net "
                "would miss 0.9.")
    cost_s = 81.0
    quick = {"width": 64, "lr": 0.1, "batch": 32, "shallow_depth": 4, "shallow_budget": 4000,
             "deep_depth": 20, "deep_steps": 1000, "target": 0.9}
    full = {"width": 100, "lr": 0.1, "batch": 32, "shallow_depth": 4, "shallow_budget": 20000,
            "deep_depth": 20, "deep_steps": 5000, "target": 0.9}
    checks = [
        Check("step_ratio", "<=", 0.5, "steps to 90% test acc: BN / plain (depth 4)",
              "BN-x5: 1/14 of Inception's steps to the same accuracy (abstract); BN-Baseline "
              "< 1/2 (Sec. 4.2.2, not confirmed)"),
        Check("deep_acc_none", "<=", 0.2, "depth 20 plain sigmoid: test accuracy",
              "Inception + sigmoid without BN: never above 0.1% accuracy (Sec. 4.2.2, not "
              "confirmed)"),
        Check("deep_acc_batch", ">=", 0.9, "depth 20 sigmoid + BN: test accuracy", "BN-x5-Sigmoid: 69.8% top-1, ImageNet (not confirmed)"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        d = data.load("digits", seed=seed)
        out: Numbers = {}
        for norm in NORMS:
            net = zoo.mlp(depth=s["shallow_depth"], width=s["width"], in_features=64,
                          out_features=10, activation="sigmoid", norm=norm, seed=seed)
            r = train(net, d, steps=s["shallow_budget"], lr=s["lr"], batch_size=s["batch"],
                      optimizer="momentum", seed=seed, eval_every=10, stop_at_acc=s["target"])
            out[f"steps_{norm}"] = steps_to(r["evals"], s["target"], s["shallow_budget"])
            out[f"curve_{norm}"] = r["evals"]
            net = zoo.mlp(depth=s["deep_depth"], width=s["width"], in_features=64,
                          out_features=10, activation="sigmoid", norm=norm, seed=seed)
            r = train(net, d, steps=s["deep_steps"], lr=s["lr"], batch_size=s["batch"],
                      optimizer="momentum", seed=seed, eval_every=max(1, s["deep_steps"] // 20),
                      watch=True)
            out[f"deep_acc_{norm}"] = evaluate(net, d.x_test, d.y_test)["acc"]
            out[f"codes_deep-{norm}"] = r["watch"]["codes"]
            out[f"deep_curve_{norm}"] = r["evals"]
        out["step_ratio"] = out["steps_batch"] / out["steps_none"]
        return out

    def notes(self, runs: list[Numbers]) -> list[str]:
        return [codes_note(runs, [f"deep-{n}" for n in NORMS])]

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        axes = fig.subplots(1, 2)
        for ax, key, depth in ((axes[0], "curve", settings["shallow_depth"]),
                               (axes[1], "deep_curve", settings["deep_depth"])):
            for i, norm in enumerate(NORMS):
                for j, r in enumerate(runs):
                    steps, acc = zip(*r[f"{key}_{norm}"])
                    ax.plot(steps, acc, color=f"C{i}", alpha=0.8,
                            label=("sigmoid" if norm == "none" else "sigmoid + BN") if j == 0 else None)
            ax.axhline(settings["target"], color="k", ls=":")
            ax.set(xscale="log", xlabel="step", ylabel="test accuracy", title=f"depth {depth}")
            ax.legend(fontsize=7)
