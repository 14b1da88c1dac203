"""``prenorm``: post-LN Transformer blocks -> pre-LN, where the block says how.

A post-LN block computes ``x = LN(x + f(x))``: every residual path passes through a norm, so
the gradient reaching the input side is rescaled at each block and the output side's is
large at initialisation (Xiong et al. 2020, sec. 3, Theorem 1). A pre-LN block computes
``x = x + f(LN(x))``: the identity path is clean, and the model trains without warm-up.

Blocks that can switch (the model keeps its parameters; the function changes, so it is
meant for a model about to be trained):

| block | switch | final norm |
|---|---|---|
| ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer`` | ``norm_first = True`` | ``nn.TransformerEncoder/Decoder.norm`` set to a LayerNorm if None |
| a block with ``norm_style == "post"`` (graddoctor's zoo) | ``norm_style = "pre"`` | the parent's ``norm`` set to a LayerNorm if it is an ``nn.Identity`` |

Any other block is a manual change: the code to write is in the change's details.

Example:
    >>> import torch
    >>> layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    >>> new, change = prenorm(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), None,
    ...                       RemedyContext("prenorm"))
    >>> change.kind, new.layers[0].norm_first, type(new.norm).__name__
    ('applied', True, 'LayerNorm')
"""

from __future__ import annotations

import copy

from torch import nn

from graddoctor.fix.remedies.base import Change
from graddoctor.fix.remedies.registry import RemedyContext, register

_TORCH_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def _width(block: nn.Module) -> int | None:
    norm = next((m for m in block.modules() if isinstance(m, nn.LayerNorm)), None)
    return int(norm.normalized_shape[-1]) if norm is not None else None


def post_ln_blocks(model: nn.Module) -> list[str]:
    """Names of the post-LN blocks ``prenorm`` can switch.

    Example:
        >>> post_ln_blocks(nn.TransformerEncoderLayer(8, 2, 16))
        ['']
    """
    return [n for n, m in model.named_modules()
            if (isinstance(m, _TORCH_LAYERS) and not m.norm_first) or getattr(m, "norm_style", None) == "post"]


@register("prenorm", family="norm", options=(),
          summary="post-LN Transformer blocks -> pre-LN (norm before each sub-layer)")
def prenorm(model: nn.Module, layers: list[str] | None, ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """Switch every post-LN block of ``model`` (or of ``layers``' blocks) to pre-LN.

    Args:
        model: the model (deep-copied unless ``ctx.inplace``).
        layers: ignored (every switchable block is switched: a mix of post- and pre-LN blocks
            has no reason to be).
        ctx: ``ctx.inplace``.

    Returns:
        ``(new_model, change)``: "applied" when a block was switched, else "manual" with the
        code to write.

    Raises:
        Nothing.

    Example:
        >>> prenorm(nn.Linear(2, 2), None, RemedyContext("prenorm"))[1].kind
        'manual'
    """
    new = model if ctx.inplace else copy.deepcopy(model)
    switched = post_ln_blocks(new)
    finals: list[str] = []
    for name in switched:
        block = new.get_submodule(name)
        if isinstance(block, _TORCH_LAYERS):
            block.norm_first = True
        else:
            block.norm_style = "pre"
    for name, m in new.named_modules():
        blocks = [b for b in switched if b.startswith(f"{name}.") or (name == "" and b)]
        if not blocks:
            continue
        width = _width(new.get_submodule(blocks[-1]))
        if isinstance(m, (nn.TransformerEncoder, nn.TransformerDecoder)) and m.norm is None and width:
            m.norm = nn.LayerNorm(width)
            finals.append(f"{name}.norm" if name else "norm")
        elif isinstance(getattr(m, "norm", None), nn.Identity) and width:
            m.norm = nn.LayerNorm(width)
            finals.append(f"{name}.norm" if name else "norm")
    why = ("a post-LN block, x = LN(x + f(x)), rescales every residual path, so the model needs a "
           "learning-rate warm-up; a pre-LN block, x = x + f(LN(x)), keeps a clean identity path "
           "and trains without one (Xiong et al. 2020)")
    if not switched:
        code = "in each block: x = x + attn(ln1(x)); x = x + ff(ln2(x)); and one LayerNorm before the head"
        return new, Change("prenorm", [], why, "manual", {"code": code})
    return new, Change("prenorm", switched + finals, why, "applied",
                       {"blocks": switched, "final_norms": finals})


__all__ = ["post_ln_blocks", "prenorm"]
