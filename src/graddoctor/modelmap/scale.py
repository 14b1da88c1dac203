"""Layers whose output scale the model ignores: every use of the output ends in a normalisation.

A layer whose output reaches a normalisation only through ops that scale with it (views, sums
over an axis, products, a bias-free linear map, ReLU) passes on the direction of its output, not
its size: scaling the output by c changes nothing after the norm. Its gradient then goes as
1/size, so dL/d(output) tells how large the output is, not how well the signal flows. OLMo-2
normalises each branch's output before adding it to the residual stream, and its first branch
reads the 0.02-scale embedding: that branch's dL/d(output) is 100x the last one's, an "exploding
gradient" of 2-3 orders at the HF init of a model that trains well. For such *scale-free* layers
the probe rules read dL/d(output) x rms(output), which no rescaling changes.

The trace carries ``Tag.hom`` on each tensor: a bitmask of the layers (order of first call) of
which the tensor is a positively homogeneous function. A normalisation *normalises* those layers;
any op that does not scale with them (a sum with another tensor, a bias, softmax, a saturating or
smooth activation, a model output) *exposes* them: their size matters there. A layer is
scale-free when normalised and never exposed. Ops not known to scale expose (so the rules fall
back to the plain gradient, never the other way round).

Example:
    >>> flow = ScaleFlow()
    >>> flow.op("transpose", (None,), {}, 0b01), flow.op("add", (None, None), {}, 0b10)
    (1, 0)
    >>> flow.normalised, flow.exposed = 0b01, 0b10
    >>> flow.scale_free(2)
    [True, False]
"""

from __future__ import annotations

import torch
from torch import nn

from graddoctor.modelmap.tags import tag_of

#: ops homogeneous of degree 1 in their one tensor input (shape, dtype and pooling ops, dropout, ReLU)
_SAME = frozenset({
    "view", "view_as", "reshape", "reshape_as", "transpose", "permute", "contiguous", "flatten", "unflatten",
    "squeeze", "unsqueeze", "expand", "expand_as", "__getitem__", "split", "split_with_sizes", "chunk",
    "tensor_split", "unbind", "narrow", "select", "to", "type", "float", "half", "bfloat16", "double", "clone",
    "detach", "__get__", "t", "movedim", "moveaxis", "swapaxes", "flip", "roll", "repeat", "repeat_interleave",
    "tile", "dropout", "dropout1d", "dropout2d", "dropout3d", "feature_dropout", "mean", "sum", "pad",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d", "interpolate",
    "pixel_shuffle", "pixel_unshuffle", "index_select", "gather", "relu", "leaky_relu", "neg", "__neg__",
})
#: ops homogeneous in each tensor factor (products; a linear map or convolution without bias)
_PRODUCT = frozenset({"mul", "multiply", "__mul__", "__rmul__", "matmul", "__matmul__", "mm", "bmm", "einsum",
                      "div", "true_divide", "divide", "__truediv__", "outer"})
_AFFINE = frozenset({"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                     "conv_transpose3d"})
_CAT = frozenset({"cat", "concat", "concatenate", "stack", "hstack", "vstack"})
#: functional normalisations (a norm module is seen by ``ScaleFlow.layer``)
_NORMALISE = frozenset({"layer_norm", "group_norm", "rms_norm", "normalize", "instance_norm"})
#: activations that scale with their input (positive homogeneity)
HOMOGENEOUS_ACTIVATIONS = frozenset({"relu", "leaky_relu"})


def _op_name(name: str) -> str:
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name  # in place: as the op


class ScaleFlow:
    """The bitmasks of one trace: layers normalised, layers exposed (see the module docstring)."""

    def __init__(self) -> None:
        self.normalised = 0
        self.exposed = 0

    def op(self, name: str, args: tuple, kwargs: dict, hom: int) -> int:
        """The ``hom`` of the output of torch op ``name`` whose tagged inputs have the merged ``hom``."""
        name = _op_name(name)
        if not hom or name in _SAME or name in _PRODUCT:
            return hom
        if name in _AFFINE and (len(args) < 3 or args[2] is None) and kwargs.get("bias") is None:
            return hom
        if name in _CAT and args and isinstance(args[0], (list, tuple)) and all(_alike(t, hom) for t in args[0]):
            return hom  # parts that all scale together (a KV cache grown from an empty tensor)
        if name == "scaled_dot_product_attention" and len(args) >= 3:  # homogeneous in the values only
            value = tag_of(args[2])
            keep = value.hom if value is not None else 0
            self.exposed |= hom & ~keep
            return keep
        if name in _NORMALISE or (name == "batch_norm" and _bn_training(args, kwargs)):
            self.normalised |= hom
            return 0
        self.exposed |= hom
        return 0

    def activation(self, kind: str, hom: int) -> int:
        """The ``hom`` after an activation of ``kind``."""
        if kind in HOMOGENEOUS_ACTIVATIONS:
            return hom
        self.exposed |= hom
        return 0

    def layer(self, module: nn.Module, kind: str, bit: int, hom: int) -> int:
        """The ``hom`` of a layer's output (its own ``bit`` set, except for a norm) given its input's."""
        if kind == "norm":
            if _normalising(module):
                self.normalised |= hom
            else:  # BatchNorm in eval mode: an affine map with a shift
                self.exposed |= hom
            return 0
        if kind in ("linear", "conv") and not isinstance(getattr(module, "bias", None), torch.Tensor):
            return hom | bit
        self.exposed |= hom  # a bias, or a layer whose inside is not followed (RNN, attention, custom)
        return bit

    def scale_free(self, n: int) -> list[bool]:
        """For each of the first ``n`` layers: normalised and never exposed."""
        return [bool(self.normalised >> i & 1) and not self.exposed >> i & 1 for i in range(n)]


def _alike(t: object, hom: int) -> bool:
    """An empty tensor, or one that scales with exactly the layers of ``hom``."""
    if not isinstance(t, torch.Tensor):
        return False
    tag = tag_of(t)
    return t.numel() == 0 if tag is None else tag.hom == hom


def _normalising(module: nn.Module) -> bool:
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.training or not module.track_running_stats
    return True


def _bn_training(args: tuple, kwargs: dict) -> bool:
    training = kwargs.get("training", args[5] if len(args) > 5 else False)
    running = args[1] if len(args) > 1 else kwargs.get("running_mean")
    return bool(training) or running is None


__all__ = ["HOMOGENEOUS_ACTIVATIONS", "ScaleFlow"]
