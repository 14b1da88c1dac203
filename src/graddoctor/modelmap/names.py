"""Module names: the names a map gives layers and activation sites.

Example:
    >>> from torch import nn
    >>> sorted(modules_by_name(nn.Sequential(nn.Linear(2, 2))))
    ['', '0']
"""

from __future__ import annotations

from torch import nn


def module_names(model: nn.Module) -> dict[nn.Module, str]:
    """Each module of ``model`` -> the first name it is registered under.

    A module shared under several names appears once. ``ModelMap``'s layer and site names
    are these names.

    Args:
        model: any module.

    Returns:
        ``{module: name}`` in registration order, the model itself as ``""``.

    Example:
        >>> lin = nn.Linear(2, 2)
        >>> list(module_names(nn.Sequential(lin, nn.ReLU(), lin)).values())
        ['', '0', '1']
    """
    names: dict[nn.Module, str] = {}
    for n, m in model.named_modules(remove_duplicate=False):
        names.setdefault(m, n)
    return names


def modules_by_name(model: nn.Module) -> dict[str, nn.Module]:
    """The inverse of ``module_names``: look a module up by its (``ModelMap``) name.

    Args:
        model: any module.

    Returns:
        ``{name: module}``, one entry per module (shared ones under their first name).

    Example:
        >>> lin = nn.Linear(2, 2)
        >>> modules_by_name(nn.Sequential(lin, lin))["0"] is lin
        True
    """
    return {n: m for m, n in module_names(model).items()}


__all__ = ["module_names", "modules_by_name"]
