"""What the two recurrent experiments share: LSTM gate initialisation and one training run.

``adding-problem`` and ``temporal-order`` train a vanilla tanh RNN and an LSTM from
``zoo.rnn`` on the same data, optimizer and step budget; each run stops early only on its
own training loss (never on the test set). The LSTM's gates start as Tallec & Ollivier's
chrono init sets them (or with a constant forget-gate bias, Gers et al. 2000).

Example:
    >>> from graddoctor import zoo
    >>> net = zoo.rnn("lstm", input_size=2, hidden_size=4)
    >>> chrono_init(net, T=100, seed=0)
    >>> b = net.rnn.bias_ih_l0.detach()
    >>> bool((b[4:8] >= 0).all() and (b[4:8] <= math.log(99)).all()), bool((b[:4] == -b[4:8]).all())
    (True, True)
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import nn

from graddoctor import zoo
from graddoctor.lab.measure import train


def _lstms(model: nn.Module) -> list[nn.LSTM]:
    return [m for m in model.modules() if isinstance(m, nn.LSTM)]


def set_forget_bias(model: nn.Module, value: float) -> None:
    """Set the forget-gate bias of every ``nn.LSTM`` in ``model`` to ``value`` (input-side
    bias, gate 2 of PyTorch's 4; the hidden-side bias keeps its init).

    Example:
        >>> from graddoctor import zoo
        >>> net = zoo.rnn("lstm", input_size=2, hidden_size=3)
        >>> set_forget_bias(net, 5.0)
        >>> net.rnn.bias_ih_l0[3:6].tolist()
        [5.0, 5.0, 5.0]
    """
    with torch.no_grad():
        for lstm in _lstms(model):
            for name, p in lstm.named_parameters():
                if name.startswith("bias_ih"):
                    h = p.shape[0] // 4
                    p[h:2 * h].fill_(value)


def chrono_init(model: nn.Module, T: int, seed: int = 0) -> None:
    """Chrono initialisation (Tallec & Ollivier 2018) of every ``nn.LSTM`` in ``model``:
    forget-gate bias ``b_f = log(u)``, ``u ~ U[1, T - 1]``, input-gate bias ``b_i = -b_f``
    (hidden-side biases of both gates 0), so the cells' memory time scales spread over 1..T
    steps and their input gates start mostly closed (Hochreiter & Schmidhuber's cure for
    "state drift"). ``seed`` seeds a private generator (the global RNG is not touched).

    Example:
        >>> from graddoctor import zoo
        >>> net = zoo.rnn("lstm", input_size=2, hidden_size=8)
        >>> chrono_init(net, T=100, seed=1)
        >>> f = torch.sigmoid(net.rnn.bias_ih_l0[8:16])
        >>> bool((f >= 0.5).all() and (f <= 0.99).all())
        True
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lstm in _lstms(model):
            h = lstm.hidden_size
            for name, p in lstm.named_parameters():
                if name.startswith("bias_ih"):
                    b_f = torch.log(1 + (T - 2) * torch.rand(h, generator=gen))
                    p[h:2 * h] = b_f
                    p[:h] = -b_f
                elif name.startswith("bias_hh"):
                    p[:2 * h] = 0.0


def fit_cell(cell: str, d: Any, s: dict[str, Any], seed: int, lr: float, **model_kw: Any
             ) -> tuple[nn.Module, dict[str, Any]]:
    """Build ``zoo.rnn(cell, ...)`` for the bundle ``d``, initialise an LSTM's gates as
    ``s["gate_init"]`` says (``"chrono"``, ``"forget"`` with ``s["forget_bias"]``, or
    ``"default"``), and train it with Adam at ``lr`` for at most ``s["steps"]`` steps of
    ``s["batch"]``, clipping the gradient norm at ``s["clip"]`` (0: no clipping), stopping
    once the mean of the last 20 training losses is <= ``s["stop_loss"]``.

    Returns the trained net and ``{"steps_run", "evals", "cpu_s"}`` (``evals``: the test
    metric every ``steps // 10`` steps, a monitor only).
    """
    net = zoo.rnn(cell, input_size=d.x_train.shape[-1], hidden_size=s["hidden"], seed=seed,
                  **model_kw)
    if s["gate_init"] == "chrono":
        chrono_init(net, d.x_train.shape[1], seed)
    elif s["gate_init"] == "forget":
        set_forget_bias(net, s["forget_bias"])
    c0 = time.process_time()
    r = train(net, d, steps=s["steps"], lr=lr, batch_size=s["batch"], optimizer="adam",
              task=d.task, seed=seed, clip=s["clip"] or None,
              eval_every=max(1, s["steps"] // 10), stop_at_loss=s["stop_loss"])
    return net, {"steps_run": r["steps_run"], "evals": r["evals"],
                 "cpu_s": time.process_time() - c0, "final_loss": _tail_mean(r["losses"])}


def _tail_mean(losses: list[float], n: int = 20) -> float:
    """Mean of the last ``n`` training losses (nan if any is non-finite)."""
    tail = losses[-n:]
    return sum(tail) / len(tail) if tail and all(math.isfinite(v) for v in tail) else math.nan
