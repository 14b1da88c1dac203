"""The adding problem: a vanilla tanh RNN cannot carry two numbers across T steps; an LSTM can."""

from __future__ import annotations

from typing import Any

import torch

from graddoctor import data
from graddoctor.lab.base import Check, Experiment, Numbers, plot_curves
from graddoctor.lab.recurrent import fit_cell


class AddingProblem(Experiment):
    name = "adding-problem"
    claim = ("On the adding problem at T=100 a tanh RNN stays at the predict-the-mean "
             "baseline (MSE 0.167; using only the second number, up to 50 steps back, would give "
             "0.083: it learns to use neither) while an LSTM, same optimizer and step budget, solves it: nearly every test "
             "sequence within Hochreiter & Schmidhuber's tolerance.")
    source = ("Hochreiter & Schmidhuber 1997, Exp. 4 (adding problem, Table 7); Arjovsky, Shah "
              "& Bengio 2016 (the variant used here, baseline MSE 0.167); Tallec & Ollivier "
              "2018 (chrono init)")
    setup = ("data.load('adding', T=100) (Arjovsky variant: values U[0,1], one marker in each "
             "half, target the sum in [0, 2]); zoo.rnn(cell, hidden 32) read out at the last "
             "step; Adam (gradient norm clipped at 1), batch 64, MSE loss, the same step budget for "
             "both cells; a run stops "
             "early only on its own training loss (mean of the last 20 minibatch MSEs <= "
             "stop_loss = 1e-3: RMS error 0.032 on our sums, 0.016 on H&S's [0, 1] scale, "
             "where they stop at an average error of 0.01 and 2000 consecutive correct "
             "sequences), never on the test set; test MSE and the fraction of test sequences within "
             "the tolerance at the end. The LSTM's gates start with chrono init (forget bias "
             "log U[1, T-1], input bias its negative); the tanh RNN's learning rate is the best "
             "of those tried (rnn_lrs).")
    scaled = ("H&S train online (1997 LSTM with 2 blocks of 2 cells) until 2000 "
              "consecutive training sequences are correct (74,000 sequences at T=100, as quoted "
              "in later reproductions; Table 7 itself not confirmed here); here Adam minibatches "
              "of 64 on a 32-unit PyTorch LSTM for at most `steps` x 64 sequences. Fixed T=100 "
              "instead of lengths T..1.1T. H&S's target is 0.5 + (x1 + x2)/4 with x in [-1, 1] "
              "and a sequence counts as correct if |error| < 0.04: 4% of the target range; our "
              "sums span [0, 2], so the same tolerance is 0.08 (the strict 0.04 is reported "
              "beside it). The tanh RNN's learning rate, tried while designing: Adam 0.01, 1200 "
              "steps (seeds 0-2): MSE 0.166 [0.149, 0.178] against baselines 0.149-0.177; with "
              "clipping at 1, 800 steps (seed 0): lr 0.02 (the LSTM's) 0.1493, lr 0.003 0.1491 "
              "against 0.1492; lr 0.001 without clipping 0.1488; all at the baseline, so the "
              "quick run uses 0.001 and the full run tries three. LSTM init, tried while designing (seeds "
              "0-1): forget bias 1 without clipping solves it after ~750-800 steps, chrono init "
              "after ~250-400 (the breakthrough from the baseline), hence chrono.")
    can_fail = ("if the LSTM could not carry the first number over 50-100 steps its MSE would "
                "stay near 1/12 = 0.083 (remembering only the recent number) or the baseline "
                "0.167, far above 0.01, and most test sequences would miss the tolerance; if the "
                "tanh RNN could carry it, its MSE would fall below 0.10 at its best learning "
                "rate.")
    quick = {"T": 100, "hidden": 32, "steps": 800, "lr": 0.02, "rnn_lrs": (0.001,), "batch": 64,
             "clip": 1.0, "n_train": 5000, "n_test": 1000, "gate_init": "chrono",
             "forget_bias": 0.0, "stop_loss": 1e-3, "tolerance": 0.08}
    full = {"T": 100, "hidden": 32, "steps": 3000, "lr": 0.02, "rnn_lrs": (0.001, 0.003, 0.02),
            "batch": 64, "clip": 1.0, "n_train": 20000, "n_test": 2560, "gate_init": "chrono",
            "forget_bias": 0.0, "stop_loss": 5e-4, "tolerance": 0.08}
    checks = [
        Check("mse_rnn", ">", 0.10, "tanh RNN test MSE at its best lr (baseline 0.167; "
              "remembering only the recent number: 0.083)",
              "RNN (BPTT/RTRL) fails at minimal lags of 50+ (Sec. 5; no number)"),
        Check("mse_lstm", "<", 0.01, "LSTM test MSE", "— (H&S count errors, not MSE)"),
        Check("within_lstm", ">=", 0.95,
              "LSTM: fraction of test sequences within H&S's tolerance (0.08 on our [0, 2] sums)",
              "every sequence of the last 2000 training ones (stop criterion); test: 1 of 2560 "
              "wrong (not confirmed)"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        d = data.load("adding", seed=seed, T=s["T"], n_train=s["n_train"], n_test=s["n_test"])
        out: Numbers = {"constant_mse": d.info["constant_mse"]}
        rnn_mses = []
        for lr in s["rnn_lrs"]:
            net, r = fit_cell("rnn", d, {**s, "gate_init": "default"}, seed, lr)
            rnn_mses.append(_errors(net, d, s["tolerance"])[0])
            if len(rnn_mses) == 1 or rnn_mses[-1] < min(rnn_mses[:-1]):
                out.update(steps_rnn=r["steps_run"], curve_rnn=r["evals"], lr_rnn=lr)
        out["mse_rnn"] = min(rnn_mses)
        out["mse_rnn_per_lr"] = rnn_mses
        net, r = fit_cell("lstm", d, s, seed, s["lr"])
        out["mse_lstm"], out["within_lstm"], out["within_strict_lstm"] = _errors(net, d, s["tolerance"])
        out.update(steps_lstm=r["steps_run"], curve_lstm=r["evals"], cpu_lstm=r["cpu_s"],
                   sequences_lstm=r["steps_run"] * s["batch"])
        return out

    def notes(self, runs: list[Numbers]) -> list[str]:
        steps = [r["steps_lstm"] for r in runs]
        seqs = [r["sequences_lstm"] for r in runs]
        strict = [round(r["within_strict_lstm"], 3) for r in runs]
        return [f"LSTM steps to its training-loss stop per seed: {steps} (= {seqs} training "
                f"sequences; H&S: 74,000 at T=100)",
                f"LSTM fraction within the strict 0.04 on our [0, 2] sums (twice H&S's "
                f"tolerance) per seed: {strict}",
                "tanh RNN test MSE per learning rate tried (per seed): "
                + "; ".join(str([round(m, 4) for m in r["mse_rnn_per_lr"]]) for r in runs)]

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        ax = fig.subplots()
        plot_curves(ax, runs, ("rnn", "lstm"))
        ax.axhline(1 / 6, color="k", ls=":", label="constant baseline 0.167")
        ax.axhline(1 / 12, color="gray", ls="-.", label="recent number only 0.083")
        ax.axhline(0.01, color="gray", ls="--", label="0.01")
        ax.set(yscale="log", xlabel="step", ylabel="test MSE (monitor only)",
               title=f"adding problem, T={settings['T']}")
        ax.legend(fontsize=7)


@torch.no_grad()
def _errors(net: torch.nn.Module, d: Any, tolerance: float) -> tuple[float, float, float]:
    """Test MSE, the fraction of test sequences with |error| < ``tolerance`` and < 0.04."""
    net.eval()
    err = (net(d.x_test) - d.y_test).abs()
    net.train()
    return (float((err ** 2).mean()), float((err < tolerance).float().mean()),
            float((err < 0.04).float().mean()))
