"""What the lab measures, in one place: per-layer gradients, Jacobian spectra, training runs.

Each function is the single call an experiment makes for a measurement: graddoctor's own
``check``/``watch`` statistics, or plain autograd where a statistic is the oracle.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    >>> g = layer_grad_norms(net, torch.randn(16, 4), torch.randint(0, 3, (16,)))
    >>> g["names"], len(g["backprop"])
    (['0', '2'], 2)
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from graddoctor import kinds
from graddoctor.diagnose.checkup import check
from graddoctor.diagnose.watching import watch as gd_watch
from graddoctor.errors import InputError
from graddoctor.train import fit, shuffled_batches

_LAYER_TYPES = (nn.Linear, nn.modules.conv._ConvNd)


def loss_fn_for(task: str) -> Any:
    """``F.cross_entropy`` for classification, ``F.mse_loss`` for regression."""
    return F.cross_entropy if task == "classification" else F.mse_loss


def layer_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     loss_fn: Any = F.cross_entropy) -> dict[str, list]:
    """Per Linear/Conv layer, in execution order: the norm of the backpropagated gradient
    (dLoss/d layer output, summed over the batch) and of the weight gradient, at the
    current weights. The model's gradients and mode are left as they were.

    Returns ``{"names", "backprop", "weight"}``.
    """
    outs: dict[str, torch.Tensor] = {}
    order: list[str] = []

    def hook(name: str):  # noqa: ANN202
        def fn(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            out.retain_grad()
            outs[name] = out
            order.append(name)
        return fn

    layers = {n: m for n, m in model.named_modules() if isinstance(m, _LAYER_TYPES)}
    handles = [m.register_forward_hook(hook(n)) for n, m in layers.items()]
    saved = {n: p.grad for n, p in model.named_parameters()}
    try:
        for p in model.parameters():
            p.grad = None
        loss_fn(model(x), y).backward()
        backprop = [float(outs[n].grad.norm()) for n in order]
        weight = [float(layers[n].weight.grad.norm()) for n in order]
    finally:
        for h in handles:
            h.remove()
        for n, p in model.named_parameters():
            p.grad = saved[n]
    return {"names": order, "backprop": backprop, "weight": weight}


def probe_profile(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, Any]:
    """``graddoctor.check`` on ``(x, y)``: the init probe's per-layer RMS of dLoss/d(layer
    output) (``grad_rms``, execution order), its Jacobian sketch, and the finding codes.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        >>> p = probe_profile(net, torch.randn(16, 4), torch.randint(0, 3, (16,)))
        >>> p["names"], len(p["grad_rms"])
        (['0', '2'], 2)
    """
    report = check(model, x, target=y)
    probe = report.data["probe"]
    return {"names": probe["layers"], "grad_rms": probe["grad_rms"],
            "jacobian": probe["jacobian"], "codes": sorted(report.codes)}


def watched_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       loss_fn: Any = F.cross_entropy) -> dict[str, list]:
    """Per-layer gradient norms of one backward as ``graddoctor.watch`` records them (what a
    user sees on a dashboard). ``p.grad`` is restored afterwards.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        >>> g = watched_grad_norms(net, torch.randn(16, 4), torch.randint(0, 3, (16,)))
        >>> g["names"], len(g["grad_norm"])
        (['0', '2'], 2)
    """
    saved = {n: p.grad for n, p in model.named_parameters()}
    try:
        for p in model.parameters():
            p.grad = None
        with gd_watch(model, activation_every=0, example_inputs=x) as w:
            loss = loss_fn(model(x), y)
            loss.backward()
            w.step(loss)
        meta, steps = w.records()
    finally:
        for n, p in model.named_parameters():
            p.grad = saved[n]
    names = [layer["name"] for layer in meta["layers"]]
    return {"names": names, "grad_norm": [steps[-1]["grad_norm"][n] for n in names]}


def jacobian_singular_values(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Singular values of the input-output Jacobian of ``model`` at each row of ``x`` (n, d).

    One batched backward pass: each input is repeated once per output unit and the
    identity is backpropagated (valid for models without batch coupling, e.g. no
    BatchNorm in train mode). Returns (n, min(d_in, d_out)).

    Example:
        >>> net = nn.Linear(3, 3, bias=False)
        >>> s = jacobian_singular_values(net, torch.randn(2, 3))
        >>> bool(torch.allclose(s[1], torch.linalg.svdvals(net.weight.detach()), atol=1e-6))
        True
    """
    n = x.shape[0]
    with torch.no_grad():
        d_out = model(x[:1]).shape[-1]
    xr = x.repeat_interleave(d_out, 0).requires_grad_(True)
    eye = torch.eye(d_out, dtype=x.dtype).repeat(n, 1)
    (jac,) = torch.autograd.grad(model(xr), xr, eye)
    return torch.linalg.svdvals(jac.reshape(n, d_out, -1))


@torch.no_grad()
def dead_fraction(model: nn.Module, x: torch.Tensor) -> float:
    """Fraction of hidden ReLU-family units (``kinds.family(...) == "relu"``) whose input is <= 0
    on every sample of ``x``."""
    counts = [0, 0]

    def fn(_m: nn.Module, inp: tuple, _out: torch.Tensor) -> None:
        alive = (inp[0] > 0).flatten(0, -2).any(0) if inp[0].dim() > 1 else inp[0] > 0
        counts[0] += int((~alive).sum())
        counts[1] += alive.numel()

    was = model.training
    handles = [m.register_forward_hook(fn) for m in model.modules() if kinds.family(kinds.of_module(m)) == "relu"]
    try:
        model.eval()
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return counts[0] / max(counts[1], 1)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, task: str = "classification",
             batch: int = 1024) -> dict[str, float]:
    """Loss (and accuracy for classification) of ``model`` in eval mode on ``(x, y)``."""
    was = model.training
    model.eval()
    try:
        out = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    finally:
        model.train(was)
    res = {"loss": float(loss_fn_for(task)(out, y))}
    if task == "classification":
        res["acc"] = float((out.argmax(-1) == y).float().mean())
    return res


def make_optimizer(model: nn.Module, name: str, lr: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """``sgd`` (plain), ``momentum`` (SGD with momentum) or ``adam``."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr)
    if name == "momentum":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    raise InputError(f"unknown optimizer {name!r}: use 'sgd', 'momentum' or 'adam'")


def train(model: nn.Module, data: Any, *, steps: int, lr: float, batch_size: int = 64,
          optimizer: str = "sgd", task: str = "classification", seed: int = 0,
          clip: float | None = None, eval_every: int = 0, warmup: int = 0,
          stop_at_acc: float | None = None, stop_at_loss: float | None = None, watch: bool = False,
          activation_every: int = 20) -> dict[str, Any]:
    """Train ``model`` on ``data`` (x_train, y_train, x_test, y_test) for ``steps`` minibatch steps.

    Returns per-step ``losses`` (train minibatch, nan once non-finite, then it stops),
    ``grad_norms`` (total, before clipping), ``evals`` ([step, test acc (or loss)] every
    ``eval_every`` steps), and ``steps_run``. Stops early once the test accuracy reaches
    ``stop_at_acc`` (a steps-to-target measurement, not model selection), or once the mean
    of the last 20 training minibatch losses is at most ``stop_at_loss`` (training data only,
    as Hochreiter & Schmidhuber stopped on training error). ``clip``: clip the total gradient norm to this value. ``warmup``:
    linear learning-rate warm-up steps. ``watch=True``: the run is recorded by
    ``graddoctor.watch`` and ``result["watch"]`` holds its summary (see :func:`watch_summary`).
    Batches: seeded epochs without replacement (:func:`graddoctor.train.shuffled_batches`).
    """
    opt = make_optimizer(model, optimizer, lr)
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
             if warmup else None)
    evals: list[list[float]] = []
    model.train()
    ctx: Any = (gd_watch(model, opt, activation_every=activation_every, flush_every=100,
                         example_inputs=data.x_train[:batch_size]) if watch else contextlib.nullcontext())
    with ctx as w:
        recent: list[torch.Tensor] = []

        def on_step(step: int, loss: torch.Tensor) -> bool:
            stop = False
            if stop_at_loss is not None:
                recent.append(loss.detach())
                del recent[:-20]
                stop = (len(recent) == 20 and step % 10 == 0
                        and float(torch.stack(recent).mean()) <= stop_at_loss)
            if w is not None:
                w.step(loss)
            if sched is not None:
                sched.step()
            if eval_every and step % eval_every == 0:
                ev = evaluate(model, data.x_test, data.y_test, task)
                evals.append([step, ev.get("acc", ev["loss"])])
                stop = stop or (stop_at_acc is not None and ev.get("acc", 0.0) >= stop_at_acc)
            return stop

        log = fit(model, opt, shuffled_batches(data.x_train, data.y_train, batch_size, seed), steps=steps,
                  loss_fn=loss_fn_for(task), clip=clip or None, grad_norms=True, stop_nonfinite=True,
                  on_step=on_step)
    out = {"losses": log.losses, "grad_norms": log.grad_norms, "evals": evals, "steps_run": log.steps}
    if w is not None:
        out["watch"] = watch_summary(w)
    return out


def watch_summary(w: Any, max_rows: int = 100) -> dict[str, Any]:
    """What the lab keeps of a ``graddoctor.watch`` run: layer names, per-layer gradient
    norms (at most ``max_rows`` steps, evenly spaced), the last activation statistics
    (mean dead / saturated fraction over sites) and the codes of ``w.report()``."""
    meta, steps = w.records()
    names = [layer["name"] for layer in meta["layers"]]
    rows = [s for s in steps if "grad_norm" in s]
    keep = rows[:: max(1, len(rows) // max_rows)]
    grads = [[s["step"], [s["grad_norm"].get(n) for n in names]] for s in keep]
    acts = [s["act"] for s in steps if s.get("act")]
    last = acts[-1] if acts else {}
    dead = [v["dead_frac"] for v in last.values() if v.get("dead_frac") is not None]
    sat = [v["sat_frac"] for v in last.values() if v.get("sat_frac") is not None]
    return {"layers": names, "grad_norm": grads,
            "dead_frac": sum(dead) / len(dead) if dead else None,
            "sat_frac": sum(sat) / len(sat) if sat else None,
            "codes": sorted(w.report().codes)}
