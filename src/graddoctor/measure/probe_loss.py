"""The loss the init probe backpropagates, chosen from the model's output and the target.

In order of preference: ``loss_fn(output, target)``; the model's own loss (see
``own_loss``: a ``loss`` field of a dict, ``ModelOutput``, dataclass or namedtuple, or
the leading scalar of a tuple such as Hugging Face's ``return_dict=False`` output); with a
``target`` and no ``loss_fn``, cross-entropy for an integer target and MSE for a floating
one; otherwise the *projection scalar* ``mean(output * R)`` with R a fixed N(0, 1) tensor
drawn from a generator seeded 0 (unlike ``output.sum()`` it is not degenerate under a
softmax or a normalisation: its gradient is R).

Example:
    >>> import torch
    >>> w = torch.ones(3, requires_grad=True)
    >>> loss, source = probe_loss((w.sum(), w * 2), None, None, 0)
    >>> source, float(loss.detach())
    ('model', 3.0)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from graddoctor.errors import GraddoctorError, InputError
from graddoctor.inputs import output_tensors


def main_output(out: Any) -> torch.Tensor:
    """The tensor a loss is made from: the largest floating-point output (logits, hidden states)."""
    ts = [t for t in output_tensors(out) if t.is_floating_point() and t.requires_grad]
    if not ts:
        raise InputError("the model's output has no floating-point tensor that depends on its "
                         "parameters or inputs - nothing to backpropagate")
    return max(ts, key=lambda t: t.numel())


def fitting_output(out: Any, target: torch.Tensor | None) -> torch.Tensor:
    """The output tensor the target belongs to: for integer classes, the one whose class axis is
    the smallest that holds every label ([N, C] for [N], [B, T, C] or [N, C, T] for [B, T]: the
    logits, not a wider feature tensor next to them); for a float target, the first output of its
    shape (or size); else, and with no target, ``main_output``.

    Example:
        >>> w = torch.ones(1, requires_grad=True)
        >>> logits, feats = torch.zeros(4, 10) * w, torch.zeros(4, 128) * w
        >>> tuple(fitting_output((logits, feats), torch.tensor([0, 9, 3, 1])).shape)
        (4, 10)
    """
    ts = [t for t in output_tensors(out) if t.is_floating_point() and t.requires_grad]
    if target is None or len(ts) < 2:
        return main_output(out)
    if not target.is_floating_point():
        top = int(target.max()) if target.numel() else 0

        def classes(y: torch.Tensor) -> int | None:
            if y.dim() != target.dim() + 1:
                return None
            if y.shape[:-1] == target.shape:
                return y.shape[-1]
            return y.shape[1] if y.shape[:1] + y.shape[2:] == target.shape else None

        fits = [(c, i) for i, y in enumerate(ts) if (c := classes(y)) is not None and c > top]
        return ts[min(fits)[1]] if fits else main_output(out)
    same = [y for y in ts if y.shape == target.shape] or [y for y in ts if y.numel() == target.numel()]
    return same[0] if same else main_output(out)


def own_loss(out: Any) -> torch.Tensor | None:
    """The loss a model computed itself, if any.

    Read from a ``loss`` entry of any output structure (dict, Hugging Face ``ModelOutput``,
    dataclass, namedtuple, object attribute) or, for a tuple/list of several outputs, its
    leading scalar (Hugging Face's ``return_dict=False`` puts the loss first). Only a
    one-element floating-point tensor that requires grad counts.

    Example:
        >>> from collections import namedtuple
        >>> w = torch.ones(2, requires_grad=True)
        >>> Out = namedtuple("Out", "logits loss")
        >>> float(own_loss(Out(w * 3, w.sum())).detach()), own_loss(w * 3) is None
        (2.0, True)
    """
    for loss in (_loss_field(out), _leading_scalar(out)):
        if _is_loss(loss):
            return loss.reshape(())
    return None


def _loss_field(out: Any) -> Any:
    if isinstance(out, Mapping):
        return out.get("loss")
    if dataclasses.is_dataclass(out) and not isinstance(out, type):
        return getattr(out, "loss", None) if any(f.name == "loss" for f in dataclasses.fields(out)) else None
    if isinstance(out, (torch.Tensor, tuple, list)) and not hasattr(out, "_fields"):
        return None
    return getattr(out, "loss", None)


def _leading_scalar(out: Any) -> Any:
    if isinstance(out, (tuple, list)) and not hasattr(out, "_fields") and len(out) > 1:
        first = out[0]
        if isinstance(first, torch.Tensor) and first.dim() == 0:
            return first
    return None


def _is_loss(t: Any) -> bool:
    return (isinstance(t, torch.Tensor) and t.numel() == 1 and t.is_floating_point()
            and t.requires_grad)


def probe_loss(out: Any, target: Any, loss_fn: Any, seed: int) -> tuple[torch.Tensor, str]:
    if target is not None:
        target = _as_target(target)
    if loss_fn is not None:
        if not isinstance(out, torch.Tensor):  # as documented: loss_fn(output, target), the
            try:  # whole output (a dict, a tuple); one written for a tensor gets the main one
                loss = loss_fn(out, target) if target is not None else loss_fn(out)
                return _scalar(loss, "loss_fn"), "loss_fn"
            except GraddoctorError:
                raise
            except Exception:  # noqa: BLE001, S110 - retried on the main tensor below
                pass
        y = fitting_output(out, target)
        with _loss_errors(y, target, "loss_fn"):
            loss = loss_fn(y, target) if target is not None else loss_fn(y)
        return _scalar(loss, "loss_fn"), "loss_fn"
    own = own_loss(out)
    if own is not None:
        return own, "model"
    y = fitting_output(out, target)
    if target is not None:
        target = target.to(y.device)
        if not target.is_floating_point():
            with _loss_errors(y, target, "cross-entropy"):
                return _cross_entropy(y, target.long()), "cross_entropy"
        if target.shape != y.shape and target.numel() == y.numel():
            target = target.reshape(y.shape)  # [N] vs [N, 1]: same values, no broadcasting
        with _loss_errors(y, target, "MSE"):
            if target.shape != y.shape:
                raise ValueError("shapes differ")
            return F.mse_loss(y, target.to(y.dtype)), "mse"
    gen = torch.Generator(device=y.device).manual_seed(seed)
    r = torch.randn(y.shape, generator=gen, device=y.device, dtype=y.dtype)
    return (y * r).mean(), "projection"


def probabilities_into(out: Any, target: Any, loss_fn: Any, source: str, loss: float) -> dict[str, Any] | None:
    """``{"loss": "cross-entropy" | "nll", "classes": C}`` when the probe's loss fed a probability
    output (non-negative, summing to 1 over its C classes: a softmax at the model's end) to a
    log-space loss, else None. Which loss: the probe's own default cross-entropy (``source``
    "cross_entropy", an integer target and no ``loss_fn``), or a ``loss_fn`` whose value ``loss``
    equals cross-entropy (or NLL) on those probabilities (a lambda, a partial or a wrapper too; a
    name says nothing: ``nll_log`` may well take the log first).

    Example:
        >>> import torch.nn as nn
        >>> w = torch.ones(1, requires_grad=True)
        >>> p, y = (torch.randn(4, 3) * w).softmax(1), torch.tensor([0, 2, 1, 0])
        >>> ce = nn.CrossEntropyLoss()(p, y).item()
        >>> probabilities_into(p, y, nn.CrossEntropyLoss(), "loss_fn", ce), probabilities_into(p * 5, y, None, "cross_entropy", 0.0)
        ({'loss': 'cross-entropy', 'classes': 3}, None)
    """
    if target is None or source not in ("cross_entropy", "loss_fn"):
        return None
    target = _as_target(target)
    y = fitting_output(out, target).detach()
    if target.is_floating_point() or y.dim() != target.dim() + 1 or y.shape[-1 if y.dim() == 2 else 1] < 2:
        return None
    axis = 1 if y.shape[:1] + y.shape[2:] == target.shape else -1 if y.shape[:-1] == target.shape else None
    if axis is None or not bool((y >= 0).all()) or float((y.double().sum(axis) - 1).abs().max()) >= 1e-3:
        return None
    found = {"loss": "cross-entropy", "classes": int(y.shape[axis])}
    if source == "cross_entropy":
        return found
    t = target.to(y.device).long()
    try:
        ce = float(_cross_entropy(y.float(), t))
        nll = float(F.nll_loss(y.float().movedim(axis, 1) if axis == -1 and y.dim() > 2 else y.float(), t))
    except Exception:  # noqa: BLE001 - a target these losses do not take: not theirs
        return None
    close = lambda a: math.isfinite(loss) and abs(a - loss) <= 1e-4 * max(1.0, abs(a))  # noqa: E731
    return found if close(ce) else {**found, "loss": "nll"} if close(nll) else None


def _as_target(target: Any) -> torch.Tensor:
    """``target`` as a tensor (lists, numpy arrays and numbers converted); one-line InputError else."""
    if isinstance(target, torch.Tensor):
        return target
    try:
        return torch.as_tensor(target)
    except Exception as e:  # noqa: BLE001 - rewrapped as a one-line error
        raise InputError(f"target must be a tensor (or an array of numbers), got {type(target).__name__}: "
                         f"{type(e).__name__}") from None


def _cross_entropy(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the classes on dim 1 (PyTorch's layout: [N, C], [N, C, T]) or, for a
    sequence output [B, T, C] with a target [B, T], on the last dim (flattened to [B*T, C])."""
    class_dim_1 = y.dim() == target.dim() + 1 and y.shape[:1] + y.shape[2:] == target.shape
    if y.dim() > 2 and not class_dim_1 and y.shape[:-1] == target.shape:
        return F.cross_entropy(y.reshape(-1, y.shape[-1]), target.reshape(-1))
    return F.cross_entropy(y, target)


@contextlib.contextmanager
def _loss_errors(y: torch.Tensor, target: torch.Tensor | None, what: str) -> Iterator[None]:
    """A failure of the loss becomes a one-line InputError naming the output and target shapes."""
    try:
        yield
    except GraddoctorError:
        raise
    except Exception as e:  # noqa: BLE001 - rewrapped with context, original chained
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        tgt = "no target" if target is None else f"target {tuple(target.shape)} {_dtype(target)}"
        raise InputError(
            f"the {what} loss failed on output {tuple(y.shape)} {_dtype(y)} and {tgt}: "
            f"{type(e).__name__}: {msg} - give a target that fits the output (integer classes "
            f"[N] for [N, C], [B, T] for [B, T, C]; floats of the output's shape for MSE) or a loss_fn"
        ) from e


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def usable_loss(loss_tensor: torch.Tensor, out: Any, source: str) -> None:
    """Raise a one-line ``InputError`` when ``loss_fn``'s loss has no gradient on an output that has
    one (a ``.detach()`` in it), or the loss is NaN/Inf on a finite model output: the loss function
    or the target is at fault (every label ignored, a log of 0), not the model's gradient.

    Example:
        >>> usable_loss(torch.tensor(float("nan")), torch.ones(2), "loss_fn")
        Traceback (most recent call last):
        ...
        graddoctor.errors.InputError: the loss (loss_fn) is nan on a finite model output: ...
    """
    if source == "loss_fn" and not loss_tensor.requires_grad and any(t.requires_grad for t in output_tensors(out)):
        raise InputError("loss_fn returned a loss with no gradient (detached, or built from .item() / under "
                         "torch.no_grad()) - return the loss tensor computed from the model's output")
    loss = float(loss_tensor.detach())
    outs = [t.detach() for t in output_tensors(out) if t.is_floating_point() and t.numel()]
    if math.isfinite(loss) or not all(bool(t.isfinite().all()) for t in outs):
        return
    if math.isinf(loss) and any(float(t.abs().max()) > min(1e6, torch.finfo(t.dtype).max ** 0.5 / 16) for t in outs):
        return  # a large finite output can overflow the loss (fp16 from ~16: its max is 65504): the model's own
    raise InputError(f"the loss ({source}) is {loss} on a finite model output: the loss function or the target "
                     "is at fault, not the model - check loss_fn and the labels (e.g. every label ignored, "
                     "a log of 0)")


def _scalar(loss: Any, what: str) -> torch.Tensor:
    if not isinstance(loss, torch.Tensor):
        raise InputError(f"{what} must return a scalar tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise InputError(f"{what} must return a scalar tensor, got one of shape {tuple(loss.shape)} - use "
                         "reduction='mean' (or return loss.mean())")
    return loss.reshape(())


__all__ = ["main_output", "own_loss", "probabilities_into", "probe_loss", "usable_loss"]
