"""Fixes from the code review: each test fails on the code before its fix."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.measure.stats import dense_values, nonfinite_counts, segment_index, tensor_sq_norms

pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks")

# ---------------------------------------------------------------- B1 sparse gradients


def test_sparse_values_norm_and_nonfinite_match_the_dense_tensor():
    i = torch.tensor([[0, 0, 3, 5]])
    t = torch.sparse_coo_tensor(i, torch.tensor([1.0, 2.0, -4.0, float("nan")]), (6,))
    dense = t.to_dense()
    assert dense_values(t).numel() == 3  # coalesced: the duplicate index summed
    assert torch.isnan(tensor_sq_norms([t, torch.ones(2)])[0]) and torch.isnan(dense.norm())
    finite = torch.sparse_coo_tensor(i[:, :3], torch.tensor([1.0, 2.0, -4.0]), (6,))
    assert tensor_sq_norms([finite]).item() == pytest.approx(finite.to_dense().square().sum().item())
    assert nonfinite_counts([t], segment_index([1]), 1).tolist() == [1.0]


def test_watch_records_sparse_embedding_gradients_exactly():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Embedding(10, 4, sparse=True), nn.Linear(4, 1))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    expected = []
    with gd.watch(m, opt, weight_every=1, update_every=1) as w:
        for _ in range(3):
            loss = m(torch.tensor([1, 2, 2, 7])).sum()
            loss.backward()
            expected.append(m[0].weight.grad.to_dense().norm().item())
            opt.step()
            opt.zero_grad()
            w.step(loss)
    steps = w.records()[1]
    assert w.failed is None
    assert [s["grad_norm"]["0"] for s in steps] == pytest.approx(expected, rel=1e-5)
    assert all(s["nonfinite"]["0"] == 0 for s in steps)


def test_internal_error_in_a_hook_warns_once_and_never_breaks_opt_step(monkeypatch):
    m = nn.Linear(3, 1)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with gd.watch(m, opt) as w:
        def train_step():
            loss = m(torch.ones(2, 3)).sum()
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.step(loss)

        train_step()
        monkeypatch.setattr(w, "_record", lambda *a, **k: 1 / 0)
        before = m.weight.detach().clone()
        with pytest.warns(UserWarning, match="graddoctor.measure.monitor.watcher: internal error.*ZeroDivisionError"):
            train_step()
        assert not torch.equal(before, m.weight)  # the optimizer stepped anyway
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            train_step()  # no second warning, no error
    assert w.failed is not None and not w.attached
    steps = w.records()[1]
    assert [s["step"] for s in steps] == [1]  # the step before the failure is kept


# ---------------------------------------------------------------- B3 / w.step(loss) input


def test_wrong_optimizer_warns_once_and_pending_losses_stay_bounded():
    from graddoctor.measure.monitor.watcher import IDLE_WSTEPS

    m = nn.Linear(2, 1)
    stepped = torch.optim.SGD(m.parameters(), lr=0.1)
    given = torch.optim.SGD(m.parameters(), lr=0.1)  # never stepped
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gd.watch(m, given) as w:
            for i in range(IDLE_WSTEPS + 20):
                loss = m(torch.ones(1, 2)).sum()
                loss.backward()
                stepped.step()
                stepped.zero_grad()
                w.step(torch.tensor(float(i)))
            total, n = w._pending_loss
            assert n == IDLE_WSTEPS + 20 and total.dim() == 0  # O(1): a running sum
    msgs = [str(c.message) for c in caught if "without a step of the SGD" in str(c.message)]
    assert len(msgs) == 1


def test_losses_between_steps_are_still_averaged():
    m = nn.Linear(2, 1)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with gd.watch(m, opt) as w:
        w.step(1.0)
        w.step(torch.tensor([3.0]))
        m(torch.ones(1, 2)).sum().backward()
        opt.step()
    assert w.records()[1][0]["loss"] == pytest.approx(2.0)


@pytest.mark.parametrize("bad, match", [
    (torch.ones(4), r"real scalar.*shape \[4\]"),
    (torch.ones(1, dtype=torch.complex64), "real scalar"),
    ("0.5", "got str"),
    ([1.0], "got list"),
])
def test_w_step_rejects_non_scalar_losses_in_one_line(bad, match):
    m = nn.Linear(2, 1)
    with gd.watch(m) as w, pytest.raises(gd.GraddoctorError, match=match) as e:
        w.step(bad)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- B2 wrapped models in check/probe


@pytest.mark.parametrize("wrap", [torch.compile, nn.DataParallel], ids=["compile", "DataParallel"])
def test_check_and_probe_see_through_compile_and_data_parallel(wrap):
    from graddoctor.measure.probe import probe

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 2))
    x = torch.randn(4, 8)
    plain = gd.check(net, x)
    wrapped = gd.check(wrap(net), x)
    assert wrapped.codes == plain.codes == {"saturating-hidden-activation"}
    assert [f.layers for f in wrapped.findings] == [["1"]]
    assert wrapped.data["probe"]["layers"] == plain.data["probe"]["layers"] == ["0", "2"]
    assert probe(wrap(net), x).grad_rms == pytest.approx(plain.data["probe"]["grad_rms"])


# ---------------------------------------------------------------- B6 ModelMap tags


class _KeepsState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("ema", torch.zeros(4))
        self.register_buffer("ema2", torch.zeros(4))
        self.last: torch.Tensor | None = None

    def forward(self, x):
        y = self.lin(x)
        self.ema.mul_(0.9).add_(y.mean(0))  # in place: the op returns the buffer itself
        self.ema2 = self.ema2 * 0.9 + y.mean(0)  # reassigned
        self.lin.weight.data.mul_(1.0)
        self.last = y.relu()  # kept by the model
        return y + self.ema


def test_modelmap_leaves_no_tag_on_parameters_buffers_or_kept_tensors():
    from graddoctor.modelmap import ModelMap

    m = _KeepsState()
    ModelMap(m, torch.randn(3, 4))
    tensors = dict(m.named_parameters()) | dict(m.named_buffers()) | {"last": m.last}
    assert [n for n, t in tensors.items() if hasattr(t, "_graddoctor_tag")] == []


# ---------------------------------------------------------------- B4 / B5 probe losses


def test_probe_cross_entropy_on_sequence_logits_flattens_time():
    from graddoctor.measure.probe import probe

    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(11, 8), nn.Linear(8, 11))
    tokens, target = torch.randint(0, 11, (2, 6)), torch.randint(0, 11, (2, 6))
    p = probe(net, tokens, target=target, jacobian_k=0)
    expected = nn.functional.cross_entropy(net(tokens).reshape(-1, 11), target.reshape(-1))
    assert p.loss_source == "cross_entropy"
    assert p.loss == pytest.approx(expected.item(), rel=1e-6)
    # PyTorch's own layout [N, C, T] with [N, T] still goes straight to cross_entropy
    class_first = nn.Sequential(nn.Conv1d(3, 5, 1))
    x, t = torch.randn(2, 3, 7), torch.randint(0, 5, (2, 7))
    p = probe(class_first, x, target=t, jacobian_k=0)
    assert p.loss == pytest.approx(nn.functional.cross_entropy(class_first(x), t).item(), rel=1e-6)


def test_probe_accepts_array_like_targets():
    from graddoctor.measure.probe import probe

    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    p = probe(net, x, target=[0, 2], jacobian_k=0)
    assert p.loss == pytest.approx(nn.functional.cross_entropy(net(x), torch.tensor([0, 2])).item(),
                                   rel=1e-6)
    p = probe(net, x, target=torch.zeros(6, dtype=torch.float64), jacobian_k=0)  # [6] vs [2, 3]
    assert p.loss_source == "mse" and p.loss == pytest.approx(net(x).pow(2).mean().item(), rel=1e-6)


@pytest.mark.parametrize("target, loss_fn, match", [
    (object(), None, "target must be a tensor.*got object"),
    (torch.tensor([0, 1, 2, 0]), None, r"cross-entropy loss failed on output \(3, 5\).*target \(4,\)"),
    (torch.zeros(3, 4), None, r"MSE loss failed on output \(3, 5\).*target \(3, 4\)"),
    (torch.zeros(3), lambda y, t: y @ t, r"loss_fn loss failed on output \(3, 5\).*target \(3,\)"),
])
def test_probe_loss_failures_are_one_line_input_errors(target, loss_fn, match):
    with pytest.raises(gd.GraddoctorError, match=match) as e:
        gd.check(nn.Linear(2, 5), torch.randn(3, 2), target=target, loss_fn=loss_fn)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- B8 activation names


def test_shrink_modules_are_not_taken_for_tanh():
    from graddoctor.modelmap import ModelMap, activation_kind

    class TanhShrinkish(nn.Module):  # third-party name with a "tanh" fragment
        def forward(self, x):
            return x - torch.tanh(x)

    for m in (nn.Tanhshrink(), nn.Softshrink(), nn.Hardshrink(), TanhShrinkish()):
        assert activation_kind(m) is None, type(m).__name__
    assert activation_kind(nn.Tanh()) == "tanh"
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanhshrink(), nn.Linear(4, 2))
    assert ModelMap(net, torch.randn(2, 4)).activations == []


# ---------------------------------------------------------------- B7 several devices


def test_watch_refuses_parameters_on_several_devices_in_one_line():
    from graddoctor.measure.monitor.watcher import check_one_device

    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2, device="meta"))
    with pytest.raises(gd.GraddoctorError, match=r"one device, found cpu, meta") as e:
        gd.watch(net)
    assert "\n" not in str(e.value)
    check_one_device(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)))  # one device: fine
    assert not net[0]._forward_pre_hooks and not net._forward_pre_hooks  # nothing attached


# ---------------------------------------------------------------- P1-P4 the per-step path


def test_device_path_flags_nonfinite_tensors_from_the_fused_norms(monkeypatch):
    import importlib

    watch_mod = importlib.import_module("graddoctor.measure.monitor.watcher")  # (the attribute is the function)
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    w = gd.watch(net, opt, example_inputs=torch.ones(1, 2))
    assert w._meta["config"]["nonfinite_unit"] == "values"  # CPU: exact value counts
    w._host_check = False  # what a GPU run does: no host read, no per-tensor counting pass
    monkeypatch.setattr(watch_mod, "nonfinite_counts", lambda *a: pytest.fail("counted per tensor"))
    with w:
        net(torch.ones(1, 2)).sum().backward()
        net[0].weight.grad[0, 0] = float("nan")
        net[0].bias.grad[:] = float("inf")
        opt.step()
        opt.zero_grad()
        net[0].reset_parameters()  # lr 0 * NaN made the weights NaN
        net(torch.ones(1, 2)).sum().backward()
        opt.step()
    steps = w.records()[1]
    assert steps[0]["nonfinite"] == {"0": 2, "1": 0} and steps[1]["nonfinite"] == {"0": 0, "1": 0}


def test_norm_accumulation_dtype_is_decided_once_at_setup():
    big = nn.Linear(2, 1).double()
    with torch.no_grad():
        big.weight.fill_(1e100)
    with gd.watch(big, weight_every=1) as w:
        big(torch.ones(1, 2, dtype=torch.float64)).sum().backward()
        w.step()
    assert w._acc == torch.float64
    assert w.records()[1][0]["weight_norm"][""] == pytest.approx(1e100 * 2 ** 0.5)
    with gd.watch(nn.Linear(2, 1)) as w32:
        w32.step()
    assert w32._acc == torch.float32


def test_output_gradient_norms_do_not_overflow_float32():
    net = nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with gd.watch(net, opt, activation_every=1, output_grads=True) as w:
        (net(torch.ones(3, 2)).sum() * 1e20).backward()  # dL/d(output of "1") = 1e20 each
        opt.step()
    og = w.records()[1][0]["out_grad_norm"]
    assert og["1"] == pytest.approx(1e20 * 3 ** 0.5, rel=1e-6)


def test_sampled_steps_build_no_index_tensor_from_python_lists(monkeypatch):
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.randn(5, 3)
    calls = []
    real = torch.tensor
    with gd.watch(net, opt, example_inputs=x, activation_every=1) as w:
        for i in range(3):
            if i == 2:  # after warm-up: every index is cached
                monkeypatch.setattr(torch, "tensor", lambda *a, **k: calls.append(a) or real(*a, **k))
            net(x).pow(2).mean().backward()
            monkeypatch.setattr(torch, "tensor", real)
            opt.step()
            opt.zero_grad()
    assert calls == []
    assert "1" in w.records()[1][2]["act"]  # the tanh site was sampled on that step


# ---------------------------------------------------------------- one helper each


def test_one_nonfinite_decoder_for_plots_and_rules():
    from graddoctor import runlog
    from graddoctor.diagnose.training import series as _series
    from graddoctor.present import plots as plots

    assert plots._num is runlog.as_float and _series.as_float is runlog.as_float
    assert plots._is_nonfinite is runlog.is_nonfinite
    assert math.isnan(runlog.as_float(None)) and math.isnan(runlog.as_float("x"))
    assert runlog.as_float(3) == 3.0 and runlog.as_float("-inf") == -math.inf
    assert [runlog.is_nonfinite(v) for v in ("NaN", "-inf", float("inf"), 0.0, None, "tanh")] == \
        [True, True, True, False, False, False]


def test_one_profile_kinds_and_the_probe_difference_is_explicit():
    from graddoctor import modelmap
    from graddoctor.diagnose.training import series as _series
    from graddoctor.measure import probe as probe

    assert _series.PROFILE_KINDS is modelmap.PROFILE_KINDS
    assert probe.PROBE_KINDS is modelmap.PROBE_KINDS
    assert set(modelmap.PROBE_KINDS) - set(modelmap.PROFILE_KINDS) == {"other"}


def test_first_tensor_and_module_names_helpers():
    from graddoctor import inputs
    from graddoctor.measure.probe import probe
    from graddoctor.modelmap import ModelMap, _shape, module_names, modules_by_name

    class Out:  # HF ModelOutput-like
        def to_tuple(self):
            return (None, torch.zeros(2, 5))

    assert inputs.first_tensor(Out()).shape == (2, 5) and _shape(Out()) == (2, 5)
    assert inputs.first_tensor({"a": 1}) is None and _shape([1, "x"]) is None
    assert not hasattr(inputs, "to_device")  # unused: removed
    lin = nn.Linear(3, 3)
    net = nn.Sequential(lin, nn.Tanh(), lin, nn.Linear(3, 1))
    names = module_names(net)
    assert list(names.values()) == ["", "0", "1", "3"] and names[lin] == "0"
    assert modules_by_name(net)["0"] is lin and "2" not in modules_by_name(net)
    m = ModelMap(net, torch.randn(2, 3))
    assert [x.name for x in m.layers] == ["0", "3"]
    assert probe(net, torch.randn(2, 3), mmap=m, jacobian_k=0).layers == ["0", "3"]


def test_cli_help_shows_a_command_whose_import_fails(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from graddoctor import cli

    (tmp_path / "gd_broken_cmd.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli._COMMANDS, "boom", "gd_broken_cmd:cmd")
    monkeypatch.setitem(cli._COMMANDS, "later", "gd_not_built_yet_cmd:cmd")
    runner = CliRunner()
    res = runner.invoke(cli.main, ["--help"])
    assert res.exit_code == 0, res.output
    assert "boom" in res.output and "BROKEN: RuntimeError: boom at import" in res.output
    assert "later" not in res.output  # a module not built yet stays out of the list
    res = runner.invoke(cli.main, ["boom", "x", "--flag"])
    assert res.exit_code == 2
    assert "graddoctor: error: the 'boom' command cannot be loaded (RuntimeError: boom at import)" \
        in res.output
