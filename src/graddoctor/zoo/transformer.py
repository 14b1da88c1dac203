"""Transformer encoder classifiers with post-norm, pre-norm or ReZero blocks at any depth."""

from __future__ import annotations

import torch
from torch import nn

from graddoctor.errors import InputError
from graddoctor.zoo.common import activation as make_activation
from graddoctor.zoo.common import choice, positive, seeded

NORMS = ("pre", "post", "rezero")


class Block(nn.Module):
    """One encoder block: self-attention and a feed-forward net, each in a residual branch.

    post (Vaswani et al. 2017): x = LN(x + f(x)); pre (Xiong et al. 2020): x = x + f(LN(x));
    rezero (Bachlechner et al. 2020): x = x + alpha * f(x), alpha a scalar initialised to 0.
    """

    def __init__(self, d_model: int, nhead: int, dim_ff: int, norm: str, activation: str) -> None:
        super().__init__()
        self.norm_style = norm
        self.attn = nn.MultiheadAttention(d_model, nhead, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d_model, dim_ff), make_activation(activation),
                                nn.Linear(dim_ff, d_model))
        if norm == "rezero":
            self.alpha = nn.Parameter(torch.zeros(()))
        else:
            self.norm1 = nn.LayerNorm(d_model)
            self.norm2 = nn.LayerNorm(d_model)

    def _sa(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x, need_weights=False)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_style == "post":
            x = self.norm1(x + self._sa(x))
            return self.norm2(x + self.ff(x))
        if self.norm_style == "pre":
            x = x + self._sa(self.norm1(x))
            return x + self.ff(self.norm2(x))
        x = x + self.alpha * self._sa(x)
        return x + self.alpha * self.ff(x)


class TransformerClassifier(nn.Module):
    """embed (+ learned positions) -> blocks -> [final LN if pre-norm] -> pool -> Linear head."""

    def __init__(self, embed: nn.Module, blocks: nn.Sequential, d_model: int, max_len: int,
                 num_classes: int, norm: str, pool: str) -> None:
        super().__init__()
        self.embed = embed
        self.pos = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        self.blocks = blocks
        self.norm = nn.LayerNorm(d_model) if norm == "pre" else nn.Identity()
        self.head = nn.Linear(d_model, num_classes)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.pos.shape[0]:
            raise InputError(f"sequence length {x.shape[1]} > max_len={self.pos.shape[0]}; "
                             f"build the transformer with a larger max_len")
        h = self.embed(x) + self.pos[: x.shape[1]]
        h = self.norm(self.blocks(h))
        return self.head(h.mean(1) if self.pool == "mean" else h[:, -1])


def transformer(depth: int = 4, d_model: int = 64, nhead: int = 4, norm: str = "pre",
                input_dim: int | None = 2, vocab_size: int | None = None, num_classes: int = 10,
                max_len: int = 1024, dim_ff: int | None = None, activation: str = "relu",
                pool: str = "mean", seed: int = 0) -> TransformerClassifier:
    """A Transformer encoder sequence classifier (no dropout, so runs are deterministic).

    Inputs: (B, T, input_dim) floats through a Linear embedding, or (B, T) token
    ids when ``vocab_size`` is given (an Embedding). Learned positions (max_len).
    ``pool="mean"`` averages over time, ``"last"`` takes the last token.
    ``dim_ff`` defaults to 2 * d_model.

    Parameter count (d = d_model, f = dim_ff, K = num_classes, E = embedding:
    input_dim*d + d, or vocab_size*d)::

        E + max_len*d + depth*(4*d*d + 4*d + 2*d*f + f + d + N) + L + d*K + K
        N = 4d (two LayerNorms) for pre/post, 1 (alpha) for rezero; L = 2d for pre, else 0

    Default (depth 4, d 64, f 128, input_dim 2, max_len 1024, K 10, pre): 200,394.

    Example:
        >>> net = transformer(depth=2, d_model=16, nhead=2, input_dim=3, num_classes=4)
        >>> net(torch.randn(5, 7, 3)).shape
        torch.Size([5, 4])
    """
    positive("depth", depth, 0)
    positive("d_model", d_model)
    positive("nhead", nhead)
    positive("num_classes", num_classes)
    positive("max_len", max_len)
    choice("norm", norm, NORMS)
    choice("pool", pool, ("mean", "last"))
    make_activation(activation)
    if d_model % nhead:
        raise InputError(f"d_model={d_model} must be divisible by nhead={nhead}")
    if vocab_size is None and input_dim is None:
        raise InputError("give input_dim (float features) or vocab_size (token ids)")
    dim_ff = 2 * d_model if dim_ff is None else positive("dim_ff", dim_ff)
    with seeded(seed):
        embed = (nn.Embedding(positive("vocab_size", vocab_size), d_model) if vocab_size is not None
                 else nn.Linear(positive("input_dim", input_dim), d_model))
        blocks = nn.Sequential(*[Block(d_model, nhead, dim_ff, norm, activation)
                                 for _ in range(depth)])
        return TransformerClassifier(embed, blocks, d_model, max_len, num_classes, norm, pool)


def transformer_param_count(depth: int = 4, d_model: int = 64, norm: str = "pre",
                            input_dim: int | None = 2, vocab_size: int | None = None,
                            num_classes: int = 10, max_len: int = 1024,
                            dim_ff: int | None = None) -> int:
    """The documented parameter count of :func:`transformer`."""
    d = d_model
    f = 2 * d if dim_ff is None else dim_ff
    e = vocab_size * d if vocab_size is not None else input_dim * d + d
    per_block = 4 * d * d + 4 * d + 2 * d * f + f + d + (1 if norm == "rezero" else 4 * d)
    return e + max_len * d + depth * per_block + (2 * d if norm == "pre" else 0) + d * num_classes + num_classes
