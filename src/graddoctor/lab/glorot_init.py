"""Glorot & Bengio's Table 1 in small: normalised init rescues tanh; sigmoid is worst."""

from __future__ import annotations

from typing import Any

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers, plot_curves
from graddoctor.lab.measure import evaluate, train

#: configuration -> (activation, init); "uniform" is Glorot's standard U[-1/sqrt(n), 1/sqrt(n)]
CONFIGS: dict[str, tuple[str, str]] = {
    "sigmoid": ("sigmoid", "uniform"), "tanh": ("tanh", "uniform"), "tanh-N": ("tanh", "xavier"),
}


class GlorotInit(Experiment):
    name = "glorot-init"
    claim = ("With 5 hidden layers and plain SGD, tanh with the normalised (Xavier) init "
             "reaches a lower test error than tanh with the standard init; sigmoid with the "
             "standard init is worst.")
    source = ("Glorot & Bengio 2010, Table 1 (MNIST test error: sigmoid 2.21%, tanh 1.76%, "
              "tanh-N 1.64%: these three numbers not confirmed against the paper here)")
    setup = ("zoo.mlp(depth=6, width=64) (5 hidden layers) on MNIST-1D, biases 0; standard "
             "init U[-1/sqrt(n), 1/sqrt(n)] vs normalised U with Var = 2/(n_in+n_out); plain "
             "SGD lr 0.1, batch 32, 2500 steps (~20 epochs; tanh-N's test accuracy has "
             "plateaued by then, tanh-standard's is still rising), same budget for all; test "
             "error at the end.")
    scaled = ("the paper trains 1000-unit layers on MNIST to convergence (early-stopped on "
              "validation); here 64 units on MNIST-1D (4000 training samples, 40 features) for "
              "2500 steps. Same unit (test error, points), harder task: MNIST-1D MLPs top out "
              "near 60% accuracy, so our errors and gaps are far larger than MNIST's; and "
              "stopping at a fixed budget measures speed of training as much as the end point.")
    can_fail = ("if the normalised init did not help tanh, the tanh-N minus tanh error gap would "
                "be <= 0 on some seed; if sigmoid trained as well as tanh, the sigmoid gap "
                "would be <= 0.")
    cost_s = 52.0
    quick = {"depth": 6, "width": 64, "steps": 2500, "lr": 0.1, "batch": 32}
    full = {"depth": 6, "width": 256, "steps": 20000, "lr": 0.1, "batch": 32}
    checks = [
        Check("gap_tanh_minus_tanhN", ">", 0.0, "test error tanh (standard) minus tanh-N",
              "+0.12 pts (1.76 - 1.64, MNIST; not confirmed)"),
        Check("gap_sigmoid_minus_worst_tanh", ">", 0.0,
              "test error sigmoid minus max(tanh, tanh-N)", "+0.45 pts (2.21 - 1.76, MNIST; not confirmed)"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        d = data.load("mnist1d", seed=seed)
        out: Numbers = {}
        for cfg, (act, init) in CONFIGS.items():
            net = zoo.mlp(depth=s["depth"], width=s["width"], in_features=d.x_train.shape[1],
                          out_features=10, activation=act, init=init, seed=seed)
            r = train(net, d, steps=s["steps"], lr=s["lr"], batch_size=s["batch"], seed=seed,
                      eval_every=max(1, s["steps"] // 10))
            out[f"err_{cfg}"] = 1 - evaluate(net, d.x_test, d.y_test)["acc"]
            out[f"train_err_{cfg}"] = 1 - evaluate(net, d.x_train, d.y_train)["acc"]
            out[f"curve_{cfg}"] = [[st, 1 - a] for st, a in r["evals"]]
        out["gap_tanh_minus_tanhN"] = out["err_tanh"] - out["err_tanh-N"]
        out["gap_sigmoid_minus_worst_tanh"] = out["err_sigmoid"] - max(out["err_tanh"], out["err_tanh-N"])
        return out

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        ax = fig.subplots()
        plot_curves(ax, runs, CONFIGS)
        ax.set(xlabel="SGD step", ylabel="test error", ylim=(0, 1), title="MNIST-1D, 5 hidden layers")
        ax.legend(fontsize=7)
