"""Recommendations that are not module surgery: ``lstm``, ``lower-lr``, ``lr-find``.

``lstm`` is a code change (an ``nn.RNN`` returns ``(out, h)``, an ``nn.LSTM``
``(out, (h, c))``, so the forward has to change with it); ``lower-lr`` and
``lr-find`` are advice (an LR range test is its own tool: Smith 2017).

Example:
    >>> import torch
    >>> _, change = lstm(torch.nn.RNN(3, 8), None, RemedyContext("lstm"))
    >>> change.kind, change.modules
    ('manual', [''])
"""

from __future__ import annotations

from torch import nn

from graddoctor.fix.remedies.base import Change
from graddoctor.fix.remedies.registry import RemedyContext, register


@register("lstm", family="advice", keeps_map=True,
          summary="replace a vanilla RNN by an LSTM (code change)")
def lstm(model: nn.Module, layers: list[str] | None, ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """Advise replacing each vanilla ``nn.RNN`` by ``nn.LSTM`` (or ``nn.GRU``); the model is
    returned as is.

    Args:
        model: the model, returned as is.
        layers, ctx: unused (the remedy signature).

    Returns:
        ``(model, change)``: a "manual" change with the code to write per RNN.

    Raises:
        Nothing.

    Example:
        >>> lstm(nn.Linear(2, 2), None, RemedyContext("lstm"))[1].modules
        []
    """
    rnns = [(n, m) for n, m in model.named_modules() if type(m) is nn.RNN]
    code = [f"{n or 'model'}: nn.LSTM({m.input_size}, {m.hidden_size}, num_layers={m.num_layers}, "
            f"batch_first={m.batch_first})  # forward: out, (h, c) = self.{n or 'rnn'}(x)"
            for n, m in rnns]
    why = ("a vanilla RNN multiplies the gradient by the recurrent Jacobian at every step, so it "
           "vanishes over long sequences; the LSTM's additive cell state carries it "
           "(Hochreiter & Schmidhuber 1997)")
    return model, Change("lstm", [n for n, _ in rnns], why, "manual", {"code": code})


@register("lower-lr", family="advice", keeps_map=True, options=("factor",),
          summary="divide the learning rate by 10")
def lower_lr(model: nn.Module, layers: list[str] | None, ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """Advise dividing the learning rate by ``ctx.options["factor"]`` (default 10; the current
    rates named when ``ctx.optimizer`` is given).

    Args:
        model: the model, returned as is.
        layers: unused.
        ctx: ``ctx.options["factor"]``; ``ctx.optimizer`` names the current rates.

    Returns:
        ``(model, change)``: advice.

    Raises:
        Nothing.

    Example:
        >>> lower_lr(nn.Linear(2, 2), None, RemedyContext("lower-lr"))[1].details["factor"]
        10.0
    """
    factor, optimizer = float(ctx.options.get("factor", 10.0)), ctx.optimizer
    lrs = [g["lr"] for g in optimizer.param_groups] if optimizer is not None else []
    new = [lr / factor for lr in lrs]
    why = ("the loss or the gradients blew up: a smaller learning rate keeps the updates "
           "small relative to the weights")
    return model, Change("lower-lr", [], why, "advice",
                         {"factor": factor, "current": lrs, "suggested": new,
                          "code": f"for g in optimizer.param_groups: g['lr'] /= {factor:g}"})


@register("lr-find", family="advice", keeps_map=True, summary="run an LR range test")
def lr_find(model: nn.Module, layers: list[str] | None, ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """Advise an LR range test (Smith 2017); the model is returned as is.

    Args:
        model: the model, returned as is.
        layers, ctx: unused (the remedy signature).

    Returns:
        ``(model, change)``: advice.

    Raises:
        Nothing.

    Example:
        >>> lr_find(nn.Linear(2, 2), None, RemedyContext("lr-find"))[1].kind
        'advice'
    """
    why = ("training stalls: run a learning-rate range test and pick the LR where the loss "
           "falls fastest (Smith 2017)")
    return model, Change("lr-find", [], why, "advice",
                         {"code": "sweep the LR exponentially over ~100 steps, plot the loss, "
                                  "take ~1/10 of the LR at the minimum"})
