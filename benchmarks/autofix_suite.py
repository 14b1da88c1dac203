"""The fault set of the autofix benchmark (``autofix.py``): which faults of the two training
suites are repairable in place, each with its dataset key, and which are left out and why.

Dataset keys (``autofix.test_set``) match each run's training input exactly: ``digits`` (flat
64), ``digits-img`` (1x8x8), ``digits-rows`` (8 rows of 8), ``mnist1d`` (flat 40, also the 1-d
conv nets' input), ``addingT`` / ``temporalT`` (sequences of length T).

Cost: the post-LN no-warm-up family has nine members, most of them deep Transformers; to fit
the 5-seed run on 2 CPU cores only the two cheapest of each of its two architectures are kept
(zoo Transformer: 6 and 8 blocks; ``nn.TransformerEncoder``: 6 layers at d=32 and d=64), the
others are listed in ``EXCLUDED`` with the reason "cost: one representative per family kept
(CPU budget)". Every other family is kept whole (at most 3.3 s per N steps). ``COST_S`` holds the
measured process seconds of N plain training steps of the broken setup (seed 0, 1 thread, on a
shared machine; ``autofix.py --list --measure`` re-measures).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "scenarios"))

import scenarios as sc  # noqa: E402

from graddoctor import data  # noqa: E402

M, CN, SQ, TF = sc.mlp_run, sc.cnn_run, sc.seq_run, sc.tf_run
#: scenario fault -> (dataset key, healthy twin: the same architecture and data, fault removed)
SCENARIO_TWINS: dict[str, tuple[str, Callable]] = {
    "mlp20-sigmoid-sgd": ("digits", M(depth=20, init="he", opt="sgd", lr=0.1)),
    "mlp20-sigmoid-adam": ("mnist1d", M(sc.mnist1d_flat, depth=20, init="he")),
    "mlp12-sigmoid-sgd-mnist1d": ("mnist1d", M(sc.mnist1d_flat, depth=12, init="he", opt="sgd", lr=0.1)),
    "mlp16-sigmoid-xavier-sgd": ("digits", M(depth=16, init="he", opt="sgd", lr=0.1)),
    "mlp16-tanh-small-init-sgd": ("digits", M(depth=16, activation="tanh", init="xavier", opt="sgd", lr=0.05)),
    "mlp12-relu-small-init-bias-sgd": ("digits", M(depth=12, init="he", opt="sgd", lr=0.05)),
    "mlp4-relu-bias-3-all-dead": ("digits", M(depth=4, init="he", opt="sgd", lr=0.05)),
    "mlp6-relu-bias-3-adam": ("mnist1d", M(sc.mnist1d_flat, depth=6, init="he")),
    "mlp4-relu-75pct-dead": ("digits", M(depth=4, width=64, init="he", lr=3e-3)),
    "mlp6-relu-90pct-dead": ("digits", M(depth=6, width=64, init="he", lr=3e-3)),
    "mlp5-relu-60pct-dead-sgd": ("digits", M(depth=5, width=64, init="he", opt="sgd", lr=0.03)),
    "plaincnn6-relu-80pct-dead-channels": ("digits-img", CN(depth=6, kind="plain", batchnorm=False,
                                                            opt="adam", lr=3e-3)),
    "transformer-pre2-ffn-90pct-dead": ("digits-rows", TF("pre", 2, lr=3e-3)),
    "mlp4-tanh-large-init": ("digits", M(depth=4, activation="tanh", init="xavier")),
    "mlp6-tanh-large-init-mnist1d": ("mnist1d", M(sc.mnist1d_flat, depth=6, activation="tanh", init="xavier")),
    "plaincnn6-tanh-large-init": ("digits-img", CN(depth=6, kind="plain", batchnorm=False, activation="tanh",
                                                   init="xavier", opt="adam", lr=1e-3)),
    "mlp20-tanh-large-init": ("digits", M(depth=20, activation="tanh", init="xavier")),
    "mlp4-sigmoid-bias+6": ("digits", M(depth=4, activation="sigmoid", init="xavier", opt="sgd", lr=0.1)),
    "mlp4-leaky-lr-huge": ("digits", M(depth=4, activation="leaky_relu", init="he", opt="plain-sgd", lr=0.1)),
    "mlp4-gelu-lr-huge": ("digits", M(depth=4, activation="gelu", init="he", opt="sgd", lr=0.03)),
    "gru-adding-lr-huge": ("adding20", SQ("gru", "adding", T=20, opt="sgd", lr=0.1)),
    "lstm-adding-lr-huge": ("adding20", SQ("lstm", "adding", T=20, opt="sgd", lr=0.1)),
    "transformer-pre2-lr-huge": ("digits-rows", TF("pre", 2, opt="sgd", lr=0.05)),
    "plaincnn8-nobn-lr-huge": ("digits-img", CN(depth=8, kind="plain", batchnorm=False, opt="plain-sgd", lr=0.05)),
    "relu-rnn-gain3-T50": ("adding50", SQ("rnn", "adding", T=50, nonlinearity="relu", opt="sgd", lr=0.01)),
    "plaincnn20-nobn-default-sgd": ("digits-img", CN(depth=20, kind="plain", batchnorm=False, opt="sgd", lr=0.05)),
}

#: realistic fault -> dataset key (the twin is the case's own ``twin``), by family
REALISTIC_FAULTS: dict[str, str] = {
    # batchnorm stuck in eval mode (remedy: train-mode)
    "a-mlp8-bn-eval": "digits", "a-mlp8-bn-eval-adam": "digits", "a-mlp16-bn-eval": "digits",
    "b-resnet8-bn-eval": "digits-img", "b-plaincnn8-bn-eval": "digits-img", "b-resnet8-adam-bn-eval": "digits-img",
    "b-resnet14-bn-eval": "digits-img", "b-plaincnn14-bn-eval": "digits-img",
    "b-cnn1d-bn-eval": "mnist1d", "b-resnet8-1d-bn-eval": "mnist1d",
    # learning rate x5 / x10 / x30 (remedy: rollback + lower-lr)
    "a-mlp4-sgd-lr5x": "digits", "a-mlp4-sgd-lr10x": "digits", "a-mlp4-adam-lr30x": "digits",
    "a-lstm-lr10x": "digits-rows", "a-tf-pre4-lr10x": "digits-rows",
    "b-resnet8-lr5x": "digits-img", "b-resnet8-lr10x": "digits-img", "b-resnet14-lr10x": "digits-img",
    "b-plaincnn8-lr5x": "digits-img", "b-plaincnn8-lr10x": "digits-img", "b-plaincnn14-lr10x": "digits-img",
    "b-gru-lr5x": "digits-rows", "b-gru-lr10x": "digits-rows", "b-ttf-pre6-lr10x": "digits-rows",
    "b-cnn1d-lr10x": "mnist1d", "b-resnet8-1d-lr10x": "mnist1d",
    # init gain above He, no norm (remedy: he-init / rollback)
    "a-mlp30-relu-gain": "digits", "b-plaincnn20-gain": "digits-img",
    # saturating activations (remedy: relu + he-init)
    "a-mlp10-sigmoid-vanish": "digits", "a-mlp6-tanh-saturated": "digits",
    # a closed LSTM forget gate (remedy: forget-bias, since session 7)
    "a-lstm-forget-neg": "temporal10",
    # post-LN without warm-up (remedy: warm-up, an optimizer-level remedy)
    "a-tf-post6-nowarmup": "digits-rows", "a-tf-post8-nowarmup": "digits-rows", "a-tf-post12-nowarmup": "digits-rows",
    "b-ttf-post6-nowarmup": "digits-rows", "b-ttf-post6-d64-nowarmup": "digits-rows",
    "b-ttf-post8-nowarmup": "digits-rows", "b-ttf-post10-nowarmup": "digits-rows",
    "b-ttf-post12-nowarmup": "digits-rows", "b-ttf-post16-nowarmup": "digits-rows",
}

#: seconds of N plain training steps of the broken setup (seed 0, 1 thread, process time)
COST_S: dict[str, float] = {
    "mlp20-sigmoid-sgd": 0.3, "mlp20-sigmoid-adam": 0.5, "mlp12-sigmoid-sgd-mnist1d": 0.3,
    "mlp16-sigmoid-xavier-sgd": 0.4, "mlp16-tanh-small-init-sgd": 0.3, "mlp12-relu-small-init-bias-sgd": 0.4,
    "mlp4-relu-bias-3-all-dead": 0.2, "mlp6-relu-bias-3-adam": 0.3, "mlp4-relu-75pct-dead": 0.3,
    "mlp6-relu-90pct-dead": 0.4, "mlp5-relu-60pct-dead-sgd": 0.2, "plaincnn6-relu-80pct-dead-channels": 0.7,
    "transformer-pre2-ffn-90pct-dead": 0.8, "mlp4-tanh-large-init": 0.1, "mlp6-tanh-large-init-mnist1d": 0.1,
    "plaincnn6-tanh-large-init": 0.5, "mlp20-tanh-large-init": 0.5, "mlp4-sigmoid-bias+6": 0.1,
    "mlp4-leaky-lr-huge": 0.1, "mlp4-gelu-lr-huge": 0.2, "gru-adding-lr-huge": 0.8, "lstm-adding-lr-huge": 0.4,
    "transformer-pre2-lr-huge": 0.5, "plaincnn8-nobn-lr-huge": 0.6, "relu-rnn-gain3-T50": 0.6,
    "plaincnn20-nobn-default-sgd": 1.5, "a-mlp8-bn-eval": 0.4, "a-mlp8-bn-eval-adam": 0.6,
    "a-mlp16-bn-eval": 0.6, "b-resnet8-bn-eval": 1.2, "b-plaincnn8-bn-eval": 1.3, "b-resnet8-adam-bn-eval": 1.6,
    "b-resnet14-bn-eval": 2.2, "b-plaincnn14-bn-eval": 1.7, "b-cnn1d-bn-eval": 0.9, "b-resnet8-1d-bn-eval": 1.3,
    "a-mlp4-sgd-lr5x": 0.2, "a-mlp4-sgd-lr10x": 0.2, "a-mlp4-adam-lr30x": 0.2, "a-lstm-lr10x": 0.4,
    "a-tf-pre4-lr10x": 2.5, "b-resnet8-lr5x": 1.9, "b-resnet8-lr10x": 2.0, "b-resnet14-lr10x": 3.1,
    "b-plaincnn8-lr5x": 1.4, "b-plaincnn8-lr10x": 1.4, "b-plaincnn14-lr10x": 2.1, "b-gru-lr5x": 0.5,
    "b-gru-lr10x": 0.5, "b-ttf-pre6-lr10x": 3.3, "b-cnn1d-lr10x": 0.8, "b-resnet8-1d-lr10x": 1.3,
    "a-mlp30-relu-gain": 0.8, "b-plaincnn20-gain": 2.3, "a-mlp10-sigmoid-vanish": 0.3,
    "a-mlp6-tanh-saturated": 0.2, "a-tf-post6-nowarmup": 2.6, "a-tf-post8-nowarmup": 3.3,
    "b-ttf-post6-nowarmup": 2.7, "b-ttf-post6-d64-nowarmup": 4.6, "a-lstm-forget-neg": 0.5,
    # measured on the 2026-12-01 machine (the rows above on an older, slower one)
    "a-tf-post12-nowarmup": 5.2, "b-ttf-post8-nowarmup": 4.1, "b-ttf-post10-nowarmup": 5.7,
    "b-ttf-post12-nowarmup": 5.5, "b-ttf-post16-nowarmup": 7.0,
}

_CLIP = "the clip is a call in the user's loop (code change)"
#: faults left out of the score, and why
EXCLUDED: dict[str, str] = {
    "mlp4-relu-lr-tiny": "the fix is a larger learning rate found by an LR range test: not applied in place",
    "transformer-pre4-lr-tiny": "same (learning rate 1e-7)",
    "lstm-digits-lr-tiny": "same (learning rate 1e-7)",
    "mlp4-log-softmax-underflow": "a bug in the loss function (user code)",
    "rnn-adding-T100": "the fix is an LSTM (a code change: the forward changes)",
    "rnn-temporal-order-T100": "the fix is an LSTM (a code change)",
    **{n: _CLIP for n in ("a-mlp4-clip-tight", "a-mlp8-bn-clip-tight", "a-lstm-clip-tight", "a-tf-pre4-clip-tight",
                          "b-plaincnn8-clip-tight", "b-resnet8-clip-tight", "b-resnet14-clip-tight",
                          "b-resnet8-1d-clip-tight", "b-cnn1d-clip-tight", "b-gru-clip-tight",
                          "b-ttf-pre6-clip-tight")},
    "a-mlp4-random-labels": "unlearnable labels: nothing to repair", "b-gru-random-labels": "same",
    "b-plaincnn20-he": "not a fault (the twin of b-plaincnn20-gain)",
}
for _n in EXCLUDED:
    REALISTIC_FAULTS.pop(_n, None)


def cost_class(seconds: float) -> str:
    """The cost class of N plain training steps.

    Example:
        >>> cost_class(0.5), cost_class(3.0), cost_class(12.0)
        ('cheap', 'mid', 'expensive')
    """
    return "cheap" if seconds < 2.0 else "mid" if seconds < 10.0 else "expensive"


# ---------------------------------------------------------------- test data


_TEST: dict = {}


def test_set(kind: str) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(x_test, y_test, "acc" | "r2") for a dataset key."""
    if kind not in _TEST:
        if kind.startswith("adding"):
            T = int(kind[len("adding"):])
            b = data.load("adding", seed=0, T=T, n_train=2000, n_test=100)
            m, s = b.y_train.float().mean(), b.y_train.float().std()
            _TEST[kind] = (b.x_test.float(), (b.y_test.float() - m) / s, "r2")
        elif kind.startswith("temporal"):
            b = data.load("temporal-order", seed=0, T=int(kind[len("temporal"):]), n_train=2000, n_test=100)
            _TEST[kind] = (b.x_test.float(), b.y_test, "acc")
        else:
            b = data.load("mnist1d" if kind == "mnist1d" else "digits", seed=0,
                          **({"flat": False} if kind == "digits-img" else {}))
            x = b.x_test.float()
            _TEST[kind] = (x.view(-1, 8, 8) if kind == "digits-rows" else x, b.y_test, "acc")
    return _TEST[kind]


def score(model: torch.nn.Module, kind: str) -> float:
    x, y, metric = test_set(kind)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        model.train(was)
    if metric == "acc":
        return (out.argmax(-1) == y).float().mean().item()
    out = out.reshape(y.shape)
    r2 = 1.0 - ((out - y) ** 2).mean().item() / y.var().item()
    return r2 if math.isfinite(r2) else -1.0


def chance(kind: str) -> float:
    return {"temporal10": 0.25}.get(kind, 0.0 if kind.startswith("adding") else 0.1)
