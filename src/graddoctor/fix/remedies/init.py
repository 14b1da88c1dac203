"""Re-initialisation: He, Xavier, orthogonal (delta-orthogonal for conv), LSUV.

Each Linear/Conv layer is re-drawn with the gain of the activation that
*follows* it (``ModelMap`` ``Layer.activation``); an output layer, which no
activation follows, takes the gain of the activation that feeds it (He et al.
2015 derive the factor 2 from the ReLU in front of a layer); biases are set to zero. Scales (``fan_in``/``fan_out`` as in ``torch.nn.init``):

| remedy | weight | reference |
|---|---|---|
| ``he-init`` | N(0, gain^2 / fan_in) | He et al. 2015 |
| ``xavier-init`` | N(0, 2 / (fan_in + fan_out)) (times gain^2 for the ReLU family only: Glorot & Bengio's tanh/sigmoid init has no gain, which is also what ``check`` accepts) | Glorot & Bengio 2010 |
| ``orthogonal-init`` | gain * orthogonal (Linear); conv: zero kernel, centre tap = gain * orthogonal (delta-orthogonal) | Saxe et al. 2014; Xiao et al. 2018 |
| ``small-init`` | N(0, 2 / (5 fan_in)), no gain: a Transformer's usual small scale (std 0.02 at width 1000), attention logits start near 0; embedding tables too, N(0, 2 / (5 d)) | Nguyen & Salazar 2019 |
| ``lsuv-init`` | orthogonal, then each layer in execution order rescaled until its output variance on the example batch is 1 | Mishkin & Matas 2016 |

Gains come from ``graddoctor.kinds.gain``: relu/relu6/gelu/silu/elu/mish sqrt(2), leaky_relu
sqrt(2 / (1 + slope^2)), tanh 5/3, selu 3/4, sigmoid and none 1. ``nn.MultiheadAttention``'s
query/key/value projections (parameters of its own, not Linear layers) are re-drawn block by block
with gain 1; Hugging Face's ``Conv1D`` (GPT-2: a Linear whose weight is stored (in, out)) is a
Linear. Recurrent and norm layers are left alone (``orthogonal-init`` also draws ``weight_hh`` of
RNN/LSTM/GRU orthogonal per gate), and embedding tables too except under ``small-init``, which
re-draws the tables of the residual width (token, position, segment) at N(0, 2 / (5 d)).

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    >>> new, change = reinit(net, "he-init", torch.randn(4, 256))
    >>> round(new[0].weight.std().item() * 16 / 2 ** 0.5, 1)  # std = sqrt(2/256)
    1.0
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from graddoctor import kinds
from graddoctor.errors import InputError
from graddoctor.fix.remedies.base import Change, frozen, modules_by_name, need_inputs, target
from graddoctor.fix.remedies.registry import RemedyContext, register
from graddoctor.modelmap import ModelMap, restored_state

SCHEMES = ("he-init", "xavier-init", "orthogonal-init", "lsuv-init", "small-init")


def gain(activation: str | None, slope: float = kinds.LEAKY_SLOPE) -> float:
    """The variance-preserving gain for the activation that follows a layer (``kinds.gain``).

    Example:
        >>> round(gain("relu"), 4), gain(None), round(gain("tanh"), 4)
        (1.4142, 1.0, 1.6667)
    """
    return kinds.gain(activation, slope)


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) as torch.nn.init computes them."""
    return nn.init._calculate_fan_in_and_fan_out(weight)


def expected_std(scheme: str, weight: torch.Tensor, activation: str | None,
                 slope: float = kinds.LEAKY_SLOPE) -> float:
    """The weight std a scheme documents: he ``kinds.target_std``, xavier ``kinds.glorot_std``
    (times the gain for the ReLU family only), small ``sqrt(2 / (5 fan_in))``.

    Example:
        >>> round(expected_std("he-init", torch.empty(10, 200), "relu"), 4)
        0.1
    """
    fan_in, fan_out = fans(weight)
    if scheme == "he-init":
        return kinds.target_std(fan_in, activation, slope)
    if scheme == "xavier-init":  # Glorot & Bengio's normalized init: no gain for tanh/sigmoid
        relu = kinds.family(activation) == "relu"
        return (gain(activation, slope) if relu else 1.0) * kinds.glorot_std(fan_in, fan_out)
    if scheme == "small-init":  # Nguyen & Salazar 2019 (SmallInit): no gain
        return math.sqrt(2.0 / (5.0 * fan_in))
    raise InputError(f"no closed-form std for {scheme!r}")


def reinit(
    model: nn.Module,
    scheme: str = "he-init",
    example_inputs: Any = None,
    *,
    inplace: bool = False,
    layers: list[str] | None = None,
    lsuv_tol: float = 0.05,
    lsuv_iters: int = 10,
    mmap: ModelMap | None = None,
) -> tuple[nn.Module, Change]:
    """Re-draw the weights of Linear/Conv layers (and, with ``small-init``, the input embedding tables) with ``scheme``.

    Args:
        scheme: "he-init" | "xavier-init" | "orthogonal-init" | "lsuv-init" | "small-init".
        example_inputs: a batch: gives the activation following each layer (without
            it, the next activation module in registration order is used) and is
            required by "lsuv-init".
        layers: restrict to these module names. Frozen layers (no parameter with
            ``requires_grad``) are never re-drawn.
        lsuv_tol / lsuv_iters: LSUV stops when |var - 1| < tol or after iters.
        mmap: the ``ModelMap`` of ``model`` on ``example_inputs`` if already built (no new
            trace); the structure does not change, so ``change.mmap`` is that map.

    Example:
        >>> net = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> reinit(net, "xavier-init")[1].details["gains"]["0"]
        1.667
    """
    if scheme not in SCHEMES:
        raise InputError(f"unknown init {scheme!r}; choose one of {list(SCHEMES)}")
    if scheme == "lsuv-init":
        need_inputs(example_inputs, scheme)
    new = target(model, inplace)
    mods = modules_by_name(new)
    if mmap is None and example_inputs is not None:
        mmap = ModelMap(new, example_inputs)
    follow = _following(new, mmap)
    # frozen layers (every parameter requires_grad=False) are kept: a frozen pretrained
    # backbone re-drawn would stay random for good
    names = [n for n in follow if (layers is None or n in layers) and not frozen(mods[n])]
    gains: dict[str, float] = {}
    with torch.no_grad():
        for name in names:
            m = mods[name]
            act, slope = follow[name]
            g = gain(act, slope)
            if isinstance(m, (nn.RNNBase,)):
                if scheme == "orthogonal-init":
                    _orthogonal_rnn(m)
                    gains[name] = 1.0
                continue
            if scheme in ("orthogonal-init", "lsuv-init"):
                _orthogonal(m.weight, g if scheme == "orthogonal-init" else 1.0)
            else:  # (HF GPT-2's Conv1D stores its weight as (in, out): its fans read transposed)
                w = m.weight.t() if _is_conv1d(m) else m.weight
                m.weight.normal_(0.0, expected_std(scheme, w, act, slope))
            if getattr(m, "bias", None) is not None:
                m.bias.zero_()
            gains[name] = round(g, 3)
        for name in _attentions(mods, layers):  # their packed q/k/v weights are not Linear layers
            _redraw_attention(mods[name], scheme)
            gains[name], follow[name] = 1.0, (None, kinds.LEAKY_SLOPE)
        for name in _embeddings(mods, layers) if scheme == "small-init" else ():
            _redraw_embedding(mods[name])
            gains[name], follow[name] = 1.0, (None, kinds.LEAKY_SLOPE)
    details: dict[str, Any] = {"scheme": scheme, "gains": gains,
                               "activations": {n: follow[n][0] for n in gains}}
    if scheme == "lsuv-init":
        details["lsuv_scale"] = _lsuv(new, [n for n in names if not isinstance(mods[n], nn.RNNBase)],
                                      example_inputs, lsuv_tol, lsuv_iters)
    why = {"he-init": "weights drawn with variance gain^2/fan_in keep the signal scale through "
                      "each layer (He et al. 2015)",
           "xavier-init": "weights drawn with variance 2 gain^2/(fan_in+fan_out) balance forward and "
                          "backward signal (Glorot & Bengio 2010)",
           "orthogonal-init": "orthogonal weights preserve norms exactly, so depth does not "
                              "shrink or grow the signal (Saxe et al. 2014; Xiao et al. 2018)",
           "small-init": "weights drawn with variance 2/(5 fan_in), a Transformer's usual small scale: "
                         "attention logits start near zero, so the softmax starts near uniform and "
                         "passes gradient to the query/key weights (Nguyen & Salazar 2019)",
           "lsuv-init": "orthogonal weights rescaled so each layer's output has unit variance on "
                        "the example batch (Mishkin & Matas 2016)"}[scheme]
    if not gains:  # every candidate layer frozen (or none found): nothing was drawn
        why = "no trainable layer to re-initialise: " + why
    if tied := _tied(mods, gains):  # a decoder tied to an embedding: the table is re-drawn with it
        details["tied"] = tied
        why += "; tied weights re-drawn with them: " + ", ".join(f"{o} (shares {n}'s weight)" for o, n in tied.items())
    return new, Change(scheme, list(gains), why, "applied" if gains else "advice", details, mmap=mmap)


def _tied(mods: dict[str, nn.Module], drawn: dict[str, float]) -> dict[str, str]:
    """Modules not re-drawn that hold a re-drawn layer's weight (tied embeddings): name -> that layer."""
    owner = {id(mods[n].weight): n for n in drawn if isinstance(getattr(mods[n], "weight", None), torch.Tensor)}
    return {o: owner[id(p)] for o, m in mods.items() if o not in drawn
            for p in m.parameters(recurse=False) if id(p) in owner}


def _following(model: nn.Module, mm: ModelMap | None) -> dict[str, tuple[str | None, float]]:
    """Linear/Conv/RNN layer name -> (activation for its gain, leaky slope), in execution order.

    The activation that follows the layer; for an output layer (none follows) the one that
    feeds it, as in He et al. 2015, whose factor 2 compensates the ReLU in front of a layer
    (measured: 16-layer ReLU MLP, SGD, digits: 0.83 with gain 1 on the head vs 0.93 with it).
    """
    mods = modules_by_name(model)

    def slope(site: str | None) -> float:
        m = mods.get(site or "")
        return float(getattr(m, "negative_slope", kinds.LEAKY_SLOPE))

    def wanted(m: nn.Module | None) -> bool:
        return isinstance(m, (nn.Linear, nn.modules.conv._ConvNd, nn.RNNBase)) or _is_conv1d(m)

    if mm is not None:
        out, prev = {}, (None, kinds.LEAKY_SLOPE)
        for x in mm.layers:
            if not wanted(mods.get(x.name)):
                continue
            out[x.name] = (x.activation, slope(x.activation_site))
            if x.activation is None and x.is_output:
                out[x.name] = prev  # the output layer: gain of the activation feeding it
            elif x.activation is not None:
                prev = out[x.name]
        for n, m in model.named_modules():  # uncalled layers (functional use): linear gain
            if wanted(m) and n not in out:
                out[n] = (None, kinds.LEAKY_SLOPE)
        return out
    out, pending = {}, []
    for n, m in model.named_modules():
        if wanted(m):
            for p in pending:
                out[p] = (None, kinds.LEAKY_SLOPE)
            pending = [n]
            out[n] = (None, kinds.LEAKY_SLOPE)
        elif (k := kinds.of_module(m)) is not None and pending:
            for p in pending:
                out[p] = (k, float(getattr(m, "negative_slope", kinds.LEAKY_SLOPE)))
            pending = []
    names = list(out)
    if len(names) > 1 and pending and out[names[-1]][0] is None:  # the last layer: output side
        out[names[-1]] = out[names[-2]]
    return out


def _is_conv1d(m: nn.Module | None) -> bool:
    """Hugging Face's ``Conv1D`` (GPT-2, GPT-J's relatives): a Linear whose weight is (in, out)."""
    return type(m).__name__ == "Conv1D" and isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() == 2


def _attentions(mods: dict[str, nn.Module], layers: list[str] | None) -> list[str]:
    """Trainable ``nn.MultiheadAttention`` modules to re-draw: all, or those named in ``layers``
    (by themselves or by their ``out_proj``)."""
    return [n for n, m in mods.items() if isinstance(m, nn.MultiheadAttention)
            and any(p.requires_grad for p in m.parameters(recurse=False))
            and (layers is None or n in layers or (f"{n}.out_proj" if n else "out_proj") in layers)]


def _embeddings(mods: dict[str, nn.Module], layers: list[str] | None) -> list[str]:
    """Trainable ``nn.Embedding`` tables to re-draw with ``small-init`` (all, or those in ``layers``)
    whose width is the widest table's: the token, position and segment tables that add into the
    residual stream. Narrower tables are no input embedding (T5's relative attention bias,
    ``(buckets, heads)``: N(0, 2 / (5 heads)) would draw it larger than its stock init)."""
    tables = {n: m for n, m in mods.items() if isinstance(m, nn.Embedding) and m.weight.requires_grad
              and (layers is None or n in layers)}
    width = max((m.weight.shape[1] for m in tables.values()), default=0)
    return [n for n, m in tables.items() if m.weight.shape[1] == width]


def _redraw_embedding(m: nn.Embedding) -> None:
    """A Transformer drawn large has large embedding tables too: token, position and segment tables
    are drawn at the small scale of its width, N(0, 2 / (5 d)), the padding row kept at 0 (a table
    left large next to re-drawn ones swamps them: a tiny OPT at ``initializer_range=1.0`` re-drawn
    without its position table sat at 4.84; with it at the small scale, 1.51 against 1.58 stock)."""
    m.weight.normal_(0.0, math.sqrt(2.0 / (5.0 * m.weight.shape[1])))
    if m.padding_idx is not None:
        m.weight[m.padding_idx].zero_()


def _redraw_attention(m: nn.MultiheadAttention, scheme: str) -> None:
    """Re-draw the query/key/value projections of ``m`` (packed ``in_proj_weight`` or the separate
    ``q/k/v_proj_weight``) block by block, each as an (embed_dim x its input) layer with gain 1;
    ``in_proj_bias`` to zero. Its ``out_proj`` is a Linear and is re-drawn with the others."""
    packed = m.in_proj_weight
    blocks = packed.chunk(3, 0) if packed is not None else (m.q_proj_weight, m.k_proj_weight, m.v_proj_weight)
    for w in blocks:
        if scheme in ("orthogonal-init", "lsuv-init"):
            nn.init.orthogonal_(w)
        else:
            w.normal_(0.0, expected_std(scheme, w, None))
    if m.in_proj_bias is not None:
        m.in_proj_bias.zero_()


def _orthogonal(weight: torch.Tensor, g: float) -> None:
    """Orthogonal for 2-D weights; delta-orthogonal for conv kernels (zero but the centre tap)."""
    if weight.dim() <= 2:
        nn.init.orthogonal_(weight, gain=g)
        return
    weight.zero_()
    centre = tuple(k // 2 for k in weight.shape[2:])
    tap = torch.empty(weight.shape[0], weight.shape[1], dtype=weight.dtype, device=weight.device)
    nn.init.orthogonal_(tap, gain=g)
    weight[(slice(None), slice(None), *centre)] = tap


def _orthogonal_rnn(rnn: nn.RNNBase) -> None:
    gates = {"LSTM": 4, "GRU": 3}.get(type(rnn).__name__, 1)
    for name, p in rnn.named_parameters():
        if name.startswith("weight_hh"):
            for chunk in p.chunk(gates, 0):
                nn.init.orthogonal_(chunk)
        elif name.startswith("weight_ih"):
            nn.init.xavier_uniform_(p)
        elif name.startswith("bias"):
            p.zero_()


def _lsuv(model: nn.Module, names: list[str], example_inputs: Any, tol: float,
          iters: int) -> dict[str, float]:
    """Rescale each layer to unit output variance on the batch; return the total scales.

    One forward pass rescales every layer in execution order: a forward hook on each
    layer measures its output variance, scales the weight by 1/std and returns the
    rescaled output, so the next layer already sees the corrected signal
    (Mishkin & Matas's layer-by-layer loop in a single pass). Passes repeat until
    every layer is within ``tol`` (nonlinear interactions such as BatchNorm in train
    mode) or ``iters`` passes ran.
    """
    from graddoctor.inputs import call_model, first_tensor

    mods = modules_by_name(model)
    scales = {n: 1.0 for n in names}
    off: dict[str, float] = {}

    def make_hook(name: str) -> Any:
        def hook(m: nn.Module, _a: Any, out: Any) -> Any:
            if name in done or not isinstance(out, torch.Tensor):
                return None
            done.add(name)
            var = out.float().var().item()
            off[name] = abs(var - 1.0)
            if not math.isfinite(var) or var <= 0 or abs(var - 1.0) < tol:
                return None
            s = 1.0 / math.sqrt(var)
            m.weight.mul_(s)
            scales[name] *= s
            b = getattr(m, "bias", None)
            if b is None:
                return out * s
            shape = (1, -1) + (1,) * (out.dim() - 2) if not (isinstance(m, nn.Linear) or _is_conv1d(m)) else (-1,)
            bias = b.view(shape)
            return (out - bias) * s + bias

        return hook

    with restored_state(model), torch.no_grad():
        handles = [mods[n].register_forward_hook(make_hook(n)) for n in names]
        try:
            for _ in range(iters):
                done: set[str] = set()
                off.clear()
                first_tensor(call_model(model, example_inputs))
                if all(v < tol for v in off.values()):
                    break
        finally:
            for h in handles:
                h.remove()
    return {n: round(v, 4) for n, v in scales.items()}


@register("he-init", "xavier-init", "orthogonal-init", "small-init", family="init", keeps_map=True,
          summary="re-initialise Linear/Conv weights with {id} (small-init: the input embedding tables too)", options=("lsuv_tol", "lsuv_iters"))
@register("lsuv-init", family="init", needs_inputs=True, keeps_map=True,
          summary="re-initialise Linear/Conv weights with lsuv-init", options=("lsuv_tol", "lsuv_iters"))
def reinit_layers(model: nn.Module, layers: list[str] | None,
                  ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """The registered remedy: ``reinit`` with scheme ``ctx.remedy`` on the ``layers``.

    Args:
        model: the model (deep-copied unless ``ctx.inplace``).
        layers: weight layers to re-draw; None: every Linear/Conv (and RNN for orthogonal).
        ctx: ``ctx.remedy`` the scheme; ``ctx.options``: ``lsuv_tol``, ``lsuv_iters``.

    Returns:
        ``(new_model, change)``; ``change.mmap`` is the map used (the structure is unchanged).

    Raises:
        InputError: "lsuv-init" without example inputs.

    Example:
        >>> net = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> reinit_layers(net, ["0"], RemedyContext("he-init"))[1].modules
        ['0']
    """
    return reinit(model, ctx.remedy, ctx.example_inputs, inplace=ctx.inplace, layers=layers,
                  mmap=ctx.model_map, **ctx.options)
