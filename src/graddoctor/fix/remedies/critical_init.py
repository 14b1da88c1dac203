"""Init-only remedies for very deep plain nets, chosen from mean-field theory (no module changes).

| id | for | weights | biases | reference |
|---|---|---|---|---|
| ``edge-of-chaos-init`` | sigmoid/tanh-like hidden activations | orthogonal (conv: delta-orthogonal) x ``sigma_w`` on the critical line | N(0, ``sigma_b^2``) minus ``phi(0) W 1`` (centres a sigmoid) | Schoenholz et al. 2017; Pennington et al. 2017; Xiao et al. 2018 |
| ``looks-linear-init`` | activations with ``phi(x) - phi(-x) = c x`` (ReLU, leaky ReLU, GELU, SiLU) | mirrored orthogonal blocks ``[[A, -A], [-A, A]] / c``: the net computes a linear map at init | 0 | Balduzzi et al. 2017 |

``edge-of-chaos-init`` picks the fixed-point variance ``q*`` for the depth
(``meanfield.critical_q``), then ``(sigma_w, sigma_b)`` with ``chi = 1`` there
(``meanfield.critical_point``); the first layer is centred and scaled on the example batch so
that its output variance is ``q*`` from the first layer on. The change's details hold the
theory, ``q*``, ``sigma_w``, ``sigma_b`` and the predicted depth scales (``xi_c``: infinite at
the critical point; ``xi_q``: layers over which the variance settles). Layers whose shapes do
not fit (odd widths for looks-linear) are drawn orthogonal with the activation's gain and listed.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> x = torch.randn(16, 4)
    >>> new, change = looks_linear(net, None, RemedyContext("looks-linear-init", x))
    >>> torch.allclose(new(-x), -new(x), atol=1e-6), torch.allclose(new(3 * x), 3 * new(x), atol=1e-5)
    (True, True)
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch
from torch import nn

from graddoctor import kinds
from graddoctor.fix.remedies import meanfield
from graddoctor.fix.remedies.base import Change, frozen, modules_by_name, need_inputs, target
from graddoctor.fix.remedies.registry import RemedyContext, register
from graddoctor.modelmap import ModelMap, restored_state

_WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd)


def _chain(model: nn.Module, mm: ModelMap) -> list[tuple[str, nn.Module, str | None, str | None]]:
    """(name, module, activation feeding it, activation following it) of each Linear/Conv, in
    execution order (the feeding one is the previous layer's: a plain chain)."""
    mods = modules_by_name(model)
    out, prev = [], None
    for x in mm.layers:
        m = mods.get(x.name)
        if isinstance(m, _WEIGHTED):
            out.append((x.name, m, prev, x.activation))
            prev = x.activation
    return out


def _orthogonal(weight: torch.Tensor, gain: float) -> None:
    """Orthogonal for 2-D weights; delta-orthogonal for conv kernels (zero but the centre tap)."""
    if weight.dim() <= 2:
        nn.init.orthogonal_(weight, gain=gain)
        return
    weight.zero_()
    tap = torch.empty(weight.shape[:2], dtype=weight.dtype, device=weight.device)
    nn.init.orthogonal_(tap, gain=gain)
    weight[(slice(None), slice(None), *(k // 2 for k in weight.shape[2:]))] = tap


def _first_output(model: nn.Module, module: nn.Module, example_inputs: Any) -> torch.Tensor:
    """The output of ``module`` on the example batch (one forward, state restored)."""
    from graddoctor.inputs import call_model

    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _a, out: seen.append(out.detach()))
    try:
        with restored_state(model), torch.no_grad():
            call_model(model, example_inputs)
    finally:
        handle.remove()
    return seen[0]


def _centre_and_scale(model: nn.Module, module: nn.Module, example_inputs: Any, q: float) -> float:
    """Scale the first layer and shift its bias so its output has mean 0 and variance ``q`` (plus
    the bias it had)."""
    with torch.no_grad():
        noise = None if module.bias is None else module.bias.clone()
        if module.bias is not None:
            module.bias.zero_()
        h = _first_output(model, module, example_inputs).float()
        dims = [d for d in range(h.dim()) if d != 1] if h.dim() > 2 else [0]
        mean = h.mean(dim=dims)
        var = float(((h - mean.view(-1, *([1] * (h.dim() - 2)))) ** 2).mean()) if h.dim() > 2 \
            else float(((h - mean) ** 2).mean())
        scale = math.sqrt(q / var) if var > 0 and math.isfinite(var) else 1.0
        module.weight.mul_(scale)
        if module.bias is not None:
            module.bias.copy_(noise - scale * mean)
    return scale


@register("edge-of-chaos-init", family="init", needs_inputs=True, keeps_map=True,
          summary="orthogonal weights and biases at the edge of chaos for sigmoid/tanh nets (init only)",
          options=("q_star",))
def edge_of_chaos(model: nn.Module, layers: list[str] | None,
                  ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """Re-draw every Linear/Conv at the critical point of the hidden activation (see the module).

    Args:
        model: the model (deep-copied unless ``ctx.inplace``); its modules are not changed.
        layers: restrict to these layers (None: the whole chain).
        ctx: ``example_inputs`` (required), ``model_map``; option ``q_star`` (default: for the depth).

    Returns:
        ``(new_model, change)``; ``change.details``: theory, kind, q_star, sigma_w, sigma_b,
        depth, xi_c, xi_q, uncentred (layers without a bias after a non-centred activation).

    Raises:
        InputError: no example inputs.

    Example:
        >>> import torch
        >>> net = nn.Sequential(*[m for _ in range(20) for m in (nn.Linear(16, 16), nn.Tanh())],
        ...                     nn.Linear(16, 2))
        >>> x = torch.randn(32, 16)
        >>> new, ch = edge_of_chaos(net, None, RemedyContext("edge-of-chaos-init", x))
        >>> ch.details["kind"], round(ch.details["sigma_w"], 3), ch.details["xi_c"]
        ('tanh', 1.089, inf)
    """
    need_inputs(ctx.example_inputs, ctx.remedy)
    new = target(model, ctx.inplace)
    mm = ctx.model_map if ctx.model_map is not None else ModelMap(new, ctx.example_inputs)
    chain = _chain(new, mm)
    hidden = Counter(a for _, _, _, a in chain if kinds.family(a) == "saturating")
    kind = hidden.most_common(1)[0][0] if hidden else "tanh"
    depth = len(chain)
    q = float(ctx.options.get("q_star") or meanfield.critical_q(kind, depth))
    sw, sb = meanfield.critical_point(kind, q)
    scales = meanfield.depth_scales(kind, sw, sb, q)
    done, uncentred = [], []
    with torch.no_grad():
        for name, m, feed, _follow in chain:
            if (layers is not None and name not in layers) or frozen(m):
                continue  # a frozen layer (a pretrained base) is never re-drawn, as in reinit
            _orthogonal(m.weight, sw)
            off = meanfield.offset(feed) if kinds.family(feed) == "saturating" else 0.0
            if m.bias is not None:
                m.bias.normal_(0.0, sb)
                if off:
                    m.bias.sub_(off * m.weight.sum(dim=tuple(range(1, m.weight.dim()))))
            elif off:
                uncentred.append(name)
            done.append(name)
        if chain and chain[0][0] in done:
            _centre_and_scale(new, chain[0][1], ctx.example_inputs, q - sb**2)
    details = {"theory": "mean field, edge of chaos (Schoenholz et al. 2017) with orthogonal "
                         "weights (dynamical isometry: Pennington et al. 2017; Xiao et al. 2018)",
               "kind": kind, "q_star": q, "sigma_w": sw, "sigma_b": sb, "depth": depth,
               "xi_c": scales["xi_c"], "xi_q": scales["xi_q"],
               "jacobian_spread": depth * meanfield.spread(kind, q), "uncentred": uncentred}
    why = (f"{kind} at the edge of chaos: orthogonal weights x {sw:.4f}, biases N(0, {sb:.2g}^2)"
           + (f" centred for {kind}(0) = {meanfield.offset(kind):g}" if meanfield.offset(kind) else "")
           + f"; q* = {q:.3g} chosen for {depth} layers; predicted depth scale xi_c = "
           + ("infinite (chi = 1)" if math.isinf(scales["xi_c"]) else f"{scales['xi_c']:.0f} layers")
           + f", the variance settles within xi_q = {scales['xi_q']:.0f} layers")
    return new, Change(ctx.remedy, done, why, "applied" if done else "advice", details, mmap=mm)


def linear_part(kind: str | None) -> float | None:
    """``c`` with ``phi(x) - phi(-x) = c x`` for activation ``kind`` (None if there is none).

    Example:
        >>> linear_part("relu"), linear_part("gelu"), linear_part("tanh")
        (1.0, 1.0, None)
    """
    if kind is None or kind not in kinds.KINDS:
        return None
    phi = kinds.get(kind).modules[0]()
    t = torch.tensor([0.3, 1.0, 2.5, 7.0], dtype=torch.float64)
    c = (phi(t) - phi(-t)) / t
    return float(c[0]) if torch.allclose(c, c[0].expand(4), atol=1e-6) and float(c[0]) > 0 else None


def _mirror(weight: torch.Tensor, position: str, c: float) -> None:
    """The looks-linear pattern on the first two dims (conv: on the centre tap)."""
    out_f, in_f = weight.shape[:2]
    rows, cols = (out_f // 2, in_f) if position == "first" else \
        (out_f, in_f // 2) if position == "last" else (out_f // 2, in_f // 2)
    a = torch.empty(rows, cols, dtype=weight.dtype, device=weight.device)
    nn.init.orthogonal_(a, gain=1.0 if position == "first" else 1.0 / c)
    block = {"first": torch.cat([a, -a], 0), "last": torch.cat([a, -a], 1),
             "middle": torch.cat([torch.cat([a, -a], 1), torch.cat([-a, a], 1)], 0)}[position]
    weight.zero_()
    if weight.dim() == 2:
        weight.copy_(block)
    else:
        weight[(slice(None), slice(None), *(k // 2 for k in weight.shape[2:]))] = block


@register("looks-linear-init", family="init", needs_inputs=True, keeps_map=True,
          summary="mirrored orthogonal weights: a ReLU-family net is linear at init (init only)")
def looks_linear(model: nn.Module, layers: list[str] | None,
                 ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """Looks-linear init (Balduzzi et al. 2017) of every Linear/Conv of the chain (see the module).

    Args:
        model: the model (deep-copied unless ``ctx.inplace``); its modules are not changed.
        layers: restrict to these layers (None: the whole chain).
        ctx: ``example_inputs`` (required), ``model_map``.

    Returns:
        ``(new_model, change)``; ``change.details``: theory, mirrored layers, fallback layers.

    Raises:
        InputError: no example inputs.
    """
    need_inputs(ctx.example_inputs, ctx.remedy)
    new = target(model, ctx.inplace)
    mm = ctx.model_map if ctx.model_map is not None else ModelMap(new, ctx.example_inputs)
    chain = _chain(new, mm)
    mirrored, fallback = [], []
    with torch.no_grad():
        for i, (name, m, feed, follow) in enumerate(chain):
            if (layers is not None and name not in layers) or frozen(m):
                continue
            out_f, in_f = m.weight.shape[:2]
            last = i == len(chain) - 1 or follow is None
            position = "first" if i == 0 else "last" if last else "middle"
            c = linear_part(feed if i else follow) or 1.0
            fits = (position == "first" or in_f % 2 == 0) and (last or out_f % 2 == 0) \
                and (i == 0 or linear_part(feed) is not None) and (last or linear_part(follow) is not None) \
                and getattr(m, "groups", 1) == 1
            if fits:
                _mirror(m.weight, position, c)
                mirrored.append(name)
            else:
                _orthogonal(m.weight, kinds.gain(follow))
                fallback.append(name)
            if m.bias is not None:
                m.bias.zero_()
    details = {"theory": "looks-linear init (Balduzzi et al. 2017): mirrored weights make "
                         "phi(x) - phi(-x) carry the signal, so the net is linear and the "
                         "gradient passes unchanged at init", "mirrored": mirrored,
               "fallback": fallback, "depth": len(chain), "xi_c": math.inf}
    why = (f"looks-linear init of {len(mirrored)} layer(s): the net computes an orthogonal linear "
           "map at init, so the gradient neither shrinks nor grows with depth (predicted depth "
           "scale: unbounded at init)"
           + (f"; {len(fallback)} layer(s) with odd widths or other activations drawn orthogonal"
              if fallback else ""))
    return new, Change(ctx.remedy, mirrored + fallback, why, "applied" if mirrored + fallback else "advice",
                       details, mmap=mm)


__all__ = ["edge_of_chaos", "linear_part", "looks_linear"]
