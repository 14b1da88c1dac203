"""The records of a map: one module call, one layer, one activation site; and the layer kinds.

Example:
    >>> from torch import nn
    >>> layer_kind(nn.Conv2d(1, 1, 3)), layer_kind(nn.LayerNorm(4)), "other" in PROBE_KINDS
    ('conv', 'norm', True)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

#: layer kinds whose weights carry the backpropagated signal: the across-layer gradient
#: profiles of watch's rules use these (norm gains, embeddings with sparse row gradients and
#: "other" modules such as scalar gates are left out)
PROFILE_KINDS = ("linear", "conv", "rnn", "attention")
#: the init probe also profiles "other" parameter-owning modules (hand-written cells, custom
#: layers): it measures their output signal itself, not their weight gradients
PROBE_KINDS = (*PROFILE_KINDS, "other")


def layer_kind(module: nn.Module) -> str:
    """Coarse kind of a parameter-owning module.

    Args:
        module: a module that owns parameters.

    Returns:
        One of "linear", "conv", "norm", "rnn", "embedding", "attention", "other"
        (HF GPT-2's ``Conv1D`` is a linear; any class whose name holds "norm" is a norm).

    Example:
        >>> layer_kind(nn.Linear(2, 2)), layer_kind(nn.GRU(2, 2)), layer_kind(nn.PReLU())
        ('linear', 'rnn', 'other')
    """
    if isinstance(module, nn.Linear) or type(module).__name__ in ("Conv1D",):
        return "linear"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        return "rnn"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if "norm" in type(module).__name__.lower():
        return "norm"
    return "other"


@dataclass
class ModuleCall:
    """One module call, in execution order."""

    index: int
    name: str
    type: str
    input_shape: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None
    has_params: bool


@dataclass
class Layer:
    """A called module that owns parameters directly.

    ``depth``/``min_depth``: longest/shortest number of layers from the input to
    this layer's output (this layer included). ``activation``: kind of the first
    activation applied to its output (through norms and element-wise ops), None
    if none; ``activation_site`` names that site.
    """

    name: str
    type: str
    kind: str
    params: list[str]
    n_params: int
    calls: int = 0
    depth: int = 0
    min_depth: int = 0
    activation: str | None = None
    activation_site: str | None = None
    input_shape: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None
    is_output: bool = False
    feeds_output: bool = False  # its data flows into an output of the model (also through .detach())
    scale_free: bool = False  # every use of its output ends in a normalisation (modelmap.scale)
    constant_input: bool = False  # fed by buffers/parameters only, never the data (a position-bias MLP)


@dataclass
class ActivationSite:
    """An activation module, or a functional activation attributed to its owner module."""

    name: str
    kind: str
    family: str
    functional: bool
    owner: str
    calls: int = 0
    output_shape: tuple[int, ...] | None = None
    is_output: bool = False
    gate: bool = False  # its output multiplies another input-derived tensor (GLU, SE, hand-made LSTM)
    after_layer: bool = False  # its input comes from the data through at least one layer
    capped: bool = False  # c * tanh(x / c): a soft cap on logits (Gemma 2's attention), no hidden activation


__all__ = ["PROBE_KINDS", "PROFILE_KINDS", "ActivationSite", "Layer", "ModuleCall", "layer_kind"]
