"""BatchNorm with tiny batches: its batch statistics are noise, so it trains worse than
GroupNorm/LayerNorm, whose statistics do not depend on the batch."""

from __future__ import annotations

from typing import Any

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers, plot_curves
from graddoctor.lab.measure import evaluate, train

NORMS = ("batch", "group", "layer", "none")


class SmallBatchNorm(Experiment):
    name = "small-batch-norm"
    claim = ("At batch size 2, an MLP with BatchNorm reaches a much lower test accuracy than "
             "the same MLP with GroupNorm or LayerNorm.")
    source = "Wu & He 2018 (Group Normalization), Fig. 1 (BN error rises as the batch shrinks)"
    setup = ("zoo.mlp(depth=4, width=64, relu, He init, norm=batch|group(8 groups)|layer|none) "
             "on digits; batch size 2, SGD momentum 0.9, lr 0.01, same budget; test accuracy "
             "in eval mode (BN uses its running statistics, as at deployment).")
    quick = {"depth": 4, "width": 64, "steps": 1000, "lr": 0.01, "batch": 2}
    full = {"depth": 6, "width": 128, "steps": 10000, "lr": 0.01, "batch": 2}
    checks = [
        Check("gap", ">=", 0.1, "test accuracy min(GroupNorm, LayerNorm) minus BatchNorm",
              "BN worse at batch 2 (GN: 10.6% lower error than BN at batch 2)"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        d = data.load("digits", seed=seed)
        out: Numbers = {}
        for norm in NORMS:
            net = zoo.mlp(depth=s["depth"], width=s["width"], in_features=64, out_features=10,
                          activation="relu", init="he", norm=norm, seed=seed)
            r = train(net, d, steps=s["steps"], lr=s["lr"], batch_size=s["batch"],
                      optimizer="momentum", seed=seed, eval_every=max(1, s["steps"] // 20))
            out[f"acc_{norm}"] = evaluate(net, d.x_test, d.y_test)["acc"]
            out[f"curve_{norm}"] = r["evals"]
        out["gap"] = min(out["acc_group"], out["acc_layer"]) - out["acc_batch"]
        return out

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        ax = fig.subplots()
        plot_curves(ax, runs, NORMS, label="{} norm")
        ax.set(xlabel="step (batch size 2)", ylabel="test accuracy", ylim=(0, 1),
               title="digits MLP, batch 2")
        ax.legend(fontsize=7)
