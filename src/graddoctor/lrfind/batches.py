"""One training batch -> one scalar loss, for the batch shapes a plain loop or an HF model uses.

- ``(x, y)`` (a tuple or list; ``(*inputs, y)`` for several inputs): ``loss_fn(model(*inputs), y)``;
  the default ``loss_fn`` is cross-entropy for integer targets and MSE for float ones.
- a dict (Hugging Face style): ``model(**batch)``, whose output carries the loss as ``.loss``
  or ``["loss"]`` (the batch must hold the labels); with ``loss_fn`` given,
  ``loss_fn(output, batch)``.

Tensors are moved to the device of the model's first parameter.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(3, 4)
    >>> batch_loss(net, (torch.ones(2, 3), torch.tensor([0, 1])), None).shape
    torch.Size([])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from graddoctor.errors import InputError

LossFn = Callable[..., torch.Tensor]


def cycle(loader: Iterable) -> Iterator[Any]:
    """The loader's batches, starting over (a fresh ``iter``) when it runs out.

    Example:
        >>> it = cycle([1, 2]); [next(it) for _ in range(5)]
        [1, 2, 1, 2, 1]
    """
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise InputError("train_loader yielded no batches; pass a DataLoader or a non-empty "
                             "iterable of (x, y) batches")


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to(v, device) for v in value)
    return value


def default_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for integer targets, MSE for float targets.

    Example:
        >>> default_loss(torch.zeros(2, 3), torch.tensor([0, 2])).item() > 0
        True
    """
    if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise InputError("the default loss needs a tensor output and a tensor target; pass loss_fn=")
    if target.dtype.is_floating_point:
        return F.mse_loss(output, target.reshape(output.shape) if target.numel() == output.numel()
                          else target)
    return F.cross_entropy(output, target)


def _own_loss(output: Any) -> torch.Tensor:
    loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
    if loss is None:
        raise InputError("a dict batch needs a model whose output has .loss (put the labels in the "
                         "batch), or pass loss_fn=lambda output, batch: ...")
    return loss


def batch_loss(model: nn.Module, batch: Any, loss_fn: LossFn | None, first: bool = False
               ) -> torch.Tensor:
    """The scalar loss of ``model`` on ``batch`` (see the module docstring).

    ``first``: this is the first batch, so an error of the forward or the loss is the
    batch's fault (an ``InputError``); later errors pass through unchanged.
    """
    param = next(model.parameters(), None)
    if param is not None:
        batch = _to(batch, param.device)
    if not first:
        return _loss(model, batch, loss_fn)
    try:
        return _loss(model, batch, loss_fn)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - user code, reported in one line
        why = (str(e).strip().splitlines() or [""])[0]
        raise InputError(f"the forward failed on the first batch ({type(e).__name__}: {why}); check "
                         "that the batches fit the model (shape, dtype, dict keys) and loss_fn") from e


def _loss(model: nn.Module, batch: Any, loss_fn: LossFn | None) -> torch.Tensor:
    if isinstance(batch, dict):
        output = model(**batch)
        loss = _own_loss(output) if loss_fn is None else loss_fn(output, batch)
    elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
        *inputs, target = batch
        loss = (loss_fn or default_loss)(model(*inputs), target)
    else:
        raise InputError(f"a batch must be (x, y), (*inputs, y) or a dict, got {type(batch).__name__}; "
                         "wrap your data in a DataLoader of (x, y) pairs")
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise InputError("the loss must be a scalar tensor; reduce it (e.g. .mean()) in loss_fn")
    return loss.reshape(())


__all__ = ["batch_loss", "cycle", "default_loss"]
