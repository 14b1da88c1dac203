"""Stable identifiers: finding codes and remedy ids (add, never rename).

Example:
    >>> from graddoctor.codes import FINDING_CODES, REMEDY_IDS
    >>> "vanishing-gradient" in FINDING_CODES and "he-init" in REMEDY_IDS
    True
"""

from __future__ import annotations

#: finding code -> when it is raised (see DESIGN.md)
FINDING_CODES: dict[str, str] = {
    "vanishing-gradient": "gradient signal shrinks by orders of magnitude from output side to input side",
    "exploding-gradient": "gradient signal grows by orders of magnitude, or norms blow up over steps",
    "non-finite": "NaN/Inf in loss, gradients or activations",
    "dead-relu": "a ReLU-family layer whose units never activate over a window",
    "saturated-activation": "sigmoid/tanh-family outputs pinned at their bounds",
    "stalled-layers": "input-side layers whose updates are negligible next to output-side ones",
    "loss-plateau": "the loss stops improving early in training",
    "saturating-hidden-activation": "static: sigmoid/tanh used as a hidden activation",
    "poor-init": "static: weight scale far from what the following activation needs",
    "deep-without-skip": "static: a long chain of layers with no residual/dense path",
    "small-batch-batchnorm": "static: BatchNorm with a batch too small for its statistics",
    "long-sequence-rnn": "static: a vanilla RNN over long sequences",
    "signal-collapse": "init probe: forward activation variance dies out with depth",
    "signal-explosion": "init probe: forward activation variance blows up with depth",
    "lr-insensitive": "range test: the loss barely moves across the swept learning rates",
    "batchnorm-eval-mode": "BatchNorm layers in eval mode while the model trains",
    "clip-too-tight": "gradient clipping cuts nearly every step's norm by orders of magnitude",
    "post-ln-no-warmup": "post-LN Transformer trained without LR warm-up fails to move",
    "no-gradient": "trainable layers that never get a gradient (detached or unused in the forward)",
    "softmax-before-loss": "init probe: a probability output (a softmax at the end) fed to a loss that takes logits or log-probabilities",
    "degenerate-norm": "static: a normalisation layer with one or two values per group at this input (its output is constant)",
}

#: remedy ids, each an entry of the remedy registry
REMEDY_IDS: tuple[str, ...] = (
    "relu", "leaky-relu", "gelu", "elu", "silu",
    "he-init", "xavier-init", "orthogonal-init", "lsuv-init", "forget-bias",
    "batchnorm", "layernorm", "groupnorm",
    "residual", "rezero",
    "clip-norm", "clip-value", "clip-agc",
    "lstm", "lower-lr", "lr-find",
    "warmup", "prenorm", "train-mode",
    "edge-of-chaos-init", "looks-linear-init", "norm-gain", "small-init",
    "norm-groups",
)

SEVERITIES: tuple[str, ...] = ("error", "warning", "info")
