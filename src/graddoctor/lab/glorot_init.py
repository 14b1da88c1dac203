"""Glorot & Bengio's Table 1 in small: normalised init rescues tanh; sigmoid is worst."""

from __future__ import annotations

from typing import Any

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers, codes_note, plot_curves
from graddoctor.lab.measure import evaluate, train

#: configuration -> (activation, init); "uniform" is Glorot's standard U[-1/sqrt(n), 1/sqrt(n)]
CONFIGS: dict[str, tuple[str, str]] = {
    "sigmoid": ("sigmoid", "uniform"), "tanh": ("tanh", "uniform"), "tanh-N": ("tanh", "xavier"),
}


class GlorotInit(Experiment):
    name = "glorot-init"
    claim = ("With 5 hidden layers and plain SGD, tanh with the normalised (Xavier) init "
             "reaches a better test accuracy than tanh with the standard init; sigmoid is worst.")
    source = "Glorot & Bengio 2010, Table 1 (test error by activation and init)"
    setup = ("zoo.mlp(depth=6, width=64) (5 hidden layers) on MNIST-1D, biases 0; standard "
             "init U[-1/sqrt(n), 1/sqrt(n)] vs normalised U with Var = 2/(n_in+n_out); plain "
             "SGD, same budget for all; test accuracy at the end.")
    quick = {"depth": 6, "width": 64, "steps": 1000, "lr": 0.1, "batch": 32}
    full = {"depth": 6, "width": 256, "steps": 10000, "lr": 0.1, "batch": 32}
    checks = [
        Check("gap_tanhN_minus_tanh", ">=", 0.03, "test accuracy tanh-N minus tanh (standard)",
              "tanh-N better (Table 1); target >= 3 points"),
        Check("gap_worst_tanh_minus_sigmoid", ">", 0.0,
              "min(tanh, tanh-N) minus sigmoid test accuracy", "sigmoid worst (Table 1)"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        d = data.load("mnist1d", seed=seed)
        out: Numbers = {}
        for cfg, (act, init) in CONFIGS.items():
            net = zoo.mlp(depth=s["depth"], width=s["width"], in_features=d.x_train.shape[1],
                          out_features=10, activation=act, init=init, seed=seed)
            r = train(net, d, steps=s["steps"], lr=s["lr"], batch_size=s["batch"], seed=seed,
                      eval_every=max(1, s["steps"] // 10), watch=True)
            out[f"codes_{cfg}"] = r["watch"]["codes"]
            out[f"acc_{cfg}"] = evaluate(net, d.x_test, d.y_test)["acc"]
            out[f"curve_{cfg}"] = r["evals"]
        out["gap_tanhN_minus_tanh"] = out["acc_tanh-N"] - out["acc_tanh"]
        out["gap_worst_tanh_minus_sigmoid"] = min(out["acc_tanh"], out["acc_tanh-N"]) - out["acc_sigmoid"]
        return out

    def notes(self, runs: list[Numbers]) -> list[str]:
        return [codes_note(runs, list(CONFIGS))]

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        ax = fig.subplots()
        plot_curves(ax, runs, CONFIGS)
        ax.set(xlabel="SGD step", ylabel="test accuracy", title="MNIST-1D, 5 hidden layers")
        ax.legend(fontsize=7)
