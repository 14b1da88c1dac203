"""Lightning: a ``training_step`` that calls a submodule (``self.net(x)``) never runs the
LightningModule's forward, on which watch samples activations: no dead/saturated-unit statistics
were recorded, silently, and the plateau message said "gradients reach every trainable layer at a
healthy scale: suspect the data" on a net whose second ReLU was born dead. Now one warning line
says so (and how to fix it), and the plateau message says activations were not sampled.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pl = pytest.importorskip("lightning.pytorch")
from graddoctor.integrations.lightning import GradDoctorCallback  # noqa: E402

X = torch.randn(512, 32, generator=torch.Generator().manual_seed(0))
Y = (X[:, :4].sum(1) > 0).long()


class _Module(pl.LightningModule):
    def __init__(self, via_self: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
        self.via_self = via_self

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, i):
        x, y = batch
        return F.cross_entropy(self(x) if self.via_self else self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _fit(via_self: bool) -> list[str]:
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pl.Trainer(max_epochs=1, callbacks=[GradDoctorCallback()], logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, accelerator="cpu").fit(_Module(via_self), dl)
    return [str(w.message) for w in caught if "graddoctor (Lightning): training_step" in str(w.message)]


@pytest.mark.slow
def test_a_training_step_that_calls_a_submodule_gets_one_warning():
    (msg,) = _fit(via_self=False)
    assert "activation statistics" in msg and "call self(x)" in msg


@pytest.mark.slow
def test_a_training_step_that_calls_self_gets_none():
    assert _fit(via_self=True) == []
