"""Gradient clipping fixes exploding gradients, not vanishing ones."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers, codes_note
from graddoctor.lab.measure import train


def start_end(losses: list[float], k: int = 10) -> tuple[float, float]:
    """Mean of the first and of the last ``k`` losses (inf if the run went non-finite).

    Example:
        >>> start_end([4.0, 2.0, 1.0], k=1)
        (4.0, 1.0)
    """
    if not losses or not all(math.isfinite(v) for v in losses):
        return (losses[0] if losses else math.nan), math.inf
    return float(np.mean(losses[:k])), float(np.mean(losses[-k:]))


def exploding_rnn(seed: int, hidden: int, gain: float) -> torch.nn.Module:
    """A tanh RNN whose recurrent weights are N(0, gain^2 / hidden): gain > 1 explodes."""
    net = zoo.rnn("rnn", input_size=2, hidden_size=hidden, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.rnn.weight_hh_l0.normal_(0.0, gain / math.sqrt(hidden), generator=gen)
    return net


class Clipping(Experiment):
    name = "clipping"
    claim = ("Clipping the gradient norm tames an exploding RNN (without it SGD diverges; with "
             "it the RNN learns and beats the predict-the-mean baseline on test MSE) but leaves "
             "a vanishing 20-layer sigmoid MLP stuck.")
    source = ("Pascanu, Mikolov & Bengio 2013 (On the difficulty of training RNNs), Sec. 3.2 "
              "and Alg. 1")
    setup = ("(a) zoo.rnn('rnn', hidden 32) with recurrent weights N(0, 1.5^2/32) (spectral "
             "radius ~1.5: the exploding regime) on the adding problem (T=10), plain SGD lr 0.1, "
             "batch 32, with and without clip-norm 1; test MSE against the predict-the-mean "
             "baseline (the variance of the test targets, ~0.16); "
             "(b) zoo.mlp(depth=20, width=64, sigmoid, default init) on digits, SGD momentum "
             "lr 0.1 with clip-norm 1, watched by graddoctor.watch (per-layer gradient norms).")
    scaled = ("T=10 instead of Pascanu et al.'s 50-200: at T >= 50 a vanilla RNN does not beat "
              "the mean within our budget even when clipped, because of the vanishing gradient "
              "(see adding-problem), which clipping does not address. The paper's adding-problem "
              "success rates use its regulariser as well and longer runs: not comparable.")
    can_fail = ("if clipping did not tame the explosion, the clipped run would diverge too or end "
                "no better than the mean (ratio >= 0.9); if the RNN were not in the exploding "
                "regime, the unclipped run would not diverge; if clipping helped a vanishing "
                "gradient, the sigmoid MLP's loss would fall below 90% of its start.")
    cost_s = 15.0
    quick = {"T": 10, "hidden": 32, "gain": 1.5, "rnn_steps": 600, "rnn_lr": 0.1,
             "mlp_steps": 300, "mlp_lr": 0.1, "clip": 1.0}
    full = {"T": 20, "hidden": 64, "gain": 1.5, "rnn_steps": 3000, "rnn_lr": 0.1,
            "mlp_steps": 2000, "mlp_lr": 0.1, "clip": 1.0}
    checks = [
        Check("rnn_unclipped_diverged", ">=", 1.0,
              "exploding RNN without clipping: loss blows up (1) or not (0)",
              "SGD jumps off the 'cliff' (Sec. 3, Fig. 6)"),
        Check("rnn_clipped_mse_over_baseline", "<", 0.9,
              "same RNN with clip-norm 1: test MSE / predict-the-mean MSE",
              "clipping keeps SGD stable (Sec. 3.2, Alg. 1)"),
        Check("mlp_clipped_end_over_start", ">=", 0.9,
              "20-layer sigmoid MLP with clip-norm 1: final / initial loss",
              "stuck (clipping cannot raise a vanishing gradient)"),
        Check("mlp_log10_grad_ratio", "<", -6,
              "... its first/last layer gradient norm at the end (log10, graddoctor.watch)",
              "still vanishing"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        out: Numbers = {}
        d = data.load("adding", seed=seed, T=s["T"], n_train=2000, n_test=500)
        for clip in (None, s["clip"]):
            tag = "clipped" if clip else "unclipped"
            net = exploding_rnn(seed, s["hidden"], s["gain"])
            r = train(net, d, steps=s["rnn_steps"], lr=s["rnn_lr"], batch_size=32,
                      task="regression", seed=seed, clip=clip)
            start, end = start_end(r["losses"])
            out[f"rnn_{tag}_end_over_start"] = end / start
            with torch.no_grad():
                mse = float(((net(d.x_test) - d.y_test) ** 2).mean()) if math.isfinite(end) else math.inf
            out[f"rnn_{tag}_mse_over_baseline"] = mse / float(d.y_test.var(unbiased=False))
            out[f"rnn_{tag}_diverged"] = float(not math.isfinite(end) or end > start)
            out[f"rnn_{tag}_losses"] = r["losses"]
            out[f"rnn_{tag}_grad_norms"] = r["grad_norms"]
        d = data.load("digits", seed=seed)
        net = zoo.mlp(depth=20, width=64, in_features=64, out_features=10, activation="sigmoid",
                      seed=seed)
        r = train(net, d, steps=s["mlp_steps"], lr=s["mlp_lr"], optimizer="momentum",
                  batch_size=32, seed=seed, clip=s["clip"], watch=True)
        start, end = start_end(r["losses"])
        out["mlp_clipped_end_over_start"] = end / start
        out["mlp_clipped_losses"] = r["losses"]
        last = r["watch"]["grad_norm"][-1][1]
        out["mlp_log10_grad_ratio"] = math.log10(last[0] / last[-1])
        out["codes_sigmoid-mlp-clipped"] = r["watch"]["codes"]
        return out

    def notes(self, runs: list[Numbers]) -> list[str]:
        return [codes_note(runs, ["sigmoid-mlp-clipped"])]

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        ax1, ax2 = fig.subplots(1, 2)
        for j, r in enumerate(runs):
            for i, tag in enumerate(("unclipped", "clipped")):
                losses = np.array(r[f"rnn_{tag}_losses"], dtype=float)
                ax1.plot(np.minimum(losses, 1e6), color=f"C{i}", alpha=0.8,
                         label=f"RNN {tag}" if j == 0 else None)
                if not np.isfinite(losses[-1]):
                    ax1.plot(len(losses) - 1, 1e6, "x", color=f"C{i}")
            ax2.plot(r["mlp_clipped_losses"], color="C2", alpha=0.8,
                     label="sigmoid MLP, clipped" if j == 0 else None)
        ax1.set(yscale="log", xlabel="step", ylabel="train loss (x = non-finite)",
                title="exploding tanh RNN")
        ax2.set(xlabel="step", ylabel="train loss", title="vanishing 20-layer sigmoid MLP")
        ax1.legend(fontsize=7)
        ax2.legend(fontsize=7)
