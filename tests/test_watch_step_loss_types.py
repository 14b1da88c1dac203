"""``w.step(loss)`` takes any real scalar: a tensor, a Python or NumPy number, a 0-d NumPy array."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graddoctor.errors import InputError
from graddoctor.measure.monitor.watcher import _loss_tensor


@pytest.mark.parametrize("loss", [1.5, 3, np.float32(1.5), np.array(1.5), np.array([1.5]), torch.tensor(1.5)])
def test_real_scalars_are_losses(loss: object) -> None:
    assert float(_loss_tensor(loss)) == pytest.approx(float(np.asarray(loss).reshape(())))


@pytest.mark.parametrize("loss", [np.array([1.0, 2.0]), np.array("a"), "1.5", torch.ones(2)])
def test_other_values_are_one_line_errors(loss: object) -> None:
    with pytest.raises(InputError, match="w.step"):
        _loss_tensor(loss)
