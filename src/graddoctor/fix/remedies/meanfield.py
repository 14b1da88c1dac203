"""Mean-field theory of signal propagation at init: pure functions, no model.

A wide plain net with weights of variance ``sigma_w^2 / fan_in`` and biases of variance
``sigma_b^2`` maps the pre-activation variance ``q`` of one layer to the next by
(Poole et al. 2016; Schoenholz et al. 2017)::

    q_next = sigma_w^2 E[phi(sqrt(q) z)^2] + sigma_b^2,        z ~ N(0, 1)

and multiplies the squared size of a backpropagated gradient (and of a small difference
between two inputs) by ``chi = sigma_w^2 E[phi'(sqrt(q*) z)^2]`` per layer at the fixed point
``q*``. ``chi < 1`` (ordered phase) forgets the input over ``xi_c = -1 / ln(chi)`` layers and
the gradient vanishes; ``chi > 1`` (chaotic) it explodes; ``chi = 1`` is the *edge of chaos*,
where ``xi_c`` diverges and depth is limited by the variance map's own scale ``xi_q`` and the
spread of the input-output Jacobian's singular values. With orthogonal weights that spread
grows like ``depth * (E[phi'^4] / E[phi'^2]^2 - 1)`` (Pennington, Schoenholz & Ganguli 2017:
dynamical isometry; Xiao et al. 2018 trained a 10,000-layer tanh CNN this way), which is
small when ``q*`` is small: ``critical_q`` picks ``q*`` so that it stays below ``SPREAD``.

Expectations are Gauss-Hermite sums (``NODES`` points); ``phi`` is the torch module of the
activation kind (``graddoctor.kinds``), *centred* (``phi - phi(0)``; the init sets each bias
to cancel ``phi(0)``, so a sigmoid behaves as ``tanh(x / 2) / 2``), its derivatives come from
autograd.

Example:
    >>> sw, sb = critical_point("tanh", 0.01)
    >>> round(sw, 3), round(chi("tanh", sw, sb), 4)
    (1.01, 1.0)
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from graddoctor import kinds

#: Gauss-Hermite nodes for the Gaussian expectations
NODES = 81
#: the largest predicted spread of the Jacobian's squared singular values that ``critical_q``
#: allows, ``depth * (E[phi'^4] / E[phi'^2]^2 - 1)`` (Pennington et al. 2017, orthogonal weights)
SPREAD = 1.0
#: bounds of the fixed-point variance ``q*`` (small: near-linear and well conditioned; large:
#: more nonlinear); a sigmoid's q* cannot be small (its mean output is 1/2: q* >= sigma_w^2 / 4)
Q_RANGE = (1e-3, 100.0)

_Z, _W = np.polynomial.hermite_e.hermegauss(NODES)
_W = _W / _W.sum()


@lru_cache(maxsize=256)
def _derivatives(kind: str, q: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """phi - phi(0), phi', phi'' at the nodes sqrt(q) z, for activation kind ``kind``."""
    phi = kinds.get(kind).modules[0]()
    x = torch.tensor(math.sqrt(q) * _Z, dtype=torch.float64, requires_grad=True)
    y = phi(x) - phi(torch.zeros((), dtype=torch.float64))
    (d1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x, allow_unused=True)
    d2 = torch.zeros_like(x) if d2 is None else d2
    return y.detach().numpy(), d1.detach().numpy(), d2.detach().numpy()


def offset(kind: str) -> float:
    """phi(0): what each bias cancels so that the next layer sees a centred signal.

    Example:
        >>> offset("sigmoid"), offset("tanh")
        (0.5, 0.0)
    """
    return float(kinds.get(kind).modules[0]()(torch.zeros(())))


def expect(kind: str, q: float, what: str) -> float:
    """E over z ~ N(0, 1) of ``what`` at sqrt(q) z: "phi2", "dphi2", "dphi4" or "phi_d2phi".

    Example:
        >>> round(expect("tanh", 1e-4, "dphi2"), 3)  # tanh'(0)^2 = 1
        1.0
    """
    y, d1, d2 = _derivatives(kind, float(q))
    vals = {"phi2": y**2, "dphi2": d1**2, "dphi4": d1**4, "phi_d2phi": y * d2}[what]
    return float((_W * vals).sum())


def fixed_point(kind: str, sigma_w: float, sigma_b: float, q0: float = 1.0, iters: int = 500) -> float:
    """``q*``: the variance map iterated from ``q0`` to its fixed point.

    Example:
        >>> round(fixed_point("tanh", 1.0, 0.0, iters=50), 3) < 0.05  # linear regime: q* = 0
        True
    """
    q = q0
    for _ in range(iters):
        nxt = sigma_w**2 * expect(kind, q, "phi2") + sigma_b**2
        if abs(nxt - q) < 1e-12:
            return nxt
        q = nxt
    return q


def chi(kind: str, sigma_w: float, sigma_b: float, q: float | None = None) -> float:
    """The per-layer gradient factor ``sigma_w^2 E[phi'^2]`` at ``q`` (default: the fixed point).

    Example:
        >>> chi("tanh", 3.0, 0.0) > 1 > chi("tanh", 0.5, 0.0)  # chaotic / ordered
        True
    """
    q = fixed_point(kind, sigma_w, sigma_b) if q is None else q
    return sigma_w**2 * expect(kind, q, "dphi2")


def critical_point(kind: str, q_star: float) -> tuple[float, float]:
    """(sigma_w, sigma_b) on the critical line whose fixed point is ``q_star`` (chi = 1 there).

    Raises:
        ValueError: no such point (``sigma_b^2`` would be negative: ``q_star`` too small for
            this activation, e.g. a sigmoid, whose output has mean 1/2).

    Example:
        >>> sw, sb = critical_point("tanh", 1 / 64)
        >>> round(sw, 3), sb < 0.01
        (1.015, True)
    """
    sw2 = 1.0 / expect(kind, q_star, "dphi2")
    sb2 = q_star - sw2 * expect(kind, q_star, "phi2")
    if sb2 < 0:
        raise ValueError(f"no critical point of {kind} with q* = {q_star:g}")
    return math.sqrt(sw2), math.sqrt(sb2)


def spread(kind: str, q: float) -> float:
    """Per-layer growth of the Jacobian spectrum's spread with orthogonal weights,
    ``E[phi'^4] / E[phi'^2]^2 - 1`` at ``q`` (0 for a linear map).

    Example:
        >>> spread("tanh", 0.01) < spread("tanh", 0.1)
        True
    """
    return expect(kind, q, "dphi4") / expect(kind, q, "dphi2") ** 2 - 1.0


def critical_q(kind: str, depth: int) -> float:
    """The largest ``q*`` in ``Q_RANGE`` with ``depth * spread <= SPREAD`` that has a critical point.

    Example:
        >>> critical_q("tanh", 1000) < critical_q("tanh", 100)
        True
    """
    lo, hi = Q_RANGE
    grid = np.geomspace(lo, hi, 100)
    ok = [q for q in grid if depth * spread(kind, q) <= SPREAD and _has_point(kind, q)]
    if ok:
        return float(max(ok))
    feasible = [q for q in grid if _has_point(kind, q)]
    return float(min(feasible)) if feasible else hi


def _has_point(kind: str, q: float) -> bool:
    try:
        critical_point(kind, q)
    except ValueError:
        return False
    return True


def depth_scales(kind: str, sigma_w: float, sigma_b: float, q0: float = 1.0) -> dict[str, float]:
    """``xi_q`` and ``xi_c`` (layers; inf at the critical point) and ``chi`` (Schoenholz et al. 2017);
    ``q0``: where the search for the fixed point starts (near it: faster, exact at criticality).

    Example:
        >>> d = depth_scales("tanh", 0.5, 0.0)
        >>> round(d["chi"], 2), round(d["xi_c"], 2)
        (0.25, 0.72)
    """
    q = fixed_point(kind, sigma_w, sigma_b, q0)
    c = chi(kind, sigma_w, sigma_b, q)
    cq = c + sigma_w**2 * expect(kind, q, "phi_d2phi")
    xi_c = math.inf if abs(math.log(c)) < 1e-5 else 1.0 / abs(math.log(c))
    xi_q = math.inf if not 0 < cq < 1 else -1.0 / math.log(cq)
    return {"q_star": q, "chi": c, "xi_c": xi_c, "xi_q": xi_q}


__all__ = ["NODES", "Q_RANGE", "SPREAD", "chi", "critical_point", "critical_q", "depth_scales",
           "expect", "fixed_point", "offset", "spread"]
