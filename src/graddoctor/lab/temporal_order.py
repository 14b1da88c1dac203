"""Temporal order: classify the order of two symbols far apart in a noisy sequence."""

from __future__ import annotations

from typing import Any

import torch

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers, plot_curves
from graddoctor.lab.measure import evaluate, train

CELLS = ("rnn", "lstm")


def set_forget_bias(net: torch.nn.Module, value: float) -> None:
    """Set the forget-gate bias of every nn.LSTM in ``net`` (input-side bias, gate 2 of 4)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.LSTM):
                for name, p in m.named_parameters():
                    if name.startswith("bias_ih"):
                        h = p.shape[0] // 4
                        p[h:2 * h].fill_(value)


class TemporalOrder(Experiment):
    name = "temporal-order"
    claim = ("A vanilla tanh RNN cannot learn the order of two symbols separated by a long, noisy "
             "gap of T=100 steps (stays at chance, 0.25); an LSTM learns it.")
    source = "Hochreiter & Schmidhuber 1997, Exp. 6a (temporal order, T = 100-110)"
    setup = ("data.load('temporal-order', T=100) (8 one-hot symbols, X/Y at [0.1T, 0.2T] and "
             "[0.5T, 0.6T], 4 classes); zoo.rnn(cell, hidden 32) read out at the last step; Adam "
             "lr 0.01, batch 64, cross-entropy, same step budget for both; a run stops early only "
             "on its own training loss (mean of the last 20 minibatches <= 0.01), never on the "
             "test set; test accuracy at the end. The LSTM's forget-gate bias starts at 5 (gate "
             "~0.99 open: the 1997 LSTM had no forget gate, a constant error carousel; with "
             "PyTorch's 0 bias the memory fades like 0.5^t).")
    scaled = ("fixed T=100 instead of lengths drawn from 100-110; at most 1000 steps x 64 = "
              "64,000 training sequences (H&S: 31,390 on average until their stop criterion).")
    can_fail = ("if the LSTM could not bridge the 100-step gap it would stay near 0.25 and miss "
                "0.95; if the RNN could, it would exceed 0.35.")
    quick = {"T": 100, "hidden": 32, "steps": 1000, "lr": 0.01, "batch": 64, "n_train": 5000,
             "n_test": 500, "forget_bias": 5.0, "stop_loss": 0.01}
    full = {"T": 100, "hidden": 64, "steps": 10000, "lr": 0.003, "batch": 64, "n_train": 20000,
            "n_test": 2560, "forget_bias": 5.0, "stop_loss": 0.001}
    checks = [
        Check("acc_rnn", "<=", 0.35, "tanh RNN test accuracy (chance 0.25)",
              "RNN algorithms fail at this lag (Sec. 5)"),
        Check("acc_lstm", ">=", 0.95, "LSTM test accuracy",
              "solved: 31,390 training sequences on average (Exp. 6a)"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        d = data.load("temporal-order", seed=seed, T=s["T"], n_train=s["n_train"],
                      n_test=s["n_test"])
        out: Numbers = {}
        for cell in CELLS:
            net = zoo.rnn(cell, input_size=d.x_train.shape[-1], hidden_size=s["hidden"],
                          output_size=4, task="classification", seed=seed)
            set_forget_bias(net, s["forget_bias"])
            r = train(net, d, steps=s["steps"], lr=s["lr"], batch_size=s["batch"],
                      optimizer="adam", seed=seed, eval_every=max(1, s["steps"] // 20),
                      stop_at_loss=s["stop_loss"])
            out[f"acc_{cell}"] = evaluate(net, d.x_test, d.y_test)["acc"]
            out[f"steps_{cell}"] = r["steps_run"]
            out[f"curve_{cell}"] = r["evals"]
        return out

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        ax = fig.subplots()
        plot_curves(ax, runs, CELLS)
        ax.axhline(0.25, color="k", ls=":", label="chance 0.25")
        ax.set(xlabel="step", ylabel="test accuracy (monitor only)", ylim=(0, 1.05),
               title=f"temporal order, T={settings['T']}")
        ax.legend(fontsize=7)
