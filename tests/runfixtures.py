"""Recorded runs in the watch run-log format (notes/RUNLOG.md) for the plot and HTML tests.

The recorder is plain autograd, independent of ``graddoctor.watch``: it trains a small model and
writes what the format promises, including frozen layers (grad_norm null) and an injected NaN.
"""

from __future__ import annotations

import json
import math

import torch
from torch import nn

from graddoctor import kinds
from graddoctor.runlog import encode


def tiny_model(depth: int = 6, width: int = 16, act: type[nn.Module] = nn.Sigmoid) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    d = 8
    for _ in range(depth - 1):
        layers += [nn.Linear(d, width), act()]
        d = width
    layers.append(nn.Linear(d, 3))
    return nn.Sequential(*layers)


def record_run(model: nn.Module | None = None, n_steps: int = 24, frozen: tuple[str, ...] = (),
               nan_at: int | None = None, update_every: int = 4, lr: float = 0.1) -> tuple[dict, list[dict]]:
    """Train ``model`` (default: a 6-layer sigmoid MLP) on random data and record a run.

    ``frozen``: layer names whose parameters get requires_grad=False (grad_norm null).
    ``nan_at``: at that step the first layer's gradient and the loss are NaN (the step is not applied).
    """
    model = model if model is not None else tiny_model()
    for name in frozen:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(False)
    layers = [(n, m) for n, m in model.named_modules() if any(True for _ in m.parameters(recurse=False))]
    sites = [(n, m) for n, m in model.named_modules() if kinds.of_module(m) is not None]
    meta = {
        "type": "meta", "version": 1,
        "layers": [{"name": n, "type": type(m).__name__, "kind": "linear", "depth": i + 1, "min_depth": i + 1,
                    "activation": None, "is_output": i == len(layers) - 1,
                    "numel": sum(p.numel() for p in m.parameters()),
                    "trainable": any(p.requires_grad for p in m.parameters())} for i, (n, m) in enumerate(layers)],
        "activations": [{"name": n, "kind": kinds.of_module(m), "family": kinds.family(kinds.of_module(m)),
                         "owner": None, "functional": False, "is_output": False} for n, m in sites],
        "config": {"update_every": update_every},
    }
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)
    outs: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda _m, _i, o, n=n: outs.__setitem__(n, o.detach())) for n, m in sites]
    steps = []
    try:
        for step in range(1, n_steps + 1):
            sampled = step % update_every == 0
            before = {n: [p.detach().clone() for p in m.parameters()] for n, m in layers} if sampled else {}
            loss = nn.functional.cross_entropy(model(x), y)
            model.zero_grad()
            loss.backward()
            if step == nan_at:
                first = next(p for _, m in layers for p in m.parameters() if p.grad is not None)
                first.grad.fill_(math.nan)
                loss = torch.tensor(math.nan)
            rec: dict = {"type": "step", "step": step, "loss": loss.item(), "skipped": False, "lr": lr,
                         "grad_norm": {}, "weight_norm": {}, "nonfinite": {}}
            for n, m in layers:
                grads = [p.grad for p in m.parameters() if p.grad is not None]
                rec["grad_norm"][n] = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])).item() if grads else None
                rec["weight_norm"][n] = torch.cat([p.detach().flatten() for p in m.parameters()]).norm().item()
                rec["nonfinite"][n] = int(sum((~torch.isfinite(g)).sum() for g in grads)) if grads else 0
            if step != nan_at:
                with torch.no_grad():
                    for p in model.parameters():
                        if p.grad is not None:
                            p -= lr * p.grad
            if sampled:
                rec["update_norm"], rec["update_ratio"] = {}, {}
                for n, m in layers:
                    new = torch.cat([p.detach().flatten() for p in m.parameters()])
                    upd = (new - torch.cat([b.flatten() for b in before[n]])).norm().item()
                    rec["update_norm"][n] = upd
                    rec["update_ratio"][n] = upd / max(new.norm().item(), 1e-12)
                rec["act"] = {}
                for n, m in sites:
                    o, kind = outs[n], kinds.of_module(m)
                    sat = kinds.saturated_mask(o, kind)
                    rec["act"][n] = {"mean": o.mean().item(), "std": o.std().item(),
                                     "zero_frac": (o == 0).float().mean().item(),
                                     "dead_frac": (o <= 0).all(0).float().mean().item() if kind in kinds.DYING else 0.0,
                                     "sat_frac": sat.float().mean().item() if sat is not None else 0.0}
            steps.append(rec)
    finally:
        for h in handles:
            h.remove()
    return meta, steps


def to_jsonl(meta: dict, steps: list[dict]) -> str:
    """The run as watch.jsonl text (non-finite floats as "nan"/"inf" strings)."""
    return "\n".join(encode(r) for r in [meta, *steps]) + "\n"


def from_jsonl(text: str) -> tuple[dict, list[dict]]:
    """Plain JSON lines back (strings kept as strings: plots must read them too)."""
    recs = [json.loads(line) for line in text.splitlines() if line.strip()]
    return recs[0], [r for r in recs[1:] if r.get("type") == "step"]
