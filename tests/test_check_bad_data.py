"""Bad data is the data's fault: a NaN in the target, or a loss that is NaN on a finite output, is a
one-line ``InputError`` naming it, not an exploding-gradient error in the model (a held-out trial
saw "exploding-gradient: ... what to do: he-init, clip-norm" for one NaN label)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.errors import InputError


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))


@pytest.mark.parametrize("loss_fn, message", [
    (None, r"^the target: 1 NaN/Inf value\(s\) in a tensor of shape \(16, 10\)"),
    (nn.MSELoss(), r"^the loss \(loss_fn\) is nan on a finite model output"),  # your loss_fn: its value is judged
])
def test_a_nan_in_the_target_is_the_data(loss_fn, message):
    y = torch.randn(16, 10)
    y[0, 0] = float("nan")
    with pytest.raises(InputError, match=message):
        gd.check(net(), torch.randn(16, 32), target=y, loss_fn=loss_fn)


def test_a_loss_fn_that_masks_missing_labels_may_take_nan_in_the_target():
    y = torch.randn(16, 10)
    y[:3] = float("nan")

    def masked_mse(out, t):
        keep = ~t.isnan()
        return ((out[keep] - t[keep]) ** 2).mean()

    report = gd.check(net(), torch.randn(16, 32), target=y, loss_fn=masked_mse)
    assert not [f for f in report.findings if f.severity == "error"]


def test_a_loss_that_is_nan_on_a_finite_output_is_the_loss():
    with pytest.raises(InputError, match=r"^the loss \(loss_fn\) is nan on a finite model output"):
        gd.check(net(), torch.randn(16, 32), target=torch.randint(0, 10, (16,)),
                 loss_fn=lambda out, t: out.sum() * float("nan"))


def test_an_unreduced_loss_names_its_shape_and_the_fix():
    with pytest.raises(InputError, match=r"shape \(16,\) - use reduction='mean'"):
        gd.check(net(), torch.randn(16, 32), target=torch.randint(0, 10, (16,)),
                 loss_fn=nn.CrossEntropyLoss(reduction="none"))


def test_a_model_whose_output_overflows_is_still_the_model():
    torch.manual_seed(0)
    big = nn.Sequential(*[m for _ in range(30) for m in (nn.Linear(32, 32), nn.ReLU())])
    for p in big.parameters():
        nn.init.normal_(p, std=3.0)
    report = gd.check(big, torch.randn(16, 32), target=torch.randn(16, 32))
    assert "exploding-gradient" in report.codes or "signal-explosion" in report.codes


def test_a_detached_loss_names_the_detach():
    with pytest.raises(InputError, match=r"^loss_fn returned a loss with no gradient"):
        gd.check(net(), torch.randn(16, 32), target=torch.randint(0, 10, (16,)),
                 loss_fn=lambda out, t: torch.nn.functional.cross_entropy(out, t).detach())


def test_batchnorm_on_one_sample_says_to_pass_two():
    model = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 10))
    with pytest.raises(gd.errors.ModelCallError, match=r"needs 2 or more samples"):
        gd.check(model, torch.randn(1, 32))


def test_an_encoder_decoder_without_labels_says_to_pass_them():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.T5Config(d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, vocab_size=64,
                                decoder_start_token_id=0)
    with pytest.raises(gd.errors.ModelCallError, match=r"pass labels=\.\.\. \(or decoder_input_ids"):
        gd.check(transformers.T5ForConditionalGeneration(cfg), {"input_ids": torch.randint(0, 64, (2, 8))})


def test_a_half_precision_output_that_overflows_the_loss_is_still_the_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    for p in model.parameters():
        nn.init.normal_(p, std=3.0)
    model = model.half()
    try:
        report = gd.check(model, torch.randn(16, 32).half(), target=torch.randn(16, 10).half())
    except InputError as e:
        pytest.fail(f"blamed the data: {e}")
    assert report.codes & {"exploding-gradient", "signal-explosion", "poor-init", "non-finite"}, report.findings
