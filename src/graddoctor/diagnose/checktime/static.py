"""Static rules: the practitioners' pre-flight checklist, read off a ``ModelMap``.

Each rule is ``rule(m: ModelMap, model: nn.Module) -> list[Finding]`` (``step=None``:
nothing was trained) and is listed in ``STATIC_RULES``. Thresholds, and why:

- ``saturating-hidden-activation``: sigmoid/tanh-family activation sites fed by
  data through at least one layer, not on the output side, and not *gates*
  (their output multiplies another input-derived tensor: GLU, squeeze-excitation,
  hand-written LSTM cells). LSTM/GRU gates run inside the kernel and are never
  seen; HF GPT-2's tanh-approximated GELU is a GELU module; ``sigmoid(alpha)`` of
  a learned scalar, ``tanh`` of the raw input, a soft cap ``c * tanh(x / c)``
  (Gemma 2's attention logits: the identity well inside +-c) and a sigmoid of an
  MLP on a constant table (SwinV2's position bias) are not hidden activations.
  Warning when the sites are applied at least ``SATURATING_MIN`` (3) times per
  forward (a depth or a recurrence through which sigmoid' <= 1/4 compounds),
  info below, info for tanh-like sites alone (tanh' = 1 at 0: Xavier tanh MLPs of 3-12
  hidden layers trained as well as ReLU+He on digits; their init and saturation are
  ``poor-init``'s and the probe's), and info when skip connections give a path of at most that many
  weight layers past them (a Neural ODE's ``h + f(h) / n``: nothing compounds).
- ``poor-init``: per weight layer, gain = std(W) / target, target
  ``kinds.target_std``: He sqrt(2/fan_in) before a ReLU-family activation, LeCun
  sqrt(1/fan_in) before a saturating one or none, the Glorot value
  ``kinds.glorot_std`` = sqrt(2/(fan_in+fan_out)) also accepted. In a plain chain (no skip connection) the scale compounds: the sum
  of log10(gain) over a run of hidden layers is the change, in orders of
  magnitude, of the backward gradient (and of the forward signal for centred
  activations, relu and tanh; a sigmoid's output scale does not follow its
  input's), flagged from ``INIT_CHAIN_ORDERS`` (1: a 10x change from the init
  alone), as Glorot & Bengio 2010 found for the "standard" U[-1/sqrt(n),
  1/sqrt(n)] init. A normalisation after a layer makes its scale irrelevant and
  ends the run, and a run it ends compounds nothing (``_runs``): the run read is the one
  into the output. PyTorch's default (kaiming_uniform a=sqrt(5): std = 1/sqrt(3
  fan_in), gain 1/sqrt(6) before a ReLU, 1/sqrt(3) before tanh) thus passes in
  a 3-layer net and is flagged from a depth of 4 (ReLU) or 6 (tanh) Linear
  layers. Measured (digits, 150 steps, mean of 3 seeds, default vs He/Xavier):
  4-layer ReLU MLP 0.841 vs 0.893 (SGD 0.05), 0.295 vs 0.877 (SGD 0.01), 0.775
  vs 0.856 (Adam 1e-3); 5-layer ReLU 0.416 vs 0.873 (SGD 0.05); 6-layer tanh
  (SGD 0.01) 0.37 vs 0.92 after a Xavier re-draw. The threshold was 2 (depth 7
  and 10), which let those pass; at 1 none of the 42 healthy architectures of
  ``benchmarks/realworld`` nor any healthy run of the training suites is
  flagged (they are residual, normalised or He/Xavier-initialised). A single layer off by
  ``INIT_LAYER_ORDERS`` (1.5, a factor ~30) is flagged in any model, except
  layers followed by a normalisation, output layers and exactly-zero weights
  (deliberate: ReZero, zero-init residual branches); layers fed by buffers or
  parameters only (SwinV2's position-bias MLP on its coordinate table) carry no
  data signal and are not read.
  Weights that look trained (``measure.trained.looks_trained``: a checkpoint, not an init) are
  not read: their scale is what training made it, and a re-draw would lose it.
- ``deep-without-skip``: the *shortest* input-to-output path counts more than
  ``DEEP_LAYERS`` (30) weight layers (Linear/Conv/RNN/..., norms not counted):
  a skip connection shortens it (He et al. 2016, "degradation"). Skips are
  found by following the data flow of the traced forward (ModelMap's tensor
  tags). Fallback: where the data flow is lost (ops outside torch), the path is
  under-counted, so the rule errs on the side of silence.
- ``small-batch-batchnorm``: a BatchNorm in training mode whose calls see fewer
  than ``BN_MIN_BATCH`` (8, ``graddoctor.diagnose.thresholds``) samples. For BatchNorm2d/3d the statistics pool
  B*H*W values but neighbouring positions of one image are strongly correlated,
  so the sample count B is what matters (Wu & He 2018: error grows sharply below 8).
- ``degenerate-norm``: a norm layer with one or two values per group at the traced input shape
  (``diagnose.checktime.degenerate_norms``): its output does not depend on its input.
- ``long-sequence-rnn``: a vanilla ``nn.RNN`` (or ``nn.RNNCell`` stepped) over more
  than ``RNN_LONG`` (200) steps; more than ``RNN_VERY_LONG`` (512) suggests
  attention or a state-space model. LSTM/GRU are not flagged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from graddoctor import kinds
from graddoctor.diagnose.checktime.degenerate_norms import degenerate_norms
from graddoctor.diagnose.checktime.norm_gains import small_norm_gains
from graddoctor.diagnose.thresholds import BN_MIN_BATCH
from graddoctor.measure.trained import looks_trained
from graddoctor.modelmap import ModelMap, modules_by_name
from graddoctor.report import Finding

SATURATING_MIN = 3
_TANH_LIKE = kinds.TANH_LIKE
INIT_CHAIN_ORDERS = 1.0
INIT_LAYER_ORDERS = 1.5
DEEP_LAYERS = 30
RNN_LONG = 200
RNN_VERY_LONG = 512

Rule = Callable[[ModelMap, nn.Module], list[Finding]]


def saturating_hidden_activation(m: ModelMap, model: nn.Module) -> list[Finding]:
    """Sigmoid/tanh used as hidden activations (output layers and gates excepted)."""
    sites = [s for s in m.activations
             if s.family == "saturating" and s.after_layer and not s.is_output and not s.gate and not s.capped]
    if not sites:
        return []
    applied = sum(s.calls for s in sites)
    # skip connections with a short path past the sites (a Neural ODE's h + f(h)/n, a residual
    # net's branches): the gradient takes the skips, so the derivatives do not compound
    bypassed = (m.shortest_weight_path < m.longest_weight_path - 1
                and m.shortest_weight_path <= SATURATING_MIN)
    # tanh alone: its derivative is 1 at 0, so at a scale-matched init nothing compounds (measured:
    # Xavier tanh MLPs of 3-12 hidden layers on digits trained as well as ReLU+He, Adam and SGD, 2
    # seeds each); what hurts it is the init (poor-init) or saturation (the probe, watch)
    tanh_only = {s.kind for s in sites} <= _TANH_LIKE and m.longest_weight_path < DEEP_LAYERS
    sev = "warning" if applied >= SATURATING_MIN and not bypassed and not tanh_only else "info"
    kinds = sorted({s.kind for s in sites})
    return [Finding(
        "saturating-hidden-activation", sev,
        f"{len(sites)} hidden activation site(s) use {'/'.join(kinds)}, applied {applied} time(s) per "
        "forward: their derivative is at most 1/4 (sigmoid) or 1 (tanh) and vanishes when they "
        "saturate, so gradients shrink with depth"
        + (f" (here fewer than {SATURATING_MIN}: too few to compound)" if applied < SATURATING_MIN
           else f" (here skip connections give a path of {m.shortest_weight_path} weight layers through "
                "the model, so the gradient need not pass them all)" if bypassed
           else " (tanh alone: at a scale-matched init its derivative near 0 is 1, so nothing compounds; the "
                "init and saturation are read by poor-init and the probe)" if tanh_only else ""),
        layers=[s.name for s in sites],
        evidence={"sites": len(sites), "applications_per_forward": applied, "kinds": kinds,
                  "shortest_weight_path": m.shortest_weight_path},
        remedies=["relu", "gelu", "leaky-relu", "he-init"],
        reference="Glorot & Bengio 2010; LeCun et al. 1998 (Efficient BackProp)")]


def _fans(w: torch.Tensor, layer_type: str) -> tuple[int, int]:
    if layer_type == "Conv1D":  # HF GPT-2: weight is (in, out)
        return w.shape[0], w.shape[1]
    rf = w[0][0].numel() if w.dim() > 2 else 1
    return w.shape[1] * rf, w.shape[0] * rf


def _torch_default(w: object, layer_type: str) -> bool:
    """Weights as PyTorch draws them by default: std 1/sqrt(3 fan_in), within 10%."""
    if not isinstance(w, torch.Tensor) or w.dim() < 2 or w.numel() < 64:
        return False
    return abs(float(w.detach().float().std()) * math.sqrt(3 * _fans(w, layer_type)[0]) - 1.0) < 0.1


def init_gain(w: torch.Tensor, layer_type: str, activation_family: str | None,
              activation_kind: str | None = None) -> float:
    """std(W) over the target std for the activation that follows (1.0 inside the accepted band).

    SELU's self-normalising init is LeCun normal, std 1/sqrt(fan_in) (Klambauer et al. 2017;
    torch's ``calculate_gain("selu")`` is 3/4 of it): its band runs from 3/4 LeCun to He.

    Example:
        >>> w = torch.nn.init.kaiming_normal_(torch.empty(256, 256), nonlinearity="relu")
        >>> round(init_gain(w, "Linear", "relu"), 1)
        1.0
    """
    fan_in, fan_out = _fans(w, layer_type)
    std = float(w.detach().float().std()) if w.numel() > 1 else 0.0
    if activation_kind == "selu":
        lo, hi = kinds.target_std(fan_in, "selu"), kinds.target_std(fan_in, "relu")
        return std / lo if std < lo else std / hi if std > hi else 1.0
    if activation_family == "relu":  # He's gain sqrt(2) for the whole family
        return std / kinds.target_std(fan_in, "relu")
    lo, hi = sorted((kinds.glorot_std(fan_in, fan_out), kinds.target_std(fan_in, None)))
    return std / lo if std < lo else std / hi if std > hi else 1.0


def _normalised_after(m: ModelMap) -> set[str]:
    """Layers whose next parameter-owning call is a normalisation layer."""
    kinds = {x.name: x.kind for x in m.layers}
    owners = [c for c in m.calls if c.has_params]
    return {a.name for a, b in zip(owners, owners[1:]) if kinds.get(b.name) == "norm"}


def _runs(rows: list[tuple[str, float, bool, str | None]]) -> list[list[tuple[str, float, str | None]]]:
    """The run of layers through which the scale compounds: the one after the last reset (a layer
    whose output is normalised). A run that ends at a reset compounds nothing: the norm divides its
    shrink out of the forward signal and multiplies it back into the backward one (by 1/sigma),
    so each of its layers' relative update depends on its own gain alone (1/gain^2), not on the
    run's (the canonical DCGAN discriminator's N(0, 0.02) first conv, two layers before a
    BatchNorm, read as poor-init while its relative gradient was the largest of the net)."""
    run: list[tuple[str, float, str | None]] = []
    for name, lg, reset, family in rows:
        run = [] if reset else [*run, (name, lg, family)]
    return [run] if run else []


def poor_init(m: ModelMap, model: nn.Module) -> list[Finding]:
    """Weight scale far from He/Xavier for the activation that follows (see module docs)."""
    mods = modules_by_name(model)
    normed = _normalised_after(m)
    plain = m.shortest_weight_path >= m.longest_weight_path - 1  # no skip connection
    rows = []  # (name, log10 gain, resets the scale, activation family)
    for x in m.layers:
        if x.kind not in ("linear", "conv") or x.is_output or x.name not in mods or x.constant_input:
            continue  # a layer fed by a constant table (SwinV2's position-bias MLP) carries no data signal
        w = getattr(mods[x.name], "weight", None)
        if not isinstance(w, torch.Tensor) or w.dim() < 2 or not bool(w.detach().abs().sum() > 0):
            continue
        site = m.site(x.activation_site) if x.activation_site else None
        gain = init_gain(w, x.type, site.family if site else None, site.kind if site else None)
        reset = x.name in normed
        rows.append((x.depth, x.name, math.log10(gain) if gain > 0 else -math.inf, reset,
                     site.family if site else None))
    if not rows:
        return []
    # layers side by side (a VAE's mu and logvar, a branch and its shortcut) do not compound:
    # one per depth, the farthest off scale
    by_depth: dict[int, tuple] = {}
    for r in rows:
        if r[0] not in by_depth or abs(r[2]) > abs(by_depth[r[0]][2]):
            by_depth[r[0]] = r
    rows = [by_depth[d][1:] for d in sorted(by_depth)]
    runs = _runs(rows) if plain else []
    chain = max(runs, key=lambda r: abs(sum(lg for _, lg, _ in r)), default=[])
    chain_orders = sum(lg for _, lg, _ in chain)
    single = [(n, lg) for n, lg, reset, _ in rows if n not in normed and abs(lg) >= INIT_LAYER_ORDERS]
    if (abs(chain_orders) < INIT_CHAIN_ORDERS and not single) or looks_trained(model):
        return []  # trained weights (a checkpoint) are no init, and a re-draw would lose them
    by_chain = abs(chain_orders) >= INIT_CHAIN_ORDERS
    layers = [n for n, lg, _ in chain if lg != 0] if by_chain else [n for n, _ in single]
    direction = "shrinks" if (chain_orders if by_chain else single[0][1]) < 0 else "grows"
    relu = sum(f == "relu" for _, _, f in chain) * 2 >= len(chain) if by_chain else True
    remedies = (["he-init", "lsuv-init", "orthogonal-init", "xavier-init"] if relu
                else ["xavier-init", "orthogonal-init", "lsuv-init", "he-init"])
    evidence = {"gain_log10": [round(lg, 2) for _, lg, _, _ in rows],
                "chain_orders": round(chain_orders, 2), "chain_layers": len(chain), "single_layers": not by_chain,
                "direction": direction}
    msg = (f"weight scales off the He/Xavier scale for the activation that follows compound over "
           f"{len(chain)} plain layers: the signal {direction} by about {abs(chain_orders):.1f} orders "
           "of magnitude from the init alone (the backward gradient; the forward signal too "
           "where the activations are centred)" if by_chain else
           f"{len(single)} layer(s) with weights off the He/Xavier scale by more than "
           f"{10 ** INIT_LAYER_ORDERS:.0f}x ({'too small' if direction == 'shrinks' else 'too large'})")
    if by_chain and all(_torch_default(getattr(mods[n], "weight", None), t) for n, t in
                        ((x.name, x.type) for x in m.layers if x.name in layers)):
        evidence["pytorch_default_init"] = True
        msg += ("; these are PyTorch's default weights (kaiming_uniform_ with a=sqrt(5), std 1/sqrt(3 fan_in)), "
                "made for shallow nets: measured on a 4-layer ReLU MLP on digits, 150 steps, "
                "0.775 vs 0.856 with he-init (Adam 1e-3), 0.295 vs 0.877 (SGD 0.01)")
    return [Finding("poor-init", "warning", msg, layers=layers, evidence=evidence, remedies=remedies,
                    reference="Glorot & Bengio 2010; He et al. 2015; Mishkin & Matas 2016 (LSUV)")]


def poor_init_all(m: ModelMap, model: nn.Module) -> list[Finding]:
    """``poor-init`` from the weight scales (``poor_init``) and from norm gains near zero
    (``norm_gains.small_norm_gains``)."""
    return poor_init(m, model) + small_norm_gains(m, model)


def deep_without_skip(m: ModelMap, model: nn.Module) -> list[Finding]:
    """A chain of more than ``DEEP_LAYERS`` weight layers with no residual or dense path."""
    if m.shortest_weight_path <= DEEP_LAYERS:
        return []
    chain = [x.name for x in m.layers if x.kind != "norm"]
    return [Finding(
        "deep-without-skip", "warning",
        f"every path from input to output crosses at least {m.shortest_weight_path} weight layers "
        f"(> {DEEP_LAYERS}) with no skip connection: deep plain stacks train worse than shallower "
        "ones (degradation)",
        layers=chain, evidence={"shortest_weight_path": m.shortest_weight_path,
                                "longest_weight_path": m.longest_weight_path, "threshold": DEEP_LAYERS},
        remedies=["residual", "rezero", "batchnorm"],
        reference="He et al. 2016 (Deep Residual Learning); Srivastava et al. 2015 (Highway networks)")]


def small_batch_batchnorm(m: ModelMap, model: nn.Module) -> list[Finding]:
    """BatchNorm in training mode with fewer than ``BN_MIN_BATCH`` samples per call."""
    mods = modules_by_name(model)
    hits = []
    for x in m.layers:
        mod = mods.get(x.name)
        if not isinstance(mod, nn.modules.batchnorm._BatchNorm) or not mod.training or not x.input_shape:
            continue
        if isinstance(mod, nn.SyncBatchNorm):  # statistics over all ranks
            continue
        batch = x.input_shape[0] if len(x.input_shape) > 1 else 1
        if batch < BN_MIN_BATCH:
            hits.append((x.name, batch))
    if not hits:
        return []
    batch = min(b for _, b in hits)
    return [Finding(
        "small-batch-batchnorm", "warning",
        f"{len(hits)} BatchNorm layer(s) see a batch of {batch} (< {BN_MIN_BATCH}) in training mode: "
        "their statistics are noisy; if training uses larger batches, ignore this",
        layers=[n for n, _ in hits], evidence={"batch": batch, "threshold": BN_MIN_BATCH},
        remedies=["groupnorm", "layernorm"],
        reference="Ioffe & Szegedy 2015; Wu & He 2018 (Group Normalization)")]


def _steps(x, mod: nn.Module) -> int:  # noqa: ANN001 - a modelmap.Layer
    if isinstance(mod, nn.RNNCellBase):
        return x.calls
    shape = x.input_shape or ()
    if len(shape) == 3:
        return shape[1] if mod.batch_first else shape[0]
    return shape[0] if len(shape) == 2 else 0


def long_sequence_rnn(m: ModelMap, model: nn.Module) -> list[Finding]:
    """A vanilla RNN over more than ``RNN_LONG`` steps."""
    mods = modules_by_name(model)
    hits = [(x.name, _steps(x, mods[x.name])) for x in m.layers
            if isinstance(mods.get(x.name), (nn.RNN, nn.RNNCell))]
    hits = [(n, t) for n, t in hits if t > RNN_LONG]
    if not hits:
        return []
    steps = max(t for _, t in hits)
    very = steps > RNN_VERY_LONG
    advice = ("an LSTM/GRU helps, but over this many steps attention or a state-space model is "
              "the usual choice" if very else "an LSTM or GRU keeps the gradient alive through time")
    return [Finding(
        "long-sequence-rnn", "warning",
        f"a vanilla RNN runs over {steps} steps (> {RNN_LONG}): its gradient through time decays "
        f"geometrically; {advice}",
        layers=[n for n, _ in hits], evidence={"steps": steps, "threshold": RNN_LONG,
                                               "very_long_threshold": RNN_VERY_LONG},
        remedies=["lstm", "orthogonal-init", "clip-norm"],
        reference="Bengio, Simard & Frasconi 1994; Hochreiter & Schmidhuber 1997")]


STATIC_RULES: dict[str, Rule] = {
    "saturating-hidden-activation": saturating_hidden_activation,
    "poor-init": poor_init_all,
    "deep-without-skip": deep_without_skip,
    "small-batch-batchnorm": small_batch_batchnorm,
    "long-sequence-rnn": long_sequence_rnn,
    "degenerate-norm": degenerate_norms,
}


def static_findings(m: ModelMap, model: nn.Module) -> list[Finding]:
    """Every static rule on the map."""
    return [f for rule in STATIC_RULES.values() for f in rule(m, model)]


__all__ = ["BN_MIN_BATCH", "STATIC_RULES", "deep_without_skip", "init_gain", "long_sequence_rnn", "poor_init",
           "poor_init_all",
           "saturating_hidden_activation", "small_batch_batchnorm", "static_findings"]
