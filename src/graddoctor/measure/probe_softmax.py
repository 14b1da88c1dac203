"""How peaked the model's attention is: the entropy of every attention softmax on one forward.

A ``TorchFunctionMode`` watches one forward of the model on the example inputs and reads the
attention probabilities wherever they are made:

- ``F.multi_head_attention_forward`` (``nn.MultiheadAttention``): called once more for its
  per-head weights, without dropout, masked keys read from its masks;
- ``F.scaled_dot_product_attention`` (Hugging Face's "sdpa", hand-written attention): the
  probabilities are recomputed from ``q``, ``k``, the scale, a causal flag and the mask (a
  boolean mask, or a float mask whose entries at or below ``MASKED`` are masked out; its other
  entries, a position bias such as ALiBi, are left out of the logits: they are not drawn from
  the weights);
- ``softmax`` over the last axis of a tensor of 4 axes (``[batch, heads, queries, keys]``), or of
  3 axes inside a module whose class name says attention (``nn.MultiheadAttention``'s
  ``[batch * heads, queries, keys]``); entries at or below ``MASKED`` are masked keys.

Per query row, the entropy over its ``n`` unmasked keys is divided by ``ln n`` (1: uniform, 0:
one-hot); rows with fewer than ``MIN_KEYS`` keys are left out. A site is the innermost module
running when the call is made (the call's index added when one module makes several); its
value is the mean over its rows, heads and batch. Dropout on the probabilities is not applied.

Example:
    >>> import torch
    >>> from torch import nn
    >>> att = nn.MultiheadAttention(16, 4, batch_first=True)
    >>> x = torch.randn(2, 8, 16)
    >>> sites = attention_entropy(nn.Sequential(nn.Identity()), x)  # no attention: no sites
    >>> sites
    []
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__(); self.att = att
    ...     def forward(self, x):
    ...         return self.att(x, x, x, need_weights=False)[0]
    >>> [(s.name, s.keys, s.entropy > 0.9) for s in attention_entropy(Net(), x)]
    [('att', 8, True)]
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from graddoctor.inputs import call_model
from graddoctor.modelmap import restored_state
from graddoctor.modelmap.state import mha_fastpath_disabled

#: a mask or logit entry at or below this masks its key out (HF adds finfo.min or -1e4)
MASKED = -5e3
#: query rows over fewer keys are not read (their entropy says little)
MIN_KEYS = 4
_SOFTMAX = (F.softmax, torch.softmax, torch.Tensor.softmax)
_MHA = inspect.signature(F.multi_head_attention_forward)


@dataclass
class AttentionSite:
    """One attention softmax: its module, the mean normalised entropy, the most keys a row had."""

    name: str
    entropy: float
    keys: int
    rows: int


class _Spy(TorchFunctionMode):
    def __init__(self, stack: list[nn.Module], names: dict[int, str]) -> None:
        super().__init__()
        self.stack, self.names = stack, names
        self.sums: dict[str, list[float]] = {}

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            if func is F.scaled_dot_product_attention:
                self._sdpa(*args, **kwargs)
            elif func is F.multi_head_attention_forward:  # a mode does not see the calls inside it
                self._mha(args, kwargs)
            elif func in _SOFTMAX and isinstance(out, torch.Tensor):
                self._softmax(args, kwargs, out)
        except Exception:  # noqa: BLE001 - a call the spy cannot read is left out, never raised
            pass
        return out

    def _where(self) -> str:
        return self.names.get(id(self.stack[-1]), "") if self.stack else ""

    def _softmax(self, args: Any, kwargs: Any, out: torch.Tensor) -> None:
        x = args[0]
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if dim not in (-1, x.dim() - 1):
            return
        inside = any("attention" in type(m).__name__.lower() for m in self.stack)
        if x.dim() == 4 or (x.dim() == 3 and inside):
            self._add(out.detach().float(), x.detach() > MASKED)

    def _sdpa(self, q: torch.Tensor, k: torch.Tensor, v: Any = None, attn_mask: Any = None,
              dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
              enable_gqa: bool = False) -> None:
        with torch.no_grad():
            if k.shape[-3] != q.shape[-3] and q.dim() >= 3:
                k = k.repeat_interleave(q.shape[-3] // k.shape[-3], -3)
            logits = (q.float() @ k.float().transpose(-1, -2)) * (scale or 1.0 / math.sqrt(q.shape[-1]))
            allow = torch.ones(logits.shape[-2:], dtype=torch.bool, device=logits.device)
            if is_causal:
                allow = allow.tril(logits.shape[-1] - logits.shape[-2])
            allow = allow.expand_as(logits)
            if attn_mask is not None:
                allow = allow & (attn_mask if attn_mask.dtype == torch.bool else attn_mask > MASKED)
            self._add(torch.softmax(logits.masked_fill(~allow, float("-inf")), -1), allow)

    def _mha(self, args: Any, kwargs: Any) -> None:
        a = _MHA.bind(*args, **kwargs)
        a.apply_defaults()
        a.arguments.update(dropout_p=0.0, training=False, need_weights=True, average_attn_weights=False)
        with torch.no_grad():
            p = F.multi_head_attention_forward(*a.args, **a.kwargs)[1]  # [B, H, L, S] (or [H, L, S])
        allow = torch.ones_like(p, dtype=torch.bool)
        for mask, per_key in ((a.arguments["attn_mask"], False), (a.arguments["key_padding_mask"], True)):
            if mask is None:
                continue
            ok = ~mask if mask.dtype == torch.bool else mask > MASKED  # True in a bool mask: masked out
            if per_key:
                ok = ok[:, None, None, :] if p.dim() == 4 else ok[:, None, :]
            elif ok.dim() == 3 and p.dim() == 4:
                ok = ok.view(p.shape[0], -1, *ok.shape[-2:])
            allow = allow & ok
        self._add(p.float(), allow)

    def _add(self, p: torch.Tensor, allow: torch.Tensor) -> None:
        n = allow.expand_as(p).sum(-1).float()
        ok = n >= MIN_KEYS
        if not ok.any():
            return
        h = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)
        h = (h[ok] / torch.log(n[ok])).clamp(0.0, 1.0)
        name = self._where()
        key = name if name not in self.sums else f"{name}#{sum(k.split('#')[0] == name for k in self.sums)}"
        self.sums[key] = [float(h.mean()), float(n.max()), float(h.numel())]


def attention_entropy(model: nn.Module, inputs: Any) -> list[AttentionSite]:
    """The attention sites of one forward of ``model`` on ``inputs``, in call order (see the module
    docstring). The model is left as it was (flags, buffers, RNG; no gradient kept).

    Example:
        >>> attention_entropy(nn.Linear(4, 2), torch.randn(3, 4))
        []
    """
    names = {id(m): n for n, m in model.named_modules()}
    stack: list[nn.Module] = []
    handles = []

    def enter(mod: nn.Module, _args: Any) -> None:
        stack.append(mod)

    def leave(mod: nn.Module, _args: Any, _out: Any) -> None:
        if stack:
            stack.pop()

    for m in model.modules():
        handles += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]
    spy = _Spy(stack, names)
    try:
        with restored_state(model), mha_fastpath_disabled(), torch.no_grad(), spy:  # no fused attention
            call_model(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return [AttentionSite(k, round(v[0], 4), int(v[1]), int(v[2])) for k, v in spy.sums.items()]


__all__ = ["MASKED", "MIN_KEYS", "AttentionSite", "attention_entropy"]
