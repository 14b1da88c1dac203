"""How ``w.step()`` calls meet the optimizer steps: loss pairing, GradScaler skips, closure steps.

The loss rule (``LossSlot``): the losses given between two optimizer steps are averaged into
the step that closes them, the later one. A step also takes the first loss given after it
when it closed none (``w.step(loss)`` once per step, after ``opt.step()``), or when the loop
calls ``w.step`` at the end of every micro-batch, after the conditional ``opt.step()``
(Accelerate's ``accumulate``): that micro-batch's loss was computed before the step. Which of
the two loops runs is learned at the second step: the first step closed one loss fewer than
the second (``acc - 1`` against ``acc``); until then that loss is held. Loops that call
``w.step`` before ``opt.step()`` (once per step or per micro-batch) close all their losses.
The loop's order is learned once, from the first evidence: a step that closed none taking the
loss after it (after), or a step that closed losses followed by the next step with no loss
between (before). A loss given when a backward ran since the last step (``FreshGrads``) is
the next step's whatever the order: ``w.step`` every k steps before ``opt.step()``, and a
batch the loop skipped (its loss averaged into the next step) do not shift the later losses.

Skips (``StepCount``): ``scaler.update()`` since the previous ``w.step()`` with no optimizer
step is an iteration the GradScaler skipped; micro-batches of gradient accumulation (no update)
are not. Closures (``ClosureStep``): ``opt.step(closure)`` computes the gradients inside the
step, so the step is recorded when its first closure evaluation returns (LBFGS evaluates it
several times: the first is the gradient at the weights the step starts from, whose loss
``LBFGS.step`` returns).

Example:
    >>> from graddoctor.measure.monitor.ring import Row
    >>> slot, rows = LossSlot(), [Row(1), Row(2)]
    >>> for loss in (1.0, 2.0, 3.0):  # acc=4, w.step after the conditional opt.step()
    ...     slot.add(torch.tensor(loss))
    >>> slot.new_row(rows[0]); slot.add(torch.tensor(4.0))
    >>> for loss in (5.0, 6.0, 7.0):
    ...     slot.add(torch.tensor(loss))
    >>> slot.new_row(rows[1]); slot.add(torch.tensor(8.0)); slot.after
    True
    >>> rows[0].loss.item(), rows[1].loss.item()
    (2.5, 6.5)
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch

from graddoctor.measure.monitor.ring import Row
from graddoctor.stack import user_level

#: w.step() calls in a row without an optimizer step (or a GradScaler skip) before watch warns
#: (gradient accumulation calls it a few times per step, so this many means the wrong optimizer)
IDLE_WSTEPS = 100
_WHO = "graddoctor.watch"


def _plus(acc: tuple[torch.Tensor, int] | None, total: torch.Tensor, n: int = 1) -> tuple[torch.Tensor, int]:
    return (total, n) if acc is None else (acc[0] + total, acc[1] + n)


class LossSlot:
    """Pairs each ``w.step(loss)`` with its step's row (the rule: the module docstring).

    One running sum per open group (O(1) memory), kept on the device.

    Example:
        >>> slot, row = LossSlot(), Row(1)
        >>> slot.add(torch.tensor(1.0)); slot.add(torch.tensor(3.0)); slot.new_row(row)
        >>> row.loss.item(), slot.pending
        (2.0, None)
    """

    def __init__(self) -> None:
        self.row: Row | None = None  # the last row, while a loss given after it may be its own
        self.closed: tuple[torch.Tensor, int] | None = None  # (sum, count) of the losses it closed
        self.held: torch.Tensor | None = None  # the first loss after ``row``, while its step is unknown
        self.pending: tuple[torch.Tensor, int] | None = None  # (sum, count) since the last row
        self.after: bool | None = None  # w.step comes after opt.step at each micro-batch (None: not learned)

    def new_row(self, row: Row) -> None:
        """A new step's row: it closes the waiting losses, and may take the next one."""
        self.settle()
        closed, self.pending = self.pending, None
        if closed is not None:
            row.loss = closed[0] if closed[1] == 1 else closed[0] / closed[1]
        if self.after is not False:  # (learned before: the losses come before their steps)
            self.row, self.closed = row, closed

    def add(self, loss: torch.Tensor, fresh: bool = False) -> None:
        """A loss: to the open row when it is its own, else it waits for the next row.

        Args:
            loss: the loss.
            fresh: a backward ran since the last step (``FreshGrads``): the loss is the next step's.
        """
        if fresh:
            if self.row is not None and self.closed is not None and self.held is None and self.after is None:
                self.after = False  # right after a step that closed losses: they come before the steps
            self.pending = _plus(self.pending, loss)
        elif self.row is not None and (self.closed is None or self.after):
            if self.closed is None and self.after is None:
                self.after = True  # a step that closed none took the loss given after it
            self._give(loss)
        elif self.row is not None and self.held is None:
            self.held = loss  # the first loss after a step that closed some: learned at the next row
        else:
            self.pending = _plus(self.pending, loss)

    def settle(self, last: bool = False) -> None:
        """The open row closes (a new row comes, or it leaves the ring: ``last``); a held loss goes
        to it when the first step closed fewer losses than the second (or no step follows)."""
        if self.held is not None and self.row is not None and self.closed is not None:
            held, self.held = self.held, None
            after = last or self.closed[1] < 1 + (self.pending[1] if self.pending else 0)
            if not last:
                self.after = after
            if after:
                self._give(held)
            else:
                self.pending = _plus(self.pending, held)
        elif not last and self.row is not None and self.closed is not None and self.after is None:
            self.after = False  # a step that closed losses, then the next step with none between
        self.row = self.closed = self.held = None

    def flushed(self, last_step: int) -> None:
        """The rows up to ``last_step`` leave the ring (call it before their records are built)."""
        if self.row is not None and self.row.step <= last_step:
            self.settle(last=True)

    def _give(self, loss: torch.Tensor) -> None:
        total, n = _plus(self.closed, loss)
        self.row.loss = total if n == 1 else total / n  # type: ignore[union-attr]
        self.row = self.closed = None


class FreshGrads:
    """Has a backward run since the last step? Then a loss given now is the next step's.

    ``mark`` (after each optimizer step, and at a step the GradScaler skipped) notes the first
    parameter with a gradient, that gradient (a weak reference) and its version. ``fresh`` is
    True when that parameter now holds another gradient tensor, or the same one changed more
    than once (``zero_grad(set_to_none=False)`` zeroes it in place: one change; a backward then
    adds into it: a second). Cleared gradients (None) or the ones the step used: not fresh. This
    tells ``w.step(loss)`` before ``opt.step()`` from ``w.step(loss)`` after it when the loop
    calls it only every k steps, or skips a batch, where the order of the calls alone cannot.

    Example:
        >>> p = torch.nn.Parameter(torch.ones(2)); opt = torch.optim.SGD([p], lr=0.1)
        >>> marks = FreshGrads(); p.grad = torch.ones(2); marks.mark(opt)
        >>> before = marks.fresh(); p.grad = None; cleared = marks.fresh()
        >>> p.grad = torch.ones(2); before, cleared, marks.fresh()
        (False, False, True)
    """

    def __init__(self) -> None:
        self.param: weakref.ref | None = None
        self.grad: weakref.ref | None = None
        self.version = 0

    def mark(self, optimizer: Any) -> None:
        """The gradients are used (or cleared) as they are now."""
        params = (q for g in optimizer.param_groups for q in g["params"])
        first = next(params, None)
        p = first if first is None or first.grad is not None else next(
            (q for q in params if q.grad is not None), first)
        self.param = None if p is None else weakref.ref(p)
        g = None if p is None else p.grad
        self.grad, self.version = (None, 0) if g is None else (weakref.ref(g), g._version)

    def fresh(self) -> bool:
        """True when a backward ran since the last ``mark`` (False before any)."""
        p = self.param() if self.param is not None else None
        g = None if p is None else p.grad
        if g is None:
            return False
        if self.grad is None or self.grad() is not g:
            return True
        return g._version > self.version + 1


class StepCount:
    """What happened since the previous ``w.step()``: optimizer steps, ``scaler.update()`` calls.

    A ``torch.amp.GradScaler`` replaces its per-optimizer state at each ``update()``: that object
    changing with no optimizer step in between is a skipped iteration (no host read). Warns once
    after ``IDLE_WSTEPS`` calls with neither (the wrong optimizer given to watch?).

    Args:
        scaler: the GradScaler given to watch, or None.

    Example:
        >>> count = StepCount(); count.stepped()
        >>> count.wstep(None), count.steps
        (False, 1)
    """

    def __init__(self, scaler: Any = None) -> None:
        if scaler is not None and callable(getattr(scaler, "is_enabled", None)) and not scaler.is_enabled():
            scaler = None  # a disabled GradScaler (enabled=False: CPU, fp32) never skips a step
        self.scaler, self.steps, self.seen, self.idle = scaler, 0, 0, 0
        self.updates = getattr(scaler, "_per_optimizer_states", None)
        if scaler is not None and self.updates is None:
            warnings.warn(f"{_WHO}: the scaler ({type(scaler).__name__}) is not a torch.amp.GradScaler: "
                          "skipped steps are not recorded", stacklevel=user_level())

    def stepped(self) -> None:
        """The watched optimizer steps."""
        self.steps += 1

    def wstep(self, optimizer: Any) -> bool:
        """A ``w.step()`` call: True when the scaler skipped an optimizer step since the previous one."""
        stepped, self.seen = self.steps != self.seen, self.steps
        now = getattr(self.scaler, "_per_optimizer_states", None)
        skipped, self.updates = now is not self.updates and not stepped, now
        self.idle = 0 if stepped or skipped else self.idle + 1
        if self.idle == IDLE_WSTEPS:
            warnings.warn(f"{_WHO}: {IDLE_WSTEPS} w.step() calls without a step of the "
                          f"{type(optimizer).__name__} given to watch() - pass the optimizer "
                          "you step (losses meanwhile are averaged into the next step)", stacklevel=user_level())
        return skipped


def _closure(args: tuple, kwargs: dict) -> Any:
    """The closure given to ``optimizer.step`` (``args[0]`` is the optimizer), or None."""
    return kwargs["closure"] if "closure" in kwargs else args[1] if len(args) > 1 else None


class ClosureStep:
    """Records an ``opt.step(closure)`` step when its first closure evaluation returns.

    ``wrap`` gives the step pre-hook new ``(args, kwargs)`` with the closure wrapped; ``take``
    (the post-hook) records a step whose closure never ran, from the gradients after it.

    Example:
        >>> seen = []
        >>> cs = ClosureStep()
        >>> args, kwargs = cs.wrap(("opt", lambda: 1.0), {}, lambda: seen.append("rec"))
        >>> args[1](), args[1](), seen, cs.take()
        (1.0, 1.0, ['rec'], False)
    """

    def __init__(self) -> None:
        self.waiting: Callable[[], Any] | None = None  # records the step, until its closure ran
        self.wrapper: Callable[..., Any] | None = None  # the last closure wrapped here

    def new_step(self, args: tuple, kwargs: dict) -> bool:
        """A closure of the user's (not one wrapped here, as the inner call of a nested step gets):
        a new step, also when the step gate says otherwise (a step whose closure raised)."""
        closure = _closure(args, kwargs)
        return callable(closure) and closure is not self.wrapper

    def wrap(self, args: tuple, kwargs: dict, record: Callable[[], Any]) -> tuple[tuple, dict] | None:
        """The step's arguments with its closure wrapped, or None without a closure.

        Args:
            args: the step's positional arguments as the pre-hook gets them (the optimizer first).
            kwargs: its keyword arguments.
            record: records the step (run once, under ``no_grad``, after the first evaluation).
        """
        closure = _closure(args, kwargs)
        self.waiting = None  # (a step whose closure raised records nothing)
        if not callable(closure):
            return None
        self.waiting = record

        def closure_then_record(*a: Any, **k: Any) -> Any:
            out = closure(*a, **k)
            self.take()
            return out

        self.wrapper = closure_then_record
        if "closure" in kwargs:
            return args, {**kwargs, "closure": closure_then_record}
        return (args[0], closure_then_record, *args[2:]), kwargs

    def take(self) -> bool:
        """Record the waiting step now, if any (True when one was waiting)."""
        record, self.waiting, self.wrapper = self.waiting, None, None
        if record is None:
            return False
        with torch.no_grad():
            record()
        return True


__all__ = ["IDLE_WSTEPS", "ClosureStep", "FreshGrads", "LossSlot", "StepCount"]
