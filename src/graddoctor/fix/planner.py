"""The planner: findings -> an ordered, coherent list of remedies, each with its reason.

Each finding carries its own ranked ``remedies``; the planner turns the set of
findings into *one* combination that fits together, using the model's map
(activation families, depth, skip paths, norms, batch size). Findings of severity info are
no fault and get nothing (a healthy BERT's pooler tanh used to get a ReLU swap and a He re-draw
of every Linear):

| findings | plan |
|---|---|
| tanh hidden activations with ``poor-init`` / ``signal-collapse``, fewer than DEEP layers | keep tanh, ``xavier-init`` (the init scale is the cause); ``edge-of-chaos-init`` for a plain tanh MLP (``_edge_of_chaos``) |
| ``saturating-hidden-activation`` / ``saturated-activation``; or ``vanishing-gradient`` / ``signal-collapse`` / ``stalled-layers`` while sigmoid/tanh hidden modules exist | swap them (the finding's first-ranked of relu, leaky-relu, gelu, elu, silu; default ``relu``) + re-init for the new activation (``he-init`` unless the swap's findings rank lsuv/orthogonal first; never Xavier for ReLU: ``poor-init`` ranked its remedies for the old activation); activations called in ``forward`` (``torch.sigmoid``) only: the swap is a manual code change and the re-init is for the activation that stays (``edge-of-chaos-init`` on a plain chain, else ``xavier-init``) |
| ``dead-relu`` | ``leaky-relu`` + ``he-init`` |
| ``poor-init``, ``signal-explosion``, ``signal-collapse``; a ``vanishing-gradient`` of exactly-zero gradients on the input side at init (a dead path: a ReLU layer whose bias of -10 kills every unit) | ``he-init`` when ReLU-family activations follow the layers, else ``xavier-init`` (a finding ranking ``lsuv-init``/``orthogonal-init`` first gets it); single layers off scale with no other cause: those layers only |
| ``deep-without-skip``; or a vanishing signal (``vanishing-gradient`` / ``signal-collapse`` / ``stalled-layers``) in a net with >= SKIP_DEPTH layers on its longest path and no skip path | ``residual`` when the chain has norm layers (ResNet), else ``rezero`` whatever the ranking: a plain identity skip without norms doubles the signal variance per block, a zero-init gain keeps a deep stack trainable without norms (measured: 200-layer MLP on digits, rezero 97% vs residual+batchnorm 87% in 20 s). Why from 12 layers: a plain stack degrades with depth well before 50 layers (He et al. 2016: plain 20-56 layers on CIFAR), sooner when narrow (the spread over weight draws of activation and gradient sizes grows with the sum of 1/width over the layers: Hanin 2018; Hanin & Rolnick 2018); measured, repair suite, 5 seeds, width 32, swap + re-init alone vs with rezero: 20-layer MLP digits Adam 0.915 -> 0.964, SGD 0.925 -> 0.961, mnist1d 0.451 -> 0.506; 16 layers 0.949 -> 0.966, tanh 16 layers 0.947 -> 0.964; 12 layers mnist1d 0.461 -> 0.555, digits 0.951 -> 0.970; plain 20-layer CNN 0.910 (batchnorm) -> 0.952 (rezero). The threshold 12 is in-sample (not measured below 12; the 4- and 6-layer rows repair without a skip) |
| ``vanishing-gradient`` / ``signal-collapse`` / ``stalled-layers`` in a *conv* net of >= NORM_DEPTH layers with no norm and no skip planned (it already has skip paths) | insert ``batchnorm`` (batch >= 16) or ``groupnorm`` after the hidden convs (Ioffe & Szegedy 2015; measured: plain 20-layer CNN on digits 0.46 -> 0.90; MLPs get none: 0.88 -> 0.65) |
| ``small-batch-batchnorm`` | replace BatchNorm by ``groupnorm`` (conv nets) or ``layernorm`` (BatchNorm on (B, F) only) |
| ``exploding-gradient`` | ``clip-norm`` (applied when the optimizer is given) + re-init if the init caused it (``signal-explosion``/``poor-init``) |
| ``non-finite`` | ``clip-norm`` + ``lower-lr`` (advice) |
| ``vanishing-gradient`` cut by normalisation gains at exactly 0 (the init probe's evidence ``zero_params`` / ``zero_params_stationary``), or ``poor-init`` of norm gains near 0 (remedies ``["norm-gain"]``) | ``norm-gain`` on those norms (gain 1, weights kept); with the latter, the gradient, signal and plateau findings (read through those gains) plan nothing more |
| ``degenerate-norm`` (a norm with one or two values per group) | ``norm-groups`` on those norms (GroupNorm: fewer groups; other norms: the finding's advice); the gradient, signal and plateau findings read through them plan nothing more |
| ``vanishing-gradient`` from a closed LSTM/GRU keep gate (evidence ``gate_bias``) | ``forget-bias`` on those layers (bias +1, weights kept; Jozefowicz et al. 2015), and no orthogonal re-draw when that is the only recurrent finding |
| ``long-sequence-rnn``; vanishing / exploding / non-finite in a model with recurrent layers | ``orthogonal-init`` of the recurrent layers (Saxe et al. 2014; Le et al. 2015) (+ ``clip-norm`` when long or exploding) + ``lstm`` (code change: the real fix) for a vanilla ``nn.RNN`` that vanishes |
| ``batchnorm-eval-mode`` | ``train-mode`` of the BatchNorm layers in eval mode |
| ``clip-too-tight`` | ``clip-norm`` at the finding's ``suggested_max_norm`` (replaces the user's clip) |
| ``post-ln-no-warmup`` | ``warmup`` (+ ``prenorm`` where the blocks can switch) |
| ``loss-plateau`` / ``stalled-layers`` with nothing structural to fix | ``lr-find`` (advice) |

Order of application: activation swap, BatchNorm replacement, norm insertion,
re-initialisation (after the changes that decide each layer's activation, so it sees the
final ones), skip connections, clipping, advice. Skips come after the re-init: wrapping
blocks moves modules but changes no layer's activation, so the re-init needs no second
trace of the wrapped model (``repair`` shares one ``ModelMap`` along the plan); projection
shortcuts, the only new weight layers, keep PyTorch's default init.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.report import Finding, Report
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 2))
    >>> r = Report([Finding("saturating-hidden-activation", "warning", "sigmoid hidden", ["1"])])
    >>> [s.remedy for s in plan(r, net, torch.randn(8, 4))]
    ['relu', 'he-init']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from graddoctor import kinds
from graddoctor.diagnose.thresholds import BN_INSERT_MIN_BATCH
from graddoctor.fix.remedies.activation import SWAPS
from graddoctor.fix.remedies.base import batch_size
from graddoctor.fix.remedies.init import SCHEMES
from graddoctor.fix.remedies.norm_gain import zero_gains
from graddoctor.fix.remedies.prenorm import post_ln_blocks
from graddoctor.fix.remedies.registry import get
from graddoctor.measure.trained import looks_trained
from graddoctor.modelmap import ModelMap
from graddoctor.report import Finding, Report

#: layers on the longest path from which a plain (skip-free) stack is "deep" (tanh is swapped
#: even when its init is the cause)
DEEP = 50
#: layers on the longest path from which a plain stack with a vanishing signal gets a skip path
#: (see the table: measured 12-20 layers; in-sample)
SKIP_DEPTH = 12
#: layers from which a plain stack with a vanishing signal also gets normalisation layers
NORM_DEPTH = 16

ACTIVATIONS = SWAPS
INITS = SCHEMES
SKIPS = ("residual", "rezero")
PHASES: dict[str, int] = {
    **{a: 0 for a in ACTIVATIONS}, "groupnorm": 1, "layernorm": 1, "batchnorm": 2,
    **{i: 3 for i in INITS}, "forget-bias": 3, "norm-gain": 3, "norm-groups": 1, "edge-of-chaos-init": 3, "residual": 4, "rezero": 4, "clip-norm": 5, "clip-value": 5,
    "clip-agc": 5, "lstm": 6, "lower-lr": 6, "lr-find": 6,
    "train-mode": 1, "prenorm": 4, "warmup": 5,
}

_VANISH = {"vanishing-gradient", "signal-collapse", "stalled-layers"}
#: findings that norm gains near zero explain: the gradient and signal scales read through them
_GAIN_EXPLAINED = {"vanishing-gradient", "exploding-gradient", "signal-collapse", "signal-explosion",
                   "stalled-layers", "loss-plateau"}


@dataclass
class PlanStep:
    """One remedy to apply: its id, the reason, the finding codes behind it, options."""

    remedy: str
    reason: str
    codes: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"remedy": self.remedy, "reason": self.reason, "codes": self.codes,
                "options": self.options}


@dataclass
class _Facts:
    hidden_saturating: list[str]
    depth: int
    has_skip: bool
    has_norm: bool
    has_conv: bool
    batch: int | None
    rnns: list[str]
    relu_family: bool = True  # most hidden weight layers are followed by a ReLU-family activation
    hidden_kinds: frozenset = frozenset()  # kinds of the hidden saturating sites
    vanilla_rnns: tuple = ()  # plain nn.RNN modules (the lstm advice)
    functional_only: bool = False  # every hidden saturating site is a functional call (no module to swap)


def facts(model: nn.Module, example_inputs: Any = None, mmap: ModelMap | None = None) -> _Facts:
    """What the planner needs to know about the model (from a ModelMap when inputs are given;
    ``mmap``: that map, if already built)."""
    has_norm = any(isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))
                   for m in model.modules())
    has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    rnns = [n for n, m in model.named_modules() if isinstance(m, nn.RNNBase)]
    vanilla = tuple(n for n, m in model.named_modules() if type(m) is nn.RNN)
    if example_inputs is None and mmap is None:
        acts = [n for n, m in model.named_modules() if kinds.family(kinds.of_module(m)) == "saturating"]
        layers = sum(isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)) for m in model.modules())
        hidden = frozenset(kinds.of_module(m) for n, m in model.named_modules() if n in acts[:-1])
        return _Facts(acts[:-1] if acts else [], layers, False, has_norm, has_conv, None, rnns,
                      True, hidden, vanilla)
    mm = mmap if mmap is not None else ModelMap(model, example_inputs)
    sat = [s.name for s in mm.activations if s.family == "saturating" and not s.is_output]
    has_skip = mm.shortest_path < 0.5 * mm.longest_path
    fam = [kinds.family(x.activation) or "none" for x in mm.layers if not x.is_output]
    hidden = frozenset(s.kind for s in mm.activations if s.name in sat)
    functional = bool(sat) and all(s.functional for s in mm.activations if s.name in sat)
    return _Facts(sat, mm.longest_path, has_skip, has_norm, has_conv, batch_size(example_inputs),
                  rnns, fam.count("relu") * 2 >= len(fam), hidden, vanilla, functional)


def plan(
    report: Report | list[Finding],
    model: nn.Module,
    example_inputs: Any = None,
    optimizer: Any = None,
    mmap: ModelMap | None = None,
) -> list[PlanStep]:
    """Findings -> ordered remedies with a reason each (see the module table).

    Args:
        report: a ``Report`` (or a list of findings) from ``check`` or ``watch``.
        model: the model the findings are about.
        example_inputs: a batch (depth, activation sites and batch size come from it).
        optimizer: given, clipping is applied rather than advised.
        mmap: the ``ModelMap`` of ``model`` on ``example_inputs``, if already built.
    """
    # info findings are no fault (a BERT's pooler tanh, applied once): nothing to repair for them
    findings = [f for f in (report.findings if isinstance(report, Report) else list(report)) if f.severity != "info"]
    # the init probe's cut by normalisation gains at exactly 0 (probe_zero): their gain back to 1
    # is the whole fix, so those findings ask for no swap, re-draw or skip
    named = {id(f): {n.rpartition(".")[0] for n in _zero_params(f)}
             for f in findings if f.code == "vanishing-gradient" and _zero_params(f)}
    zero = set(zero_gains(model)) if named else set()  # (read only when a finding names zeros)
    cut = {k: v & zero for k, v in named.items()}
    zero_norms = sorted(set().union(*cut.values())) if cut else []
    findings = [f for f in findings if not cut.get(id(f))]
    # norm gains drawn near zero (check's poor-init, norm_gains): their gain back to 1, likewise;
    # the gradient and signal scales measured through them are theirs (a stock MobileViT re-drawn
    # with He on top trained to 1.45 in 60 steps, with its gains reset alone to 0.27)
    small = [f for f in findings if f.code == "poor-init" and f.remedies == ["norm-gain"]]
    zero_norms = sorted(set(zero_norms) | {n for f in small for n in f.layers})
    # a norm with one or two values per group (degenerate_norms) cuts its path whatever its gain:
    # fewer groups; the gradient and signal scales measured through it are its effect too
    dead = [f for f in findings if f.code == "degenerate-norm"]
    findings = [f for f in findings if f not in small and not ((small or dead) and f.code in _GAIN_EXPLAINED)]
    by_code: dict[str, list[Finding]] = {}
    for f in findings:
        by_code.setdefault(f.code, []).append(f)
    codes = set(by_code)
    fx = facts(model, example_inputs, mmap)
    steps: dict[str, PlanStep] = {}
    if zero_norms:
        steps["norm-gain"] = PlanStep("norm-gain", f"{len(zero_norms)} normalisation gain(s) at or near 0 "
                                      "cut the signal and the gradient through them",
                                      ["poor-init"] * bool(small) + ["vanishing-gradient"] * any(cut.values()),
                                      {"layers": zero_norms})

    if any("norm-groups" in f.remedies for f in dead):  # (a LayerNorm over one value: the finding's advice)
        steps["norm-groups"] = PlanStep("norm-groups", "degenerate-norm: normalisation groups of one or two "
                                        "values pass no signal; fewer groups", ["degenerate-norm"],
                                        {"layers": sorted({n for f in dead for n in f.layers})})

    def ranked(cands: tuple[str, ...], triggers: set[str], default: str) -> str:
        for c in sorted(triggers & codes):
            for r in (r for f in by_code[c] for r in f.remedies):
                if r in cands:
                    return r
        return default

    def add(rid: str, reason: str, trig: set[str], **options: Any) -> None:
        if rid in steps:
            steps[rid].codes = sorted(set(steps[rid].codes) | (trig & codes))
            return
        steps[rid] = PlanStep(rid, reason, sorted(trig & codes), options)

    # activations
    act_trig = {"saturating-hidden-activation", "saturated-activation"}
    swap_trig = act_trig | (_VANISH if fx.hidden_saturating else set())
    new_family = None
    # tanh whose trouble is the weight scale (poor-init / signal-collapse) in a net that is not
    # very deep: keep tanh, fix the init (Glorot & Bengio 2010); sigmoid is always swapped
    # (measured: 16-layer tanh, std 0.03 init, SGD: tanh+xavier 0.94 vs relu+he 0.87 on digits)
    keep_tanh = (bool(fx.hidden_saturating) and fx.hidden_kinds <= kinds.TANH_LIKE and fx.depth < DEEP
                 and bool(codes & {"poor-init", "signal-collapse"}))
    if keep_tanh:  # Xavier, or the small init a finding ranks first (attention too peaked at init)
        add(ranked(("small-init", "xavier-init"), {"poor-init", "signal-collapse"}, "xavier-init"),
            "tanh kept: the weight scale, not tanh itself, starves the signal "
            f"({_list(codes & {'poor-init', 'signal-collapse'})})",
            swap_trig | {"poor-init", "signal-collapse"})
    elif codes & swap_trig and (fx.hidden_saturating or codes & act_trig):
        act = ranked(ACTIVATIONS, swap_trig, "relu")
        add(act, f"{_list(codes & swap_trig)}: hidden sigmoid/tanh activations "
                 f"({len(fx.hidden_saturating)} sites) shrink the gradient at every layer", swap_trig)
        # functional calls (torch.sigmoid in forward) are a manual code change: the re-init is for
        # the activation that stays (measured: 15 torch.sigmoid layers on digits, He 0.10 vs 0.95)
        new_family = "saturating" if fx.functional_only else "relu"
    if "dead-relu" in codes:
        add("leaky-relu", "dead-relu: units that never activate pass no gradient; a leaky slope "
                          "keeps them alive", {"dead-relu"})
        new_family = "relu"
    # skip connections
    deep_vanish = bool(codes & _VANISH) and fx.depth >= SKIP_DEPTH and not fx.has_skip
    if "deep-without-skip" in codes or deep_vanish:
        trig = {"deep-without-skip"} | (_VANISH if deep_vanish else set())
        # coherence: a plain identity skip without norms doubles the variance per block,
        # so a norm-free stack gets ReZero whatever the ranking; ResNet-style (norms) gets residual
        skip = ranked(SKIPS, trig, "residual") if fx.has_norm else "rezero"
        add(skip, f"{_list(codes & trig)}: {fx.depth} layers on one path with no skip connection",
            trig)
    # norms: a vanishing signal through >= NORM_DEPTH conv layers with no norm anywhere, when no
    # skip path is planned (the net has skips already; measured on digits: plain 20-layer CNN
    # 0.46 -> 0.90 with BatchNorm, but 0.952 with ReZero vs 0.910 with BatchNorm after the
    # swap + re-init, so a plain stack gets the skip; a 20-layer ReLU MLP trained worse with
    # BatchNorm, 0.88 -> 0.65, so MLPs get none)
    skip_planned = any(s in steps for s in SKIPS)
    if (codes & _VANISH and fx.depth >= NORM_DEPTH and fx.has_conv and not fx.has_norm
            and not skip_planned and fx.batch is not None):
        norm = "groupnorm" if fx.batch < BN_INSERT_MIN_BATCH else "batchnorm"
        add(norm, f"{_list(codes & _VANISH)}: {fx.depth} plain layers without normalisation "
                  f"(batch {fx.batch})", set(_VANISH))
    if "small-batch-batchnorm" in codes:
        f = by_code["small-batch-batchnorm"][0]
        norm = "groupnorm" if fx.has_conv else ranked(("layernorm", "groupnorm"),
                                                        {"small-batch-batchnorm"}, "layernorm")
        add(norm, f"small-batch-batchnorm: batch {f.evidence.get('batch', fx.batch)} is too "
                  "small for BatchNorm's statistics", {"small-batch-batchnorm"})
    # init
    init_trig = {"poor-init", "signal-explosion", "signal-collapse"}
    expl_init = "exploding-gradient" in codes and codes & {"signal-explosion", "poor-init"}
    # a dead path at init (exactly-zero gradients on the input side) in a ReLU net that is no trained
    # checkpoint: its layers re-drawn, biases at zero (a bias of -10 silencing a layer)
    dead = sorted({n for f in by_code.get("vanishing-gradient", []) if f.evidence.get("zero_gradient_input_side")
                   for n in f.layers})
    dead_path = bool(dead) and fx.relu_family and not looks_trained(model)
    if (codes & init_trig or new_family or expl_init or dead_path) and not keep_tanh:
        relu = new_family == "relu" or (fx.relu_family and new_family != "saturating")
        # coherence: after a swap to the ReLU family the findings' ranking (made for the old
        # activation) may put xavier-init first; ReLU-family layers get He (or LSUV/orthogonal)
        # and the swap's own findings rank first (poor-init ranked for the old activation: its
        # first choice is kept only if it suits the new one, e.g. lsuv, never its second)
        cands = tuple(i for i in INITS if i != "xavier-init") if relu else INITS
        default = "he-init" if relu else "xavier-init"
        init = ranked(cands, swap_trig | {"dead-relu"}, "") if new_family else ""
        if new_family and not init:  # the init findings' first choice, if it suits the new family
            first = ranked(INITS, init_trig, default)
            init = first if first in cands else default
        init = init or ranked(cands, init_trig, default)
        if new_family == "saturating":  # the sigmoid/tanh calls stay: the edge of chaos on a plain chain
            plain = not (fx.has_skip or fx.has_norm or fx.has_conv or fx.rnns)
            init = "edge-of-chaos-init" if plain and example_inputs is not None else "xavier-init"
        why = (f"{_list(codes & init_trig)}: weight scale does not match the following activation"
               if codes & init_trig else "re-initialise for the activation that stays (its calls are in "
               "forward: swapping them is a code change)" if new_family == "saturating"
               else "re-initialise for the new activation" if new_family or expl_init
               else "vanishing-gradient: no gradient reaches the input side at init (a dead path): "
                    "re-draw the weights, biases at zero")
        # single layers off scale, and nothing else calls for a re-draw: those layers only (a stock
        # EfficientNet's one small conv re-drawn with every other layer trained to 1.55, not 0.09)
        alone = codes & (init_trig | swap_trig | {"dead-relu", "exploding-gradient"}) == {"poor-init"}
        single = [f for f in by_code.get("poor-init", []) if f.evidence.get("single_layers")]
        only = {"layers": sorted({n for f in single for n in f.layers})} if (
            alone and not new_family and single and len(single) == len(by_code["poor-init"])) else {}
        if dead_path and not (codes & init_trig or new_family or expl_init):
            only = {"layers": dead}
        add(init, why, init_trig | swap_trig | {"dead-relu"} | ({"vanishing-gradient"} if dead_path else set()), **only)
    # clipping and advice
    if codes & {"exploding-gradient", "non-finite", "long-sequence-rnn"}:
        trig = {"exploding-gradient", "non-finite", "long-sequence-rnn"}
        clip = ranked(("clip-norm", "clip-agc", "clip-value"), trig, "clip-norm")
        add(clip, f"{_list(codes & trig)}: bound the update size"
                  + ("" if optimizer is not None else " (pass optimizer= to attach the hook)"), trig)
    if "non-finite" in codes:
        add("lower-lr", "non-finite: the loss or gradients overflowed", {"non-finite"})
    rnn_trig = {"long-sequence-rnn", "exploding-gradient", "non-finite"} | _VANISH
    gates = [f for f in by_code.get("vanishing-gradient", []) if "gate_bias" in f.evidence]
    if gates:  # a closed keep gate (watch's forget_gate rule): open it, the weights kept
        add("forget-bias", "vanishing-gradient: the LSTM/GRU keep gate is closed (memory ~1 step); "
                           "start it open", {"vanishing-gradient"},
            layers=sorted({n for f in gates for n in f.layers}))
    gate_only = gates and codes & rnn_trig == {"vanishing-gradient"} and len(gates) == len(by_code["vanishing-gradient"])
    if fx.rnns and codes & rnn_trig and not gate_only:
        add("orthogonal-init", f"{_list(codes & rnn_trig)}: an orthogonal recurrent matrix "
                               "(spectral radius 1) neither shrinks nor grows the gradient "
                               "through time", rnn_trig, layers=fx.rnns)
    if fx.vanilla_rnns and codes & ({"long-sequence-rnn"} | _VANISH):
        add("lstm", f"{_list(codes & ({'long-sequence-rnn'} | _VANISH))}: a vanilla RNN forgets "
                    "over long sequences", {"long-sequence-rnn"} | _VANISH)
    # mechanism findings (training time): their own remedy, whatever else the run shows
    if "batchnorm-eval-mode" in codes:
        f = by_code["batchnorm-eval-mode"][0]
        add("train-mode", "batchnorm-eval-mode: BatchNorm layers in eval mode normalise with "
                          "running statistics that never update", {"batchnorm-eval-mode"}, layers=f.layers)
    if "clip-too-tight" in codes:
        f = by_code["clip-too-tight"][0]
        value = f.evidence.get("suggested_max_norm", 1.0)
        add("clip-norm", f"clip-too-tight: the clip cuts every step to "
                         f"{f.evidence.get('pinned_norm', 0):.3g}; clip at max_norm {value:g} instead "
                         "(replace your clip_grad_norm_ call)", {"clip-too-tight"}, value=value)
    if "post-ln-no-warmup" in codes:
        add("warmup", "post-ln-no-warmup: ramp the learning rate up over the first steps",
            {"post-ln-no-warmup"})
        if post_ln_blocks(model):
            add("prenorm", "post-ln-no-warmup: pre-LN blocks train without a warm-up",
                {"post-ln-no-warmup"})
    if codes & {"loss-plateau", "stalled-layers"} and not steps:
        add("lr-find", f"{_list(codes & {'loss-plateau', 'stalled-layers'})}: nothing structural "
                       "to fix; the learning rate is the next suspect",
            {"loss-plateau", "stalled-layers"})
    frozen = any(isinstance(m, nn.Linear) and not any(p.requires_grad for p in m.parameters(recurse=False))
                 for m in model.modules())  # edge_of_chaos re-draws the whole chain; reinit skips frozen layers
    _edge_of_chaos(steps, fx, keep_tanh and example_inputs is not None and not frozen)
    return sorted(steps.values(), key=lambda s: PHASES[s.remedy])


def _edge_of_chaos(steps: dict[str, PlanStep], fx: _Facts, tanh_kept: bool) -> None:
    """A plain tanh MLP (no skip, norm, conv or recurrence, none planned, no frozen layer) whose init is re-drawn
    for tanh gets orthogonal weights at the edge of chaos instead of Glorot's Gaussian
    (Pennington et al. 2017: dynamical isometry speeds up tanh nets). Measured, fresh re-draws,
    digits/MNIST-1D, Adam or SGD, score at N steps: on 6 tanh MLPs outside the benchmarks (3-10
    layers, width 32-256, std 0.02-1.0 and PyTorch's default), 3 seeds each, it beat Xavier in
    16 of 18 runs (MNIST-1D +0.03 to +0.04); 20-layer std-0.9 MLP: target reached at 12-24 steps
    against 36-108. A 6-layer tanh CNN (delta-orthogonal) did not gain: conv nets keep Xavier."""
    plain = not (fx.has_skip or fx.has_norm or fx.has_conv or fx.rnns)
    planned = set(steps) & {*SKIPS, "batchnorm", "layernorm", "groupnorm"}
    if tanh_kept and plain and not planned and "xavier-init" in steps and not steps["xavier-init"].options:
        old = steps.pop("xavier-init")
        steps["edge-of-chaos-init"] = PlanStep("edge-of-chaos-init", old.reason + "; a plain tanh chain: orthogonal "
                                               "weights at the edge of chaos", old.codes)


def _zero_params(f: Finding) -> list[str]:
    """The exactly-zero parameters that cut a check-time vanishing gradient (its evidence)."""
    return list(f.evidence.get("zero_params_stationary", f.evidence.get("zero_params", [])) or [])


def plan_from_ids(ids: list[str]) -> list[PlanStep]:
    """An explicit plan (``repair(..., remedies=[...])``): the ids in the order given.

    Raises:
        InputError: an unknown id (the message lists the known ones).

    Example:
        >>> [s.remedy for s in plan_from_ids(["elu", "he-init"])]
        ['elu', 'he-init']
    """
    return [PlanStep(get(r).id, "requested") for r in ids]


def _list(codes: set[str]) -> str:
    return ", ".join(sorted(codes))


__all__ = ["DEEP", "NORM_DEPTH", "SKIP_DEPTH", "PHASES", "PlanStep", "facts", "plan", "plan_from_ids"]
