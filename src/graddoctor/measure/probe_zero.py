"""Zero weights at a stationary point: one nudged forward and backward after the init probe.

An exactly-zero weight cuts the gradient to what lies behind it. Most such weights get a gradient
themselves and move at the first step (a zero-init residual gain, ReZero's alpha, a zero head), and
what they cut joins the path then. Some get none whatever the other weights are: a SwiGLU branch
reads its norm gain ``g`` only to second order (``silu(W_g (g*x)) * W_u (g*x)``), so dL/dg = 0 at
g = 0 - a stationary point no optimiser leaves - and its gate and up projections never train.

``zero_steps`` keeps the sign of the first descent step of each zero parameter the probe saw move.
``stationary_zeros`` sets those parameters to that step (``NUDGE`` times the sign: Adam's first step
at a learning rate of ``NUDGE``), runs one forward and backward, and reports the other zero
parameters that still get an exactly-zero gradient (``stationary``), those that now get one
(``started``: they move at a later step), and the layers the probe read exactly zero that are still
exactly zero (``layers``). Parameters that started are nudged in turn and the pass repeated until
none starts (None after ``ROUNDS`` passes): with every norm gain of a Llama zeroed, the final norm
moves first, then the blocks' input norms, while the SwiGLU branches' gains stay stationary. It
runs only when there is something to tell apart: zero-gradient layers,
zero parameters that move and zero parameters that do not. The weights are written through ``.data``
and restored from copies (bit for bit, no version counter moves); train/eval flags, buffers and the
RNG state are restored and ``p.grad`` is never touched, as in the probe.

Example:
    >>> from torch import nn
    >>> from graddoctor.measure.probe import probe
    >>> class Gated(nn.Module):  # a branch that reads a zero gain g to second order, a zero head
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.g, self.up = nn.Parameter(torch.zeros(4)), nn.Linear(4, 4, bias=False)
    ...         self.head = nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         h = self.up(self.g * x)
    ...         return self.head(x + h * h)
    >>> net = Gated()
    >>> _ = nn.init.zeros_(net.head.weight)
    >>> probe(net, torch.randn(8, 4)).zero_stationary
    {'stationary': ['g'], 'started': [], 'layers': ['up']}
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from graddoctor.inputs import call_model, clone_tensors, output_tensors
from graddoctor.measure.probe_loss import probe_loss
from graddoctor.modelmap import module_names, restored_state

NUDGE = 2.0 ** -7  # the size of the first step given to each moving zero parameter (exact in any float)
ROUNDS = 4  # nudged passes at most: each moves the zero parameters the last one started


def zero_steps(names: Sequence[str], params: Mapping[str, torch.Tensor],
               grads: Mapping[int, torch.Tensor | None]) -> dict[str, torch.Tensor]:
    """Each named parameter with a nonzero gradient -> the sign of its descent step (int8).

    Args:
        names: the zero parameters' names.
        params: name -> parameter.
        grads: ``id(parameter)`` -> its gradient (None: not on the loss's path).

    Example:
        >>> w = torch.zeros(3)
        >>> zero_steps(["w"], {"w": w}, {id(w): torch.tensor([2.0, 0.0, -1.0])})
        {'w': tensor([-1,  0,  1], dtype=torch.int8)}
    """
    out = {}
    for n in names:
        g = grads.get(id(params[n])) if n in params else None
        if g is not None and bool(g.ne(0).any()):
            out[n] = g.detach().neg().sign().to(torch.int8)
    return out


def stationary_zeros(model: nn.Module, example_inputs: Any, result: Any, steps: Mapping[str, torch.Tensor],
                     target: Any = None, loss_fn: Any = None, seed: int = 0) -> dict[str, list[str]] | None:
    """The zero parameters and zero-gradient layers that the moving zero parameters do not unlock.

    Args:
        model: the probed model (left as it was).
        example_inputs, target, loss_fn, seed: as given to the probe (same loss, same projection).
        result: the probe's ``ProbeResult`` (``layers``, ``grad_log10``, ``zero_params``).
        steps: ``zero_steps`` of the zero parameters that move.

    Returns:
        ``{"stationary": [...], "started": [...], "layers": [...]}`` (see the module docstring), or
        None when nothing was measured (no zero-gradient layer, no moving or no other zero parameter).
    """
    params = dict(model.named_parameters())
    zero_layers = [n for n, y in zip(result.layers, result.grad_log10) if y == -math.inf]
    others = [n for n in result.zero_params if n in params and n not in steps]
    if not (steps and zero_layers and others):
        return None
    mods = {m: n for m, n in module_names(model).items() if n in zero_layers}
    steps, started = dict(steps), []
    for _ in range(ROUNDS):  # a zero that starts can unlock another (a zero final norm, then the blocks')
        measured = _nudged_pass(model, example_inputs, params, steps, others, mods, target, loss_fn, seed)
        if measured is None:
            return None
        grads, reached = measured
        new = {n: g.neg().sign().to(torch.int8) for n in others
               if (g := grads.get(id(params[n]))) is not None and bool(g.ne(0).any())}
        if not new:
            break
        started += list(new)
        steps.update(new)
        others = [n for n in others if n not in new]
    else:  # still unlocking after ROUNDS passes: what stays zero is not known
        return None
    still = [n for n in others if grads.get(id(params[n])) is not None]  # None: not on the loss's path
    return {"stationary": still, "started": started, "layers": [n for n in zero_layers if not reached[n]]}


def _nudged_pass(model: nn.Module, example_inputs: Any, params: dict[str, torch.Tensor],
                 steps: Mapping[str, torch.Tensor], others: list[str], mods: dict[nn.Module, str],
                 target: Any, loss_fn: Any, seed: int) -> tuple[dict[int, Any], dict[str, bool]] | None:
    """One forward and backward with the ``steps`` parameters set to ``NUDGE`` x their sign (then
    restored): (``id(t)`` -> gradient of the ``others`` and the layers' parameters, layer name ->
    whether a nonzero gradient reached its output); None when the pass failed (warned)."""
    reached = dict.fromkeys(mods.values(), False)
    outs: list[torch.Tensor] = []

    def fwd_hook(module: nn.Module, args: Any, out: Any) -> None:
        t = next((t for t in output_tensors(out) if t.is_floating_point()), None)
        if t is None or not t.requires_grad:
            return
        name = mods[module]
        outs.append(t)

        def on_grad(g: torch.Tensor) -> None:  # registered before any in-place op: the layer's own output
            reached[name] = reached[name] or bool(g.ne(0).any())

        t.register_hook(on_grad)

    saved = {n: params[n].detach().clone() for n in steps}
    handles = [m.register_forward_hook(fwd_hook) for m in mods]
    try:
        with restored_state(model), torch.enable_grad():
            with torch.no_grad():
                for n, s in steps.items():
                    params[n].data.copy_(s.to(params[n].dtype) * NUDGE)
            out = call_model(model, clone_tensors(example_inputs))
            loss, _ = probe_loss(out, clone_tensors(target), loss_fn, seed)
            # the layers' own parameters make the backward reach their outputs' values before any in-place op
            own = [p for m in mods for p in m.parameters(recurse=False)]
            wrt = list({id(t): t for t in [*outs, *(params[n] for n in others), *own] if t.requires_grad}.values())
            grads = dict(zip(map(id, wrt), torch.autograd.grad(loss, wrt, allow_unused=True)))
    except Exception as e:  # noqa: BLE001 - an extra measurement: the check goes on without it
        warnings.warn(f"graddoctor.check: the zero-weight pass failed ({type(e).__name__}: {e}); "
                      "stuck zero weights are not looked for", stacklevel=3)
        return None
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for n, v in saved.items():
                params[n].data.copy_(v)
    return grads, reached


def zero_parameters(model: nn.Module) -> list[str]:
    """Names of trainable multiplicative parameters that are exactly zero everywhere (one host sync).

    Biases are left out: a zero bias (the usual init) does not cut a gradient.

    A zero gain at the exit of a branch (``zero_init_residual``, ReZero's alpha) or a zero
    head cuts the gradient to everything behind it at init only: the zero parameter itself
    gets a gradient and moves at the first step.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
        >>> _ = nn.init.zeros_(net[1].weight)
        >>> zero_parameters(net)
        ['1.weight']
    """
    named = [(n, p) for n, p in model.named_parameters()
             if p.requires_grad and p.numel() > 0 and "bias" not in n.rsplit(".", 1)[-1]]
    if not named:
        return []
    with torch.no_grad():
        try:  # one fused max-abs over every parameter
            maxabs = list(torch._foreach_norm([p.detach() for _, p in named], float("inf")))
        except (RuntimeError, TypeError, NotImplementedError):
            maxabs = [p.detach().abs().amax() for _, p in named]
        dev = maxabs[0].device
        norms = torch.stack([m.float().to(dev) for m in maxabs]).cpu()
    return [n for (n, _), z in zip(named, (norms == 0).tolist()) if z]


__all__ = ["NUDGE", "ROUNDS", "stationary_zeros", "zero_parameters", "zero_steps"]
