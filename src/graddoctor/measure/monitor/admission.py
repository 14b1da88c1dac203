"""What watch accepts, checked once when a watcher is made: one device, materialised
parameters; what it degrades (no activation statistics for compiled or TorchScript models).

Example:
    >>> from torch import nn
    >>> from graddoctor.measure.monitor.schedule import Schedule
    >>> net = nn.Linear(2, 1)
    >>> admit(net, net, Schedule(), False)[0].activation_every > 0
    True
"""

from __future__ import annotations

import warnings

from torch import nn

from graddoctor.errors import InputError
from graddoctor.measure.monitor.schedule import Schedule
from graddoctor.modelmap.support import script_module, uninitialised_reason
from graddoctor.stack import user_level

_WHO = "graddoctor.watch"  # the name users call


def admit(model: nn.Module, root: nn.Module, schedule: Schedule, output_grads: bool) -> tuple[Schedule, bool]:
    """Check ``root`` (the unwrapped ``model``) and return the schedule and ``output_grads``
    watch can keep (activation statistics off, with one warning, where no module hook fires).

    Raises:
        InputError: (one line) parameters on several devices, lazy or on the meta device.
    """
    check_one_device(root)
    reason = uninitialised_reason(root)
    if reason is not None:
        raise InputError(f"watch(): {reason}")
    wants = bool(schedule.activation_every or output_grads)
    if wants and compiled_wrapper(model):
        warnings.warn(f"{_WHO}: activation statistics are off for a torch.compile'd model (module hooks "
                      "added between compiled calls do not fire)", stacklevel=user_level())
        return schedule.without_activations(), False
    scripted = script_module(root)
    if wants and scripted is not None:
        warnings.warn(f"{_WHO}: activation statistics are off: {'the model' if not scripted else repr(scripted)} "
                      "is a TorchScript module (no Python hooks) - watch the eager module for them", stacklevel=user_level())
        return schedule.without_activations(), False
    return schedule, output_grads


def compiled_wrapper(model: nn.Module) -> bool:
    """``model`` is a ``torch.compile`` wrapper (its ``_orig_mod`` is the module it compiles).

    Example:
        >>> import torch
        >>> compiled_wrapper(torch.compile(nn.Linear(1, 1))), compiled_wrapper(nn.Linear(1, 1))
        (True, False)
    """
    return isinstance(getattr(model, "_orig_mod", None), nn.Module)


def check_one_device(model: nn.Module) -> None:
    """Check that the parameters of ``model`` live on one device (the ring buffer and the fused
    reductions need one device: model parallelism is not supported yet).

    Args:
        model: the model.

    Raises:
        InputError: (one line) the parameters are on several devices.

    Example:
        >>> check_one_device(nn.Linear(2, 2))  # fine: one device
    """
    devices = sorted({str(p.device) for p in model.parameters()})
    if len(devices) > 1:
        raise InputError(f"watch() needs the parameters on one device, found {', '.join(devices)} "
                         "(model parallelism is not supported yet) - watch one device's part")


__all__ = ["admit", "check_one_device"]
