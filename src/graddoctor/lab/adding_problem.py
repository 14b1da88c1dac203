"""The adding problem: a vanilla tanh RNN cannot carry two numbers across T steps; LSTM/GRU can."""

from __future__ import annotations

from typing import Any

import torch

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers, plot_curves
from graddoctor.lab.measure import train

CELLS = ("rnn", "lstm", "gru")


class AddingProblem(Experiment):
    name = "adding-problem"
    claim = ("On the adding problem a tanh RNN stays near the constant-prediction baseline "
             "(MSE 0.167) while an LSTM solves it (Hochreiter's criterion: error < 0.04).")
    source = ("Hochreiter & Schmidhuber 1997, Exp. 4; Arjovsky, Shah & Bengio 2016 (adding "
              "problem, baseline MSE 0.167)")
    setup = ("data.load('adding', T) (Arjovsky variant: values U[0,1], one marker per half); "
             "zoo.rnn(cell, hidden) read out at the last step; Adam, MSE loss; test MSE and the "
             "fraction of test sequences with |error| < 0.04.")
    quick = {"T": 50, "hidden": 32, "steps": 2000, "lr": 0.01, "batch": 64, "n_train": 5000,
             "n_test": 500}
    full = {"T": 100, "hidden": 64, "steps": 10000, "lr": 0.003, "batch": 64, "n_train": 20000,
            "n_test": 1000}
    checks = [
        Check("mse_rnn", ">", 0.10, "tanh RNN test MSE stays above 0.10", "baseline 0.167; RNN fails"),
        Check("mse_lstm", "<", 0.02, "LSTM test MSE", "< 0.02 (solved)"),
        Check("within_lstm", ">=", 0.8, "LSTM: fraction of sequences with |error| < 0.04",
              ">= 80% (H&S criterion)"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        d = data.load("adding", seed=seed, T=s["T"], n_train=s["n_train"], n_test=s["n_test"])
        out: Numbers = {"constant_mse": d.info["constant_mse"]}
        for cell in CELLS:
            net = zoo.rnn(cell, input_size=2, hidden_size=s["hidden"], seed=seed)
            r = train(net, d, steps=s["steps"], lr=s["lr"], batch_size=s["batch"],
                      optimizer="adam", task="regression", seed=seed,
                      eval_every=max(1, s["steps"] // 20))
            with torch.no_grad():
                err = (net(d.x_test) - d.y_test).abs()
            out[f"mse_{cell}"] = float((err ** 2).mean())
            out[f"within_{cell}"] = float((err < 0.04).float().mean())
            out[f"curve_{cell}"] = r["evals"]
        return out

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        ax = fig.subplots()
        plot_curves(ax, runs, CELLS)
        ax.axhline(1 / 6, color="k", ls=":", label="constant baseline 0.167")
        ax.axhline(0.02, color="gray", ls="--", label="0.02")
        ax.set(yscale="log", xlabel="step", ylabel="test MSE", title=f"adding problem, T={settings['T']}")
        ax.legend(fontsize=7)
