"""The initialisation probe: one forward and one backward on the example batch.

What it measures (numbers only; ``graddoctor.diagnose.checktime.probe_rules`` turns them into findings):

- ``grad_rms``: for each weight layer (norms and embeddings left out) that the loss's gradient
  reaches (the others are listed in ``off_path``), the RMS per element of dL/d(layer output), the
  gradient of the pre-activation, read by a tensor hook registered on the output in a forward hook
  (hooks registered before an in-place op see the value before it, so ``Linear -> ReLU(inplace)``
  still gives the pre-activation). Several calls of one module add up (root of the summed squares
  over the summed element counts). ``grad_log10`` is its log10, measured also where the value is
  below any float's range: where a gradient gets tiny at a layer that every backward path passes
  through, the hook multiplies it by a power of two and keeps the exponent (``probe_scale``), so a
  10,000-layer chain is measured to the input side instead of underflowing to zero.
- ``zero_params`` (exactly zero), those that move, what stays zero once they moved (``probe_zero``).
- ``unreached``: off-path layers whose trainable parameters no output of the model depends on (a
  ``.detach()``, ``torch.no_grad()``, a result thrown away): no loss trains them (``probe_reach``).
- ``act_var``: the variance of each of those layer outputs (forward signal).
- ``time_grad``: for a sequence (a 3-D float input to a model with RNN or
  attention layers, or the 3-D output of the first embedding), the norm of
  dL/dx_t for each step t.
- ``jacobian``: a sketch of the singular values of the Jacobian of the output
  with respect to that input (or the first layer's output when the input is
  not floating point): ``k`` random Gaussian projections u_i of the output give
  v_i = J^T u_i (vector-Jacobian products); the singular values of the matrix
  [v_i / ||u_i||] estimate the spread of J's spectrum (Pennington et al. 2017,
  dynamical isometry: a well-conditioned deep net has a spread near 1).

The loss (``graddoctor.measure.probe_loss``), in order of preference:
``loss_fn(output, target)``; the model's own loss (a ``loss`` field of any output
structure, or the leading scalar of a tuple, Hugging Face's ``return_dict=False``);
with a ``target`` and no ``loss_fn``, cross-entropy for an integer target and MSE for
a floating one; otherwise the *projection scalar* ``mean(output * R)``.

A module holding parameters at the model's root (a CLIP-style ``logit_scale``) is not a
profiled layer: its output is the model's; nor is a layer whose output is a scalar.

Gradients are taken with ``torch.autograd.grad`` with respect to the layer outputs (and the input),
so ``p.grad`` is never touched and no weight gradient is computed but the first layer's; train/eval
flags, buffers and the RNG state are restored; hooks are removed also when the forward raises.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    >>> p = probe(net, torch.randn(4, 8))
    >>> p.layers, p.loss_source
    (['0', '2'], 'projection')
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook
from torch.utils._pytree import tree_map

from graddoctor.errors import InputError, ModelCallError
from graddoctor.inputs import call_model, output_tensors
from graddoctor.measure.distributed import unwrap
from graddoctor.measure.probe_loss import (
    main_output,
    own_loss,
    probabilities_into,
    probe_loss,
    usable_loss,
)
from graddoctor.measure.probe_reach import cut_off
from graddoctor.measure.probe_scale import (
    LogSquares,
    cut_nodes,
    from_log10,
    rescale_exponent,
    scaled,
)
from graddoctor.measure.probe_zero import stationary_zeros, zero_parameters, zero_steps
from graddoctor.measure.zero_ops import zero_derivative_ops
from graddoctor.modelmap import PROBE_KINDS, ModelMap, module_names, restored_state


@dataclass
class ProbeResult:
    """Numbers measured by one probe (see the module docstring)."""

    layers: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    grad_rms: list[float] = field(default_factory=list)
    grad_log10: list[float] = field(default_factory=list)  # log10(grad_rms), also below float64's range
    grad_rescale_log2: int = 0  # the input side's gradient was multiplied by 2^this (0: never rescaled)
    grad_dtype: str = "float32"  # the dtype the backward ran in (its range is where gradients underflow)
    act_var: list[float] = field(default_factory=list)
    time_axis: int | None = None
    time_grad: list[float] | None = None
    jacobian: dict[str, Any] | None = None
    off_path: list[str] = field(default_factory=list)  # called, but no gradient reached them
    unreached: list[str] = field(default_factory=list)  # trainable, off the path of every output (probe_reach)
    cut: list[bool] = field(default_factory=list)  # per layer: every backward path passes its output
    calls_log10: dict[str, list[float]] = field(default_factory=dict)  # per call, in call order (3+ calls)
    zero_ops: list[str] = field(default_factory=list)  # zero-derivative ops on the loss's graph (round, sign)
    zero_params: list[str] = field(default_factory=list)  # trainable parameters exactly zero at init
    # those of them that get a nonzero gradient (they move at the first step); None: not measured
    zero_params_moving: list[str] | None = None
    zero_stationary: dict[str, list[str]] | None = None  # still zero once those moved (probe_zero)
    loss: float = float("nan")
    loss_source: str = ""
    probabilities_into: dict[str, Any] | None = None  # a log-space loss fed a softmax output (probe_loss)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_GLOBAL_HOOK_ABOVE = 1000  # more profiled modules than this: one global forward hook (filtered)


class _Acc:
    """Running sums for one layer: forward sum/sumsq/count, backward sumsq/count (as log2)."""

    __slots__ = ("s", "ss", "n", "g", "cut", "calls")

    def __init__(self) -> None:
        self.s = self.ss = 0.0
        self.n, self.g, self.cut = 0, LogSquares(), True
        self.calls: list[LogSquares] = []  # the backward sums of each call (a module applied several times)


def probe(
    model: nn.Module,
    example_inputs: Any,
    target: Any = None,
    loss_fn: Any = None,
    mmap: ModelMap | None = None,
    jacobian_k: int = 4,
    seed: int = 0,
    input_grad: bool = True,
) -> ProbeResult:
    """Run one forward and backward on ``example_inputs`` and measure the signal.

    Args:
        model: any ``nn.Module`` (left as it was: parameters, ``p.grad``, buffers, modes, RNG).
        example_inputs: a tensor, a tuple of tensors or a dict of keyword tensors.
        target: optional target for ``loss_fn`` (or the default loss, see module docs).
        loss_fn: optional ``loss_fn(output, target) -> scalar``.
        mmap: the ``ModelMap`` of the model on these inputs (built if None).
        jacobian_k: number of random projections for the Jacobian sketch (0: skip).
        seed: seed of the private generator for the projections.
        input_grad: differentiate with respect to the first float input too (the time-step
            profile, the input Jacobian). A model that sets ``requires_grad`` on its own input
            (HF Wav2Vec2's feature encoder in training mode) cannot take such an input: it is
            probed again without it.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> len(probe(net, torch.randn(3, 4)).grad_rms)
        2
    """
    t0 = time.perf_counter()
    model = unwrap(model)  # torch.compile / DataParallel / DDP: probe the module inside
    mmap = mmap or ModelMap(model, example_inputs)
    names = module_names(model)
    # the model itself holds parameters directly (a CLIP-style ``logit_scale``): its output is
    # the model's output (often the loss), not a layer's, so it is not profiled
    wanted = [x.name for x in mmap.layers if x.kind in PROBE_KINDS and x.name != ""]
    accs = {n: _Acc() for n in wanted}
    modules = {m: n for m, n in names.items() if n in accs}
    emb = next((x.name for x in mmap.layers if x.kind == "embedding"), None)
    state: dict[str, Any] = {"record": True, "emb_out": None, "first_out": None, "first_params": [],
                             "exp": 0, "cuts": set()}
    outs: list[torch.Tensor] = []

    def fwd_hook(module: nn.Module, args: Any, out: Any) -> None:
        if emb is not None and state["emb_out"] is None and names.get(module) == emb:
            t = _first_float(out)
            if t is not None and t.requires_grad:
                state["emb_out"] = t
        if module not in modules:
            return
        t = out if isinstance(out, torch.Tensor) and out.is_floating_point() else _first_float(out)
        if t is None or t.numel() < 2:  # a scalar output has no variance to profile
            return
        acc = accs[modules[module]]
        with torch.no_grad():
            d = t.detach()
            acc.s += float(d.sum(dtype=torch.float64))
            acc.ss += float(torch.linalg.vector_norm(d, dtype=torch.float64)) ** 2
            acc.n += d.numel()
        if t.requires_grad:
            if state["first_out"] is None:
                state["first_out"] = t
                state["first_params"] = [p for p in module.parameters(recurse=False) if p.requires_grad]
            outs.append(t)
            node, call = t.grad_fn, len(acc.calls)
            acc.calls.append(LogSquares())

            def on_grad(g: torch.Tensor) -> torch.Tensor | None:
                if not state["record"]:
                    return None
                ss = float(torch.linalg.vector_norm(g.detach(), dtype=torch.float64)) ** 2
                acc.g.add(ss, g.numel(), state["exp"])
                acc.calls[call].add(ss, g.numel(), state["exp"])
                acc.cut &= (on_cut := node in state["cuts"])  # a layer on a chain: no path around it
                k = rescale_exponent(ss, g.numel(), g.dtype) if on_cut else 0
                if k == 0:
                    return None
                state["exp"] += k  # every gradient from here to the input side is 2^exp too large
                return scaled(g, k)

            t.register_hook(on_grad)

    result, retry = ProbeResult(zero_params=zero_parameters(model)), False
    hooked = [m for m in names if m in modules or names[m] == emb]
    handles = ([m.register_forward_hook(fwd_hook) for m in hooked] if len(hooked) <= _GLOBAL_HOOK_ABOVE
               else [register_module_forward_hook(fwd_hook)])  # one hook, not 10,000 registrations
    try:
        with restored_state(model), torch.enable_grad():
            inputs, leaf = _grad_inputs(example_inputs) if input_grad else (example_inputs, None)
            out = call_model(model, inputs)
            loss, result.loss_source = probe_loss(out, target, loss_fn, seed)
            result.loss = float(loss.detach())
            usable_loss(loss, out, result.loss_source)
            result.probabilities_into = probabilities_into(out, target, loss_fn, result.loss_source, result.loss)
            seq, result.time_axis = _sequence(leaf, state["emb_out"], model, mmap)
            jac_in = leaf if leaf is not None else state["first_out"]
            params = dict(model.named_parameters())
            zeros = [params[n] for n in result.zero_params if n in params]
            wrt = _unique([seq, jac_in, *outs, *state["first_params"], *zeros])
            if not wrt:
                raise InputError("nothing to differentiate: the model has no trainable parameters "
                                 "and no floating-point input - give it some")
            if state["first_out"] is not None:
                result.grad_dtype = str(state["first_out"].dtype).removeprefix("torch.")
            state["cuts"] = cut_nodes(loss.grad_fn)  # where a rescaled gradient stays exact
            result.zero_ops = zero_derivative_ops(loss.grad_fn, state["cuts"])
            grads = torch.autograd.grad(loss, wrt, allow_unused=True, retain_graph=jacobian_k > 0)
            result.grad_rescale_log2 = state["exp"]
            by_id = {id(t): g for t, g in zip(wrt, grads)}
            result.zero_params_moving = list(steps := zero_steps(result.zero_params, params, by_id))
            if seq is not None:
                g = grads[0]
                result.time_grad = ([math.ldexp(v, -state["exp"]) for v in _per_step_norms(g, result.time_axis)]
                                    if g is not None else None)
            state["record"] = False
            if jacobian_k > 0 and jac_in is not None:
                result.jacobian = _jacobian_sketch(out, jac_in, jacobian_k, seed)
    except ModelCallError as e:
        if not (input_grad and _SETS_REQUIRES_GRAD in str(e)):
            raise
        retry = True
    finally:
        for h in handles:
            h.remove()
    if retry:
        return probe(model, example_inputs, target, loss_fn, mmap, jacobian_k, seed, input_grad=False)
    for n in wanted:
        a = accs[n]
        if a.n == 0:
            continue
        if a.g.count == 0:  # no gradient reached it: off the loss's path (or frozen), not vanishing
            result.off_path.append(n)
            continue
        mean = a.s / a.n
        result.layers.append(n)
        result.kinds.append(mmap.layer(n).kind)
        result.act_var.append(max(a.ss / a.n - mean * mean, 0.0))
        result.grad_log10.append(a.g.log10_rms())
        result.grad_rms.append(from_log10(result.grad_log10[-1]))
        result.cut.append(a.cut)
        if len(a.calls) >= 3:  # a module applied 3+ times per forward (weights shared along depth)
            result.calls_log10[n] = [c.log10_rms() for c in a.calls]
    by_name = {n: m for m, n in modules.items()}
    result.unreached = cut_off({n: [q for q in by_name[n].parameters(recurse=False) if q.requires_grad]
                                for n in result.off_path}, output_tensors(out))
    result.zero_stationary = stationary_zeros(model, example_inputs, result, steps, target, loss_fn, seed)
    result.seconds = time.perf_counter() - t0
    return result


# ---------------------------------------------------------------- helpers


def _unique(ts: list[torch.Tensor | None]) -> list[torch.Tensor]:
    """Tensors to differentiate, once each. Asking for the layer outputs (not the
    weights) skips the weight-gradient matmuls; the first layer's parameters make
    the backward reach the value its output had before any in-place op."""
    seen: set[int] = set()
    out = []
    for t in ts:
        if t is not None and t.requires_grad and id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def _first_float(out: Any) -> torch.Tensor | None:
    return next((t for t in output_tensors(out) if t.is_floating_point()), None)


#: torch's error when a model sets ``requires_grad`` on a tensor computed from a grad-requiring input
_SETS_REQUIRES_GRAD = "only change requires_grad flags of leaf variables"
_NOT_DATA = ("mask", "label", "position", "token_type")  # HF keyword inputs that are not the data


def _grad_inputs(inputs: Any) -> tuple[Any, torch.Tensor | None]:
    """The inputs with the first floating-point data tensor replaced by a copy that requires grad.

    Returns ``(inputs, leaf)``. The model gets ``leaf.clone()`` (so an in-place op on
    its input still works); dict keys naming masks, labels, positions are skipped.
    """
    leaf: list[torch.Tensor] = []

    def copy(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point() and not leaf:
            y = x.detach().clone().requires_grad_(True)
            leaf.append(y)
            return y.clone()
        return x

    if isinstance(inputs, Mapping):
        return ({k: v if any(w in str(k).lower() for w in _NOT_DATA) else copy(v)
                 for k, v in inputs.items()}, (leaf[0] if leaf else None))
    return tree_map(copy, inputs), (leaf[0] if leaf else None)


def _sequence(leaf: torch.Tensor | None, emb_out: torch.Tensor | None, model: nn.Module,
              mmap: ModelMap) -> tuple[torch.Tensor | None, int | None]:
    """The tensor with a time axis, and that axis, or (None, None).

    A 3-D float input is a sequence for a model with RNN or attention modules
    (axis from their ``batch_first``), or for a hand-written loop: a layer called
    once per step, as many times as axis 1 (else axis 0) is long.
    """
    if leaf is not None and leaf.dim() == 3:
        if any(isinstance(m, (nn.MultiheadAttention, nn.RNNBase)) for m in model.modules()):
            return leaf, _time_axis(model)
        calls = {x.calls for x in mmap.layers if x.kind != "norm"}
        for axis in (1, 0):
            if leaf.shape[axis] > 1 and leaf.shape[axis] in calls:
                return leaf, axis
    if leaf is None and emb_out is not None and emb_out.dim() == 3:
        return emb_out, 1
    return None, None


def _time_axis(model: nn.Module) -> int:
    """0 when the model's RNN/attention modules are not batch-first (PyTorch's default), else 1."""
    for m in model.modules():
        if isinstance(m, (nn.RNNBase, nn.MultiheadAttention)):
            return 1 if m.batch_first else 0
    return 1


def _per_step_norms(g: torch.Tensor, axis: int) -> list[float]:
    g = g.detach().double().movedim(axis, 0)
    return g.reshape(g.shape[0], -1).norm(dim=1).tolist()


def _jacobian_sketch(out: Any, x: torch.Tensor, k: int, seed: int) -> dict[str, Any] | None:
    """Moments of the singular values of J = d(output)/dx from ``k`` vector-Jacobian products.

    For u ~ N(0, I) over the m output entries, G_ij = (J^T u_i).(J^T u_j) has
    E[G_ii] = sum(s^2) and E[G_ij^2] = sum(s^4) (i != j). So ``gain`` = sqrt(mean s^2)
    (the RMS singular value over the m output directions) and ``spread`` =
    mean(s^4) / mean(s^2)^2 (1 for an isometry, large for an ill-conditioned J).
    """
    y = main_output(out)
    gen = torch.Generator(device=y.device).manual_seed(seed + 1)
    rows = []
    for i in range(k):
        u = torch.randn(y.shape, generator=gen, device=y.device, dtype=y.dtype)
        (v,) = torch.autograd.grad(y, x, grad_outputs=u, retain_graph=i < k - 1, allow_unused=True)
        if v is None:
            return None
        if i == 0 and not bool(v.detach().any()):
            # J^T u is exactly zero: the Jacobian is below the dtype's range (e.g. thousands of
            # saturating layers); more projections cannot lift it, and each costs a full backward
            return {"k": 1, "gain": 0.0, "spread": float("nan"), "effective_rank": float("nan"),
                    "outputs": y.numel(), "underflow": True}
        rows.append(v.detach().double().flatten())
    v = torch.stack(rows)
    gram = v @ v.T
    m = y.numel()
    s2 = float(gram.diagonal().mean())
    off = gram[~torch.eye(k, dtype=torch.bool, device=gram.device)]
    s4 = float((off * off).mean()) if k > 1 else float("nan")
    spread = m * s4 / (s2 * s2) if s2 * s2 > 0 and math.isfinite(s2) else float("nan")  # s2*s2 may underflow
    return {"k": k, "gain": math.sqrt(max(s2, 0.0) / m), "spread": spread,
            "effective_rank": s2 * s2 / s4 if s4 > 0 else float("nan"), "outputs": m}


__all__ = ["PROBE_KINDS", "ProbeResult", "main_output", "own_loss", "probe", "zero_parameters"]
