"""``InitAudit``: autofix's look at the weights before training moves them.

The static ``poor-init`` audit (``actions.init_fault``) runs once: at attach on the example
inputs, or else at the first forward of the model (its forward pre-hook ``keep_inputs``, which
also keeps the latest batch for the remedies that trace the model). The first forward comes
before the first step, so the weights are still the attach-time ones: after a step, a rate
that blew up would look like a bad init. The traced forward is not a training forward (the
watcher's ``forwards.mapping`` flag is up meanwhile). Weights that look trained
(``measure.trained.looks_trained``: loaded from a checkpoint, or trained before watch attached) are no
init: their faults are dropped. An audit that fails warns and autofix goes on without it.

Example:
    >>> import torch, types
    >>> from torch import nn
    >>> net = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(16, 16), nn.ReLU())])
    >>> audit = InitAudit(net, None, types.SimpleNamespace(mapping=False), lambda: 2)
    >>> _ = net.register_forward_pre_hook(audit.keep_inputs, with_kwargs=True)
    >>> _ = net(torch.randn(4, 16)); [f.code for f in audit.faults]
    ['poor-init']
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from torch import nn

from graddoctor.fix.autofix.actions import init_fault
from graddoctor.measure.trained import looks_trained
from graddoctor.report import Finding


class InitAudit:
    """The attach-time init audit and the latest batch (see the module docstring).

    Args:
        root: the watched model.
        refused: why surgery is refused (then no audit), or None.
        forwards: the watcher's forward machinery (its ``mapping`` flag marks traced forwards).
        stacklevel: the warning's ``stacklevel`` (the user's line).
    """

    def __init__(self, root: nn.Module, refused: str | None, forwards: Any, stacklevel: Callable[[], int]) -> None:
        self.root, self.refused, self.forwards, self.stacklevel = root, refused, forwards, stacklevel
        self.faults: list[Finding] | None = None  # None: not looked yet
        self.inputs: Any = None  # the latest training batch (without example inputs)

    def keep_inputs(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """The model's forward pre-hook: keep the batch; audit at the first one."""
        if self.forwards.mapping:
            return
        self.inputs = (args[0] if len(args) == 1 else args) if not kwargs else kwargs if not args else None
        if self.faults is None and self.inputs is not None:
            self.look(self.inputs)

    def look(self, inputs: Any, given: bool = False) -> bool:
        """Run the audit once on ``inputs`` (nothing to audit without inputs or with surgery
        refused). False when the forward failed: ``given`` inputs (the user's example inputs)
        are then left for the first training batch (``faults`` stays None)."""
        self.faults = []
        if self.refused is not None or inputs is None:
            return True
        self.forwards.mapping = True
        try:
            faults = init_fault(self.root, inputs)
            self.faults = [] if faults and looks_trained(self.root) else faults  # not an init: trained
            return True
        except Exception as e:  # noqa: BLE001 - an exotic forward: autofix goes on without it
            why = f"{type(e).__name__}: {e}"
            if given:
                self.faults = None
                warnings.warn(f"graddoctor.autofix: example_inputs do not fit the model ({why}); autofix "
                              "uses the first training batch instead", stacklevel=self.stacklevel())
            else:
                warnings.warn(f"graddoctor.autofix: the init audit failed ({why}); autofix goes on "
                              "without it", stacklevel=self.stacklevel())
            return False
        finally:
            self.forwards.mapping = False

    def take(self) -> list[Finding]:
        """The faults found, once (the first check acts on them)."""
        out, self.faults = self.faults or [], []
        return out


__all__ = ["InitAudit"]
