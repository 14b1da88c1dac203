"""Thresholds shared by several rules, each with the paper or measurement it rests on.

A threshold read by one rule only stays next to that rule; one read by two rules (or
by a rule and a remedy) lives here, so the rules import it from here and never from
each other. Thresholds are in orders of magnitude (log10) wherever a ratio is judged.

Example:
    >>> from graddoctor.diagnose import thresholds
    >>> thresholds.VANISH_ORDERS, thresholds.BN_MIN_BATCH, thresholds.BN_INSERT_MIN_BATCH
    (2.0, 8, 16)
"""

from __future__ import annotations

# ---------------------------------------------------------------- gradient profiles (watch)

#: input side this many orders of magnitude below the output side -> vanishing (and, with
#: the sign flipped, exploding across layers). A healthy He-initialised ReLU net, a ResNet
#: or a pre-norm Transformer stays within about one order (He et al. 2015, sec. 2.2: the
#: backward variance is preserved layer to layer); the default-init sigmoid MLP of Glorot &
#: Bengio 2010 (sec. 4.2) loses about one order per layer. Read by vanishing-gradient and
#: by loss-plateau's "vanishing" / "exploding" signs.
VANISH_ORDERS = 2.0
#: the papers behind ``VANISH_ORDERS``: the reference of every watch vanishing-gradient finding
REF_VANISH = (
    "Hochreiter 1991 (diploma thesis, sec. 4); Bengio, Simard & Frasconi 1994 "
    "(IEEE TNN 5(2), sec. II); Glorot & Bengio 2010 (AISTATS, sec. 4.2)"
)
#: input-side update ratios ||dw|| / ||w|| this many orders below the output side's ->
#: stalled (You, Gitman & Ginsburg 2017, LARS, sec. 3: layer-wise ratios should be
#: comparable). Read by stalled-layers and loss-plateau's "stalled" sign.
STALL_ORDERS = 2.0
#: fewest weight layers for an across-layer profile: the input and output thirds need
#: at least one layer each and a middle; with 2-3 layers the raw input scale of layer 1
#: would decide. Read by the gradient-profile rules and loss-plateau.
MIN_LAYERS = 4
#: module types of vanilla recurrent layers: no gates to carry the gradient through time
#: (Bengio, Simard & Frasconi 1994, sec. II; Hochreiter & Schmidhuber 1997, sec. 3).
#: Read by vanishing-gradient (through time), its remedies and loss-plateau.
VANILLA_RNN_TYPES = ("RNN", "RNNCell")

# ---------------------------------------------------------------- activations (watch)

#: a sigmoid/tanh site is saturated when at least this fraction of its outputs sits at
#: the bounds; a tanh layer at Xavier init has ~1% (pre-activations ~N(0, 1), |z| > 2.65;
#: Glorot & Bengio 2010, sec. 3.1). Read by saturated-activation and loss-plateau.
SAT_FRAC = 0.4

# ---------------------------------------------------------------- sequences (check)

#: fewest time steps for a through-time gradient profile, and fewest calls per forward of
#: one layer for it to count as a hand-written recurrent cell. Read by the init probe's
#: through-time rule and by ``checktime.recurrence``.
MIN_STEPS = 8

# ---------------------------------------------------------------- BatchNorm batch size

#: ``small-batch-batchnorm``: an existing BatchNorm in training mode whose calls see fewer
#: samples than this is flagged: its statistics are too noisy to normalise with (Wu & He
#: 2018, fig. 1: ResNet-50's error with BN grows sharply below 8 images per GPU).
BN_MIN_BATCH = 8
#: ``repair``: the norm remedy *inserts* BatchNorm only for example batches of at least
#: this many samples, below it a batch-independent GroupNorm/LayerNorm (Wu & He 2018,
#: fig. 1: 16 images per GPU is the smallest batch at which BN keeps its large-batch
#: error). Stricter than ``BN_MIN_BATCH`` on purpose: a norm that repair adds should not
#: start near the batch size at which an existing one is flagged.
BN_INSERT_MIN_BATCH = 16

# ---------------------------------------------------------------- severity policy (watch)

#: Severity policy of the training-time findings (``training.policy.apply_policy``):
#:
#: - a run that does not learn (``loss-plateau``, or the loss at >= 90% of its start after 40
#:   steps: ``training.progress``) and has a gradient-flow cause (a code of
#:   ``GRADIENT_FLOW_CODES``) is an **error**: the CI gate (``watch-report``) fails;
#: - a gradient-flow cause without that harm is a **warning** (an over-steps blow-up and a
#:   non-finite loss are harm in themselves and stay errors);
#: - a plateau with no gradient-flow cause is a warning that names the data, the labels or
#:   the learning rate as the likely cause and claims no vanishing or exploding gradient.
GRADIENT_FLOW_CODES = ("vanishing-gradient", "exploding-gradient", "saturated-activation", "dead-relu",
                       "stalled-layers", "batchnorm-eval-mode", "clip-too-tight", "post-ln-no-warmup")
#: harm (the loss did not move) -> severity of a gradient-flow cause
HARM_SEVERITY = {True: "error", False: "warning"}

__all__ = ["BN_INSERT_MIN_BATCH", "GRADIENT_FLOW_CODES", "HARM_SEVERITY", "BN_MIN_BATCH", "MIN_LAYERS", "MIN_STEPS", "REF_VANISH", "SAT_FRAC",
           "STALL_ORDERS", "VANILLA_RNN_TYPES", "VANISH_ORDERS"]
