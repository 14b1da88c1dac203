"""Outputs that are not plain tensors (HF ``ModelOutput``-like objects, containers): the first
tensor in them is the output, for the input helpers and for ModelMap's recorded shapes."""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd
from graddoctor import inputs


class Out:
    """HF ModelOutput-like: no tensor attribute, ``to_tuple()`` gives the fields."""

    def __init__(self, logits: torch.Tensor) -> None:
        self._fields = (None, logits)

    def to_tuple(self) -> tuple:
        return self._fields


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3, 5))

    def forward(self, x):
        return Out(x @ self.weight)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = Head()

    def forward(self, x):
        return self.head(x).to_tuple()[1]


def test_first_tensor_reads_model_output_objects_and_skips_non_tensors():
    """``first_tensor`` finds the tensor inside a ``to_tuple()`` output; containers without a
    tensor give None."""
    assert inputs.first_tensor(Out(torch.zeros(2, 5))).shape == (2, 5)
    assert inputs.first_tensor({"a": 1}) is None and inputs.first_tensor([1, "x"]) is None


def test_modelmap_records_the_shape_of_a_model_output_object():
    """A layer returning a ModelOutput-like object gets that object's tensor shape as its output
    shape in the map."""
    m = gd.ModelMap(Net(), torch.randn(2, 3))
    assert m.layer("head").input_shape == (2, 3) and m.layer("head").output_shape == (2, 5)
