"""The degradation problem: with healthy gradients (BN, He init), a deeper plain net trains
worse than a shallower one; a residual net of the same depths does not."""

from __future__ import annotations

from typing import Any

from graddoctor import data, zoo
from graddoctor.lab.base import Check, Experiment, Numbers
from graddoctor.lab.measure import evaluate, probe_profile, train

STYLES = ("plain", "residual")
#: codes that would mean the deep plain net fails for a gradient reason, not degradation
GRADIENT_CODES = ("vanishing-gradient", "exploding-gradient", "signal-collapse", "signal-explosion",
                  "non-finite")


class DepthDegradation(Experiment):
    name = "depth-degradation"
    claim = ("With batch normalisation and He init, so that graddoctor's init probe finds no "
             "vanishing or exploding gradient in the deep plain net, the deeper plain net reaches "
             "a higher training error than the shallower one, while residual nets of the same "
             "depths do not get worse with depth.")
    source = ("He et al. 2016 (Deep Residual Learning), Table 2 (ImageNet top-1 val. error, "
              "10-crop) and Fig. 6 (CIFAR-10 training error of plain-20..56 vs ResNet-20..110)")
    setup = ("zoo.mlp(width=32, activation='relu', init='he', norm='batch', residual=None|"
             "'plain') on MNIST-1D at depth 4 and 20; Adam lr 1e-3, batch 64, same budget for "
             "all; training error (eval mode, full training set) at the end. Control: "
             "graddoctor.check on the depth-20 plain net at init (its probe's gradient codes).")
    scaled = ("He et al. compare 18/34-layer conv nets on ImageNet (and 20..56 on CIFAR-10) for "
              "~64k iterations; here 4 vs 20 Linear layers on MNIST-1D for 400 steps (2 CPU "
              "cores). 20 is the depth where the init probe is still clean: from ~32 BN layers "
              "on it flags exploding gradients (BN's own gradient growth), which would confound "
              "the test. Our unit is training error on MNIST-1D; the paper's is ImageNet "
              "validation error, so only the sign is comparable.")
    can_fail = ("if depth alone did not hurt a plain net with healthy gradients, the plain "
                "depth-20 error would not exceed the depth-4 one by 5 points; if residual nets also "
                "degraded, their depth-20 error would exceed depth 4 by more than 2 points; if "
                "the deep plain net's gradients were the cause, the probe control would fail.")
    cost_s = 50.0
    quick = {"depths": [4, 20], "width": 32, "steps": 400, "lr": 1e-3, "batch": 64}
    full = {"depths": [4, 8, 20, 32], "width": 64, "steps": 5000, "lr": 1e-3, "batch": 128}
    checks = [
        Check("probe_clean_plain_deep", ">=", 1.0,
              "control: check() on the deepest plain net at init finds no gradient problem (1 = "
              "clean)", "BN + He init: 'backward propagated gradients exhibit healthy norms' "
              "(Sec. 4.1)"),
        Check("plain_degradation", ">", 0.05,
              "plain: training error deepest minus shallowest",
              "+0.60 pts val. error plain-34 vs plain-18 (27.94 → 28.54, Table 2)"),
        Check("residual_degradation", "<=", 0.02,
              "residual: training error deepest minus shallowest (≤ +2 points allowed for noise)",
              "−2.85 pts ResNet-34 vs ResNet-18 (27.88 → 25.03, Table 2)"),
        Check("deep_gap", ">", 0.1, "deepest: plain minus residual training error",
              "3.51 pts at 34 layers (28.54 vs 25.03, Table 2)"),
    ]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        s = settings
        d = data.load("mnist1d", seed=seed)
        out: Numbers = {}
        for style in STYLES:
            errs = []
            for depth in s["depths"]:
                net = zoo.mlp(depth=depth, width=s["width"], in_features=d.x_train.shape[1],
                              out_features=10, activation="relu", init="he", norm="batch",
                              residual=None if style == "plain" else "plain", seed=seed)
                if style == "plain" and depth == s["depths"][-1]:
                    codes = probe_profile(net, d.x_train[:128], d.y_train[:128])["codes"]
                    out["probe_codes_plain_deep"] = codes
                    out["probe_clean_plain_deep"] = float(not set(codes) & set(GRADIENT_CODES))
                train(net, d, steps=s["steps"], lr=s["lr"], batch_size=s["batch"],
                      optimizer="adam", seed=seed)
                errs.append(1 - evaluate(net, d.x_train, d.y_train)["acc"])
            out[f"train_err_{style}"] = errs
            out[f"{style}_degradation"] = errs[-1] - errs[0]
        out["deep_gap"] = out["train_err_plain"][-1] - out["train_err_residual"][-1]
        return out

    def notes(self, runs: list[Numbers]) -> list[str]:
        codes = sorted({c for r in runs for c in r["probe_codes_plain_deep"]})
        return [f"graddoctor.check codes on the deepest plain net at init (all seeds): "
                f"{', '.join(codes) or 'none'}"]

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        import numpy as np

        ax = fig.subplots()
        for i, style in enumerate(STYLES):
            errs = np.array([r[f"train_err_{style}"] for r in runs])
            ax.errorbar(settings["depths"], errs.mean(0), yerr=errs.std(0), marker="o",
                        color=f"C{i}", label=style, capsize=3)
        ax.set(xscale="log", xlabel="depth (Linear layers)", ylabel="training error",
               title="MNIST-1D, BN + He init, same budget")
        ax.set_xticks(settings["depths"], [str(x) for x in settings["depths"]])
        ax.minorticks_off()
        ax.legend(fontsize=7)
