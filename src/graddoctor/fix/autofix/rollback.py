"""``RollbackPoint``: the weights a blown-up run is rolled back to, kept fresh while it learns.

Taken when watch attaches; replaced by the re-drawn weights of an init fix (the new start);
and moved forward at a check where the run is learning well (``judge.learning``), its loss level
is the lowest since the last fix, no fix is on trial and the window holds no exploding or
non-finite finding at any severity. A blow-up late in a run then loses the steps since the last
good check, not the whole run (a plain 10-layer CNN, SGD 0.01 + momentum, blew up at step 180
after a fix at step 10: rolled back to the step-10 weights, it ended at chance). A stuck run
never moves it, so a post-LN restart (which must start from the init) still gets the
attach-time weights. Memory: one copy of the weights, refreshed in place.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(2, 1); point = RollbackPoint(net)
    >>> win = [{"step": t, "loss": 2.0 * 0.9 ** t} for t in range(1, 31)]
    >>> with torch.no_grad(): _ = net.weight.fill_(0.5)
    >>> point.refresh(net, 30, win, [], 0.1), point.step
    (True, 30)
    >>> with torch.no_grad(): _ = net.weight.fill_(float("nan"))
    >>> change = point.restore(net); float(net.weight[0, 0]), "step 30" in change.why
    (0.5, True)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from graddoctor.fix.autofix.judge import learning
from graddoctor.fix.remedies.base import Change
from graddoctor.report import Finding


def snapshot(model: nn.Module, into: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """A copy of every parameter and buffer, by name (the rollback point); copied into ``into``'s
    tensors when it holds the same names and shapes (no second copy in memory at any time).

    Example:
        >>> net = nn.Linear(2, 1); snap = snapshot(net); t = snap["weight"]
        >>> with torch.no_grad(): _ = net.weight.fill_(3.0)
        >>> snapshot(net, into=snap)["weight"] is t, float(t[0, 0])
        (True, 3.0)
    """
    state = model.state_dict(keep_vars=True)
    if into is not None and into.keys() == state.keys() and all(
            into[k].shape == v.shape and into[k].dtype == v.dtype and into[k].device == v.device
            for k, v in state.items()):
        with torch.no_grad():
            for k, v in state.items():
                into[k].copy_(v)
        return into
    return {k: v.detach().clone() for k, v in state.items()}


def rollback(model: nn.Module, snap: dict[str, torch.Tensor], taken: str = "when watch attached") -> Change:
    """Restore the weights that still exist with the same shape from ``snap`` (in place);
    ``taken`` says when the snapshot was taken (in the change's reason).

    Example:
        >>> net = nn.Linear(2, 1); snap = snapshot(net)
        >>> with torch.no_grad(): _ = net.weight.fill_(float("nan"))
        >>> rollback(net, snap).remedy, bool(torch.isfinite(net.weight).all())
        ('rollback', True)
    """
    restored = []
    with torch.no_grad():
        for k, v in model.state_dict(keep_vars=True).items():
            old = snap.get(k)
            if old is not None and old.shape == v.shape:
                v.copy_(old)
                restored.append(k)
    return Change("rollback", sorted({k.rpartition(".")[0] for k in restored}),
                  f"the run blew up: weights restored from the snapshot taken {taken}",
                  "applied", {"tensors": len(restored)})


#: findings (any severity) that keep a check's weights from becoming the rollback point
UNSTABLE = ("exploding-gradient", "non-finite")


class RollbackPoint:
    """The rollback snapshot of ``model`` (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        self.weights: dict[str, torch.Tensor] = snapshot(model)
        self.step, self.why, self.best = 0, "when watch attached", math.inf

    def restart(self, model: nn.Module, step: int) -> None:
        """After an init fix: its re-drawn weights are the new start."""
        self.weights = snapshot(model, into=self.weights)
        self.step, self.why, self.best = step, f"at step {step} (the weights re-drawn then)", math.inf

    def new_window(self) -> None:
        """A fix was applied: levels before it do not compare with levels after it."""
        self.best = math.inf

    def refresh(self, model: nn.Module, step: int, window: list[dict], findings: list[Finding],
                now: float) -> bool:
        """Move the point to the current weights when the run is learning at its best level."""
        if not (math.isfinite(now) and now < self.best and learning(window)) or any(
                f.code in UNSTABLE for f in findings):
            return False
        self.weights = snapshot(model, into=self.weights)
        self.step, self.why, self.best = step, f"at step {step} (the last check where the run was learning)", now
        return True

    def restore(self, model: nn.Module) -> Change:
        """Roll ``model`` back to the point (the weights that still fit)."""
        return rollback(model, self.weights, self.why)


__all__ = ["UNSTABLE", "RollbackPoint", "rollback", "snapshot"]
