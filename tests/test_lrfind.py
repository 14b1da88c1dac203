"""gd.lr_find: exact restore, the lr-insensitive rule, batch shapes, bad inputs, suggestions, CLI."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import graddoctor as gd
from graddoctor.errors import InputError
from graddoctor.lrfind.judge import loss_drop
from graddoctor.lrfind.suggest import (
    DEFAULT_METHOD,
    lr_schedule,
    minimum,
    minimum_lr,
    steepest,
    suggest,
    valley,
    zero_lag,
)


def _blobs(n: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()


def _batches(n: int = 128, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    x, y = _blobs(n)
    return [(x[i:i + size], y[i:i + size]) for i in range(0, n, size)]


def _state(model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    return {
        "tensors": {k: v.clone() for k, v in model.state_dict().items()},
        "grads": {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()},
        "modes": [m.training for m in model.modules()],
        "opt_state": {k: {n: v.clone() if torch.is_tensor(v) else v for n, v in s.items()}
                      for k, s in opt.state_dict()["state"].items()},
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state()[1].copy(),
    }


def _same(a: object, b: object) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


@pytest.mark.parametrize("make_opt", [
    lambda groups: torch.optim.SGD(groups, lr=0.05, momentum=0.9, nesterov=True),
    lambda groups: torch.optim.AdamW(groups, lr=1e-3, weight_decay=0.01),
])
def test_restores_everything_bit_for_bit(make_opt) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.1),
                          nn.Linear(16, 3))
    opt = make_opt([{"params": model[0].parameters(), "lr": 0.01},
                    {"params": list(model[1].parameters()) + list(model[4].parameters())}])
    for x, y in _batches()[:3]:  # momentum buffers / Adam moments and BN statistics exist
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    model[3].train()  # a mixed mode must come back as it was
    random.seed(1)
    np.random.seed(2)
    before = _state(model, opt)
    result = gd.lr_find(model, opt, _batches(), start_lr=1e-5, end_lr=10, num_steps=30)
    assert len(result.lrs) > 5
    after = _state(model, opt)
    for key in before:
        assert _same(before[key], after[key]), key
    assert torch.equal(torch.rand(3), (torch.set_rng_state(before["torch_rng"]), torch.rand(3))[1])


def test_writes_nothing_to_disk(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    gd.lr_find(model, torch.optim.SGD(model.parameters(), lr=0.1), _batches(), num_steps=20)
    assert list(tmp_path.iterdir()) == []


def _sigmoid_mlp_and_data() -> tuple[nn.Module, gd.data.Bundle]:
    return gd.zoo.mlp(depth=20, width=64, activation="sigmoid"), gd.data.load("digits")


@pytest.mark.slow
def test_sigmoid_mlp_is_lr_insensitive_then_repaired_is_not() -> None:
    model, b = _sigmoid_mlp_and_data()
    train = b.loaders(64, seed=0)[0]
    result = gd.lr_find(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), train)
    [f] = result.findings
    assert f.code == "lr-insensitive" and f.severity == "error"
    assert f.evidence["input_side_vanishing"] is True and f.evidence["drop_orders"] > 3
    assert "input side's gradients vanish" in f.message and "relu" in f.remedies
    assert result.suggestion is None and "no learning rate to suggest" in str(result)

    x, y = b.x_train[:256], b.y_train[:256]
    fixed = gd.repair(model, gd.check(model, x, target=y), example_inputs=x).model
    result = gd.lr_find(fixed, torch.optim.SGD(fixed.parameters(), lr=0.1, momentum=0.9), train)
    assert result.findings == []
    assert result.suggestion is not None and 1e-5 < result.suggestion < 1
    assert loss_drop(result.losses, result.smoothed_losses) > 0.1  # a normal curve: it falls
    assert "suggested learning rate" in str(result)


def test_flat_loss_with_healthy_gradients_blames_the_data() -> None:
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32),
                          nn.ReLU(), nn.Linear(32, 3))
    g = torch.Generator().manual_seed(3)
    noise = [(torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)) for _ in range(8)]
    result = gd.lr_find(model, torch.optim.SGD(model.parameters(), lr=0.1), noise, start_lr=1e-7,
                        end_lr=1e-3, num_steps=40)
    [f] = result.findings
    assert f.severity == "warning" and f.evidence["input_side_vanishing"] is False
    assert "data, labels or loss are suspect" in f.message


def test_hf_style_dict_batches_use_the_models_own_loss() -> None:
    class HFLike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

        def forward(self, input_values: torch.Tensor, labels: torch.Tensor) -> SimpleNamespace:
            logits = self.body(input_values)
            return SimpleNamespace(logits=logits, loss=nn.functional.cross_entropy(logits, labels))

    model = HFLike()
    batches = [{"input_values": x, "labels": y} for x, y in _batches()]
    result = gd.lr_find(model, torch.optim.Adam(model.parameters()), batches, num_steps=20)
    assert len(result.lrs) >= 5 and all(math.isfinite(v) for v in result.losses[:5])


def test_cycles_a_short_loader_and_float_targets_use_mse() -> None:
    x = torch.randn(32, 4)
    batches = [(x[:16], x[:16].sum(1, keepdim=True)), (x[16:], x[16:].sum(1, keepdim=True))]
    model = nn.Linear(4, 1)
    result = gd.lr_find(model, torch.optim.SGD(model.parameters(), lr=0.1), batches, start_lr=1e-6,
                        end_lr=1e-3, num_steps=25, watch=False)
    assert len(result.lrs) == 25 and not result.diverged and result.gradients is None
    expected = nn.functional.mse_loss(model(x[:16]), batches[0][1]).item()
    assert result.losses[0] == pytest.approx(expected, rel=1e-5)


def test_stops_early_when_the_loss_diverges() -> None:
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    result = gd.lr_find(model, torch.optim.SGD(model.parameters(), lr=0.1), _batches(), start_lr=1e-3,
                        end_lr=1e6, num_steps=100)
    assert result.diverged and len(result.lrs) < 100
    assert "diverged" in str(result)


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"model": "net"}, "nn.Module"),
    ({"optimizer": "sgd"}, "torch.optim.Optimizer"),
    ({"train_loader": 3}, "iterable"),
    ({"train_loader": []}, "no batches"),
    ({"train_loader": [torch.ones(2, 6)]}, "a batch must be"),
    ({"train_loader": [{"input": torch.ones(2, 6)}]}, ".loss"),
    ({"train_loader": [(torch.ones(2, 5), torch.ones(2).long())]}, "forward failed"),
    ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr < end_lr"),
    ({"num_steps": 3}, "num_steps"),
    ({"mode": "cosine"}, "mode="),
    ({"smooth": 0.0}, "smooth="),
    ({"diverge": 1.0}, "diverge="),
    ({"loss_fn": lambda out, y: out}, "scalar"),
])
def test_bad_inputs_are_one_line_input_errors(kwargs: dict, needle: str) -> None:
    model = nn.Sequential(nn.Linear(6, 4))
    args = {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
            "train_loader": _batches(), "num_steps": 20, **kwargs}
    with pytest.raises(InputError) as e:
        gd.lr_find(**args)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_optimizer_of_another_model_is_an_input_error() -> None:
    model, other = nn.Linear(6, 3), nn.Linear(6, 3)
    with pytest.raises(InputError, match="none of the model's parameters"):
        gd.lr_find(model, torch.optim.SGD(other.parameters(), lr=0.1), _batches())


def test_suggestions_on_a_clean_curve() -> None:
    lrs = lr_schedule(1e-6, 10.0, 100, "exp")
    # falls between 1e-3 and 1e-1 (steepest at 1e-2), then blows up past 1
    losses = [2.0 - math.tanh(2 * (math.log10(v) + 2)) + max(0.0, math.log10(v)) ** 2 * 5 for v in lrs]
    picks = suggest(lrs, losses)
    assert 10 ** -2.3 < picks["steepest"] < 10 ** -1.7
    assert 1e-4 < picks["valley"] < 1e-1
    lowest = lrs[losses.index(min(losses))]  # the fall ends where the blow-up starts, near 1
    assert 0.3 < lowest <= 1.0 and picks["minimum"] == pytest.approx(minimum_lr(lrs, losses) / 10)
    assert lowest / 10 / 1.2 ** 3 <= picks["minimum"] <= lowest / 10  # within the fit, on the safe side
    assert steepest(lrs[:3], losses[:3]) is None and valley([1.0]) is None and minimum([1.0, 0.5]) is None
    assert minimum_lr(lrs[:2], losses[:2]) is None


def test_the_minimum_is_read_between_sweep_points() -> None:
    lrs = lr_schedule(1e-7, 10.0, 100, "exp")  # 0.081 decades apart
    step = math.log10(lrs[1] / lrs[0])
    grid_err, fit_err = [], []
    for k in range(11):  # the true minimum moves across one step of the sweep
        centre = -0.5 + k * step / 10
        losses = [(math.log10(v) - centre) ** 2 + 0.3 * max(0.0, math.log10(v) - centre) ** 3 for v in lrs]
        grid_err.append(abs(math.log10(lrs[minimum(losses)]) - centre) / step)
        fit_err.append(abs(math.log10(minimum_lr(lrs, losses)) - centre) / step)
    assert max(grid_err) > 0.4 and max(fit_err) < 0.1  # the grid is off by up to half a step


def test_minimum_lr_keeps_to_the_points_it_fits() -> None:
    lrs = lr_schedule(1e-4, 1.0, 40, "exp")
    falling = [2.0 - 0.01 * i for i in range(40)]  # no minimum inside: the last point, not beyond
    assert minimum_lr(lrs, falling) == pytest.approx(lrs[-1])
    peaked = [5.0] * 40
    peaked[20] = 1.0  # the window around it opens downwards nowhere, but a lone dip is still a minimum
    assert lrs[17] <= minimum_lr(lrs, peaked) <= lrs[23]
    ridge = [1.0 - (i - 20) ** 2 * 1e-3 for i in range(40)]
    ridge[20] = 0.0  # the points around the lowest one bend down: the lowest point itself
    assert minimum_lr(lrs, ridge) == pytest.approx(lrs[20])


def test_the_default_pick_varies_less_than_a_sweep_step_over_seeds_on_the_digits_mlp() -> None:
    # the benchmark's digits row (benchmarks/lr_find.py): lowest smoothed loss one or two sweep
    # steps apart over seeds (x1.2 each); read between the points, the picks stay within one step
    digits = gd.data.load("digits")
    picks, lowest = [], []
    for seed in range(3):
        model = gd.zoo.mlp(depth=4, width=64, seed=seed)
        result = gd.lr_find(model, torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9),
                            digits.loaders(64, seed=seed)[0], start_lr=1e-7, end_lr=10.0, watch=False)
        curve = result.smoothed_losses
        picks.append(result.suggestion)
        lowest.append(result.lrs[curve.index(min(curve))] / 10)
    one_step = 10 ** (8 / 99)
    assert max(lowest) / min(lowest) > one_step * 1.1  # the grid minimum moves by two steps here
    assert max(picks) / min(picks) < one_step


def test_the_default_pick_is_a_decade_below_the_smoothed_minimum_on_a_real_sweep() -> None:
    model = gd.zoo.mlp(depth=3, width=32, seed=0)
    train = gd.data.load("digits").loaders(64, seed=0)[0]
    result = gd.lr_find(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), train,
                        start_lr=1e-5, num_steps=60, watch=False)
    curve = result.smoothed_losses
    lowest = result.lrs[curve.index(min(curve))]
    assert result.method == DEFAULT_METHOD == "minimum" and not result.findings
    assert result.suggestion == pytest.approx(minimum_lr(result.lrs[:len(curve)], curve) / 10)
    low = curve.index(min(curve))
    assert result.lrs[max(0, low - 3)] / 10 <= result.suggestion <= result.lrs[min(len(curve) - 1, low + 3)] / 10
    assert result.suggestion < lowest  # a decade below, give or take the fit
    assert result.suggestion < result.suggestions["steepest"]  # steepest sits at the blow-up here


def test_zero_lag_smoothing_does_not_shift_a_step() -> None:
    step = [2.0] * 50 + [1.0] * 50
    curve = zero_lag(step, 0.1)
    assert curve[49] > 1.5 > curve[50]  # the step is still between 49 and 50
    assert abs((2.0 - curve[40]) - (curve[59] - 1.0)) < 0.02  # blurred evenly on both sides


def test_result_plot_and_str(tmp_path) -> None:
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    result = gd.lr_find(model, torch.optim.SGD(model.parameters(), lr=0.1), _batches(), num_steps=40)
    fig = result.plot()
    assert fig.axes[0].get_xscale() == "log" and not list(tmp_path.iterdir())
    result.plot(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert result.report.source == "lr-find"


def test_cli_lr_find_prints_the_curve_and_writes_a_png(tmp_path) -> None:
    from graddoctor.cli import main

    factory = tmp_path / "models.py"
    factory.write_text("import graddoctor as gd\n\ndef small():\n    return gd.zoo.mlp(depth=3, width=32)\n")
    out = tmp_path / "lr.png"
    res = CliRunner().invoke(main, ["lr-find", f"{factory}:small", "--dataset", "digits",
                                    "--start-lr", "1e-4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "suggested learning rate" in res.output and "lr 1e-04" in res.output
    assert out.read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(main, ["lr-find", f"{factory}:small", "--dataset", "cifar99"])
    assert bad.exit_code == 2


def test_cli_names_a_missing_factory_in_one_line(tmp_path) -> None:
    from graddoctor.cli import main

    res = CliRunner().invoke(main, ["lr-find", f"{tmp_path}/nope.py:f", "--out", str(tmp_path / "lr.png")])
    assert res.exit_code == 2 and "no such file" in res.output


@pytest.mark.parametrize("args, needle", [
    (["--start-lr", "-1"], "0 < --start-lr < --end-lr"),
    (["--steps", "0"], "--steps 0"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--out", "curve.txt"], "written as .png"),
    (["--out", "figures"], "written as .png"),  # a name without a suffix: matplotlib would add .png
])
def test_cli_bad_options_are_one_line_errors_before_any_work(tmp_path, args, needle) -> None:
    from graddoctor.cli import main

    factory = tmp_path / "models.py"
    factory.write_text("import graddoctor as gd\n\ndef small():\n    return gd.zoo.mlp(depth=3, width=32)\n")
    res = CliRunner().invoke(main, ["lr-find", f"{factory}:small", "--out", str(tmp_path / "lr.png"), *args])
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output, res.output


def test_cli_a_model_without_parameters_and_a_new_folder_for_the_figure(tmp_path) -> None:
    from graddoctor.cli import main

    factory = tmp_path / "models.py"
    factory.write_text("from torch import nn\nimport graddoctor as gd\n\ndef relu():\n    return nn.ReLU()\n\n"
                       "def small():\n    return gd.zoo.mlp(depth=3, width=32)\n")
    res = CliRunner().invoke(main, ["lr-find", f"{factory}:relu", "--out", str(tmp_path / "lr.png")])
    assert res.exit_code == 2 and "no trainable parameters" in res.output, res.output
    out = tmp_path / "new" / "sub" / "lr.png"
    res = CliRunner().invoke(main, ["lr-find", f"{factory}:small", "--steps", "20", "--out", str(out)])
    assert res.exit_code == 0 and out.read_bytes()[:4] == b"\x89PNG", res.output


def test_a_blow_up_at_the_end_does_not_lift_the_smoothed_descent_before_it() -> None:
    from graddoctor.lrfind.sweep import no_lag_curve

    # flat, a real fall just before the blow-up, then diverging losses (a digits MLP under SGD)
    losses = [2.3] * 80 + [2.2, 2.0, 1.8, 1.6, 1.5] + [3.0, 8.0, 30.0, 1e3, 1e5]
    curve = no_lag_curve(losses, 0.05, 5.0)
    assert curve[84] < 2.2 < 2.5 < curve[-1]  # the fall is in the curve; the end still rises
    assert max(curve[:80]) < 2.31  # the blow-up is not carried back over the flat part (was 2.41)


def test_no_pick_below_the_first_rate_swept() -> None:
    # a loss lowest at the start of the sweep: "a decade below the minimum" was never tried
    # (the 20-layer sigmoid MLP under Adam was told 1e-8 on a sweep from 1e-7)
    from graddoctor.lrfind.suggest import lr_schedule, suggest

    lrs = lr_schedule(1e-7, 10.0, 100, "exp")
    picks = suggest(lrs, [2.3 + 0.01 * i for i in range(100)])
    assert picks["minimum"] is None
    assert all(v is None or v >= lrs[0] for v in picks.values())
