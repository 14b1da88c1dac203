"""Post-norm Transformers need learning-rate warm-up; pre-norm ones train without it."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers
from graddoctor.lab.measure import evaluate
from graddoctor.train import fit, shuffled_batches

CHANCE = math.log(4)  # cross-entropy of a uniform guess over the 4 temporal-order classes


def lr_factor(step: int, warmup: int, decay_from: int) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (1-based): linear warm-up over
    ``warmup`` steps (0: none), then inverse-square-root decay after step ``decay_from``
    (Vaswani et al. 2017's schedule; with ``warmup=0`` only the warm-up is removed).

    Example:
        >>> [round(lr_factor(s, 100, 100), 3) for s in (1, 50, 100, 400)]
        [0.01, 0.5, 1.0, 0.5]
        >>> [round(lr_factor(s, 0, 100), 3) for s in (1, 100, 400)]
        [1.0, 1.0, 0.5]
    """
    warm = min(1.0, step / warmup) if warmup else 1.0
    return warm * min(1.0, math.sqrt(decay_from / step))


def train_scheduled(net: nn.Module, d: Any, s: dict[str, Any], warmup: int, seed: int) -> list[float]:
    """Adam (betas ``s["betas"]``) at peak lr ``s["lr"]`` under :func:`lr_factor`; per-step
    minibatch losses (nan once non-finite, then it stops)."""
    opt = torch.optim.Adam(net.parameters(), lr=s["lr"], betas=tuple(s["betas"]))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(k + 1, warmup, s["decay_from"]))
    log = fit(net, opt, shuffled_batches(d.x_train, d.y_train, s["batch"], seed), steps=s["steps"],
              loss_fn=F.cross_entropy, grad_norms=True, stop_nonfinite=True,
              on_step=lambda _step, _loss: sched.step())
    return log.losses


class PreNormPostNorm(Experiment):
    name = "prenorm-postnorm"
    claim = ("A post-norm Transformer encoder trained with Adam at a large peak learning rate "
             "and no warm-up stays far from trained (near the chance loss), while the same net "
             "with pre-norm trains, and the same post-norm net with a linear warm-up to the same "
             "peak trains too (warm-up is the rescue).")
    source = ("Xiong et al. 2020 (On Layer Normalization in the Transformer Architecture); "
              "Liu et al. 2020 (Understanding the Difficulty of Training Transformers)")
    setup = ("zoo.transformer(depth=6, d_model=16, nhead=4, norm='post'|'pre') on temporal order "
             "(T=20, 8 one-hot inputs, 4 classes, 2000 training sequences); Adam betas "
             "(0.9, 0.98), batch 32, 300 steps. Every run has the same peak lr 0.015 and the same "
             "inverse-square-root decay after step 200 (lr x sqrt(200/t), Vaswani et al. 2017's "
             "schedule); 'post-warmup' adds a linear warm-up from 0 over the first 200 steps, 'pre' "
             "and 'post' start at the peak: the schedules differ only by the warm-up. Loss: "
             "cross-entropy on the whole training set after the last step, over chance ln 4 = "
             "1.386. A seed fixes the data; each net is trained from 3 initialisations (weights and "
             "batch order from seed + 1000 i) and the row takes their median. Designed on "
             "development seeds 30-39 only; seeds 0-2 and 10-14 were then run once, untouched. On "
             "the dev seeds the previous setting (constant lr 0.01, 100-step warm-up, betas "
             "0.9/0.999, 200 steps, last-10-minibatch loss; designed on seeds 20-24) failed 4 of 10 "
             "(warm-up stuck at 1.00/0.65/0.31 of chance, post trained to 0.25, pre stuck at 0.26); "
             "adding the decay and betas 0.98 (300 steps) still left one warm-up run stuck (0.60) "
             "and post-norm below 0.3 twice (0.001, 0.25); a 100-step warm-up to 0.02 left 9 of 10 "
             "warm-up runs stuck; a 200-step warm-up to 0.015 (this setting) left single warm-up "
             "runs near 0.25 of chance about 1 time in 10, hence the median of 3. This setting on "
             "dev seeds 30-39: every seed passes every row; medians post 1.000-1.001, pre and "
             "post-warmup <= 0.0003; single initialisations: post 30/30 >= 0.3 (min 0.60), pre "
             "30/30 <= 0.003, post-warmup 27/30 <= 0.1 (three at 0.25-0.27).")
    scaled = ("Xiong et al. train 6-layer Transformers (as here) on IWSLT14 De-En translation with "
              "Adam, with and without warm-up at lr 5e-4 and 1e-3 (Fig. 2; their warm-up lengths "
              "not confirmed here); here d_model 16 on a 4-class sequence task for 300 steps, so "
              "the failing peak lr is larger (0.015) and the warm-up shorter (200 steps). They "
              "report BLEU and validation loss, we report training loss over chance (median of 3 "
              "initialisations): only the ordering compares (post-norm fails without warm-up; "
              "pre-norm without warm-up and post-norm with it train).")
    can_fail = ("if post-norm trained without warm-up at this peak lr, its median loss would fall "
                "below 0.3 of chance (trained nets here reach <= 0.001; at peak 0.01 one dev "
                "post-norm run did, 0.001); if pre-norm did not train without warm-up, or warm-up "
                "were not the rescue, pre or post-warmup would stay above 0.1 of chance (as 9 of 10 "
                "dev warm-up runs did with a 100-step warm-up to 0.02). The median hides one stuck "
                "initialisation of 3, not two: the note below counts single initialisations.")
    cost_s = 250.0
    quick = {"depth": 6, "d_model": 16, "T": 20, "steps": 300, "lr": 0.015, "batch": 32,
             "betas": [0.9, 0.98], "warmup": 200, "decay_from": 200, "inits": 3,
             "configs": ["pre", "post", "post-warmup"]}
    full = {"depth": 24, "d_model": 64, "T": 50, "steps": 2000, "lr": 0.003, "batch": 64,
            "betas": [0.9, 0.98], "warmup": 500, "decay_from": 500, "inits": 3,
            "configs": ["pre", "post", "post-warmup"]}
    checks = [
        Check("post_loss_over_chance", ">=", 0.3, "post-norm, no warm-up: final training-set "
              "loss / chance, median of 3 inits (inf if diverged)",
              "Post-LN without warm-up ends below Post-LN with it (Xiong et al. Fig. 2, lr "
              "5e-4/1e-3; no number taken, not confirmed); warm-up 'crucial to the final "
              "performance' (abstract)"),
        Check("pre_loss_over_chance", "<=", 0.1, "pre-norm, no warm-up, same schedule: final "
              "training-set loss / chance, median of 3 inits",
              "Pre-LN without warm-up 'can reach comparable results with baselines' (abstract; "
              "no number)"),
        Check("post-warmup_loss_over_chance", "<=", 0.1, "post-norm with a linear warm-up to the "
              "same peak lr: final training-set loss / chance, median of 3 inits",
              "Post-LN trains with warm-up (the baseline; Xiong et al. Fig. 2, not confirmed)"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        d = data.load("temporal-order", seed=seed, T=s["T"], n_train=2000, n_test=500)
        out: Numbers = {}
        for cfg in s["configs"]:
            finals, curves, accs = [], [], []
            for i in range(s["inits"]):  # init i: weights and batch order from seed + 1000 i
                net = zoo.transformer(depth=s["depth"], d_model=s["d_model"], nhead=4,
                                      norm=cfg.split("-")[0], input_dim=8, num_classes=4,
                                      max_len=s["T"], seed=seed + 1000 * i)
                losses = train_scheduled(net, d, s, s["warmup"] if cfg.endswith("warmup") else 0,
                                         seed + 1000 * i)
                finals.append(evaluate(net, d.x_train, d.y_train)["loss"] / CHANCE
                              if math.isfinite(losses[-1]) else math.inf)
                accs.append(evaluate(net, d.x_test, d.y_test)["acc"])
                curves.append(losses)
            out[f"{cfg}_loss_over_chance"] = float(np.median(finals))
            out[f"acc_{cfg}"] = float(np.median(accs))
            out[f"inits_{cfg}"] = finals
            out[f"losses_{cfg}"] = curves
        return out

    def notes(self, runs: list[Numbers]) -> list[str]:
        """Each initialisation on its own, against the same thresholds as the seed medians."""
        parts = []
        for c in self.checks:
            cfg = c.metric.removesuffix("_loss_over_chance")
            values = [v for r in runs for v in r.get(f"inits_{cfg}", [])] or [math.nan]
            ok = sum(c.seed_passes(values))
            parts.append(f"{cfg} {ok}/{len(values)} (range {min(values):.3g}..{max(values):.3g})")
        return ["Single initialisations passing their row's threshold (the rows judge the median "
                "of each seed's initialisations): " + "; ".join(parts)]

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        ax = fig.subplots()
        for i, cfg in enumerate(settings["configs"]):
            for j, r in enumerate(runs):
                for k, losses in enumerate(r[f"losses_{cfg}"]):
                    ax.plot(losses, color=f"C{i}", alpha=0.5, lw=0.8,
                            label=f"{cfg}-norm" if j == 0 and k == 0 else None)
        ax.axhline(CHANCE, color="k", ls=":", label="chance ln 4")
        ax.axvline(settings["warmup"], color="gray", ls="--", lw=0.8, label="end of warm-up")
        ax.set(xlabel="step", ylabel="minibatch train loss",
               title=f"{settings['depth']}-layer Transformer, Adam peak lr {settings['lr']}")
        ax.legend(fontsize=7)
