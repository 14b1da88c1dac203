"""Issue 17's reproductions, one test each: what a new user hit (crashes, replaced exceptions,
mutated inputs, mixed dtypes, mixed runs), now each a clear result or a one-line error."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings

import pytest
import torch
import torch.nn.functional as F
import torch.utils.checkpoint as ckpt
from click.testing import CliRunner
from torch import nn

import graddoctor as gd
from graddoctor.cli import main
from graddoctor.errors import InputError, ModelCallError
from graddoctor.runlog import read_run


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for m in model.modules())


def test_watch_a_float64_model_with_default_settings():
    """The activation sampler runs at step 1 on a float64 model: no error, no warning, and its
    statistics are recorded (computed in float32)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with gd.watch(net, opt) as w:
            for _ in range(3):
                loss = net(torch.randn(16, 4, dtype=torch.float64)).pow(2).mean()
                loss.backward()
                opt.step()
                opt.zero_grad()
                w.step(loss)
    assert w.failed is None
    steps = w.records()[1]
    assert [s["step"] for s in steps] == [1, 2, 3]
    std = steps[0]["act"]["1"]["std"]
    assert math.isfinite(std) and std > 0
    assert _hooks(net) == 0


class _FunctionalNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 1)
        self.fail = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.a(x))
        if self.fail:
            raise ValueError("bad batch")
        return self.b(torch.tanh(h))


@pytest.mark.parametrize("root_is_owner", [True, False])
def test_a_users_valueerror_in_forward_stays_a_valueerror_on_sampled_steps(root_is_owner):
    """Functional activations, every step sampled: the user's ValueError reaches the user
    unchanged (was "OrderedDict mutated during iteration"); training goes on afterwards and the
    next steps are recorded; no hook is left after the ``with``."""
    inner = _FunctionalNet()
    net = inner if root_is_owner else nn.Sequential(inner)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with gd.watch(net, opt, activation_every=1, example_inputs=torch.randn(2, 4)) as w:
        for i in range(4):
            inner.fail = i == 1
            try:
                loss = net(torch.randn(8, 4)).pow(2).mean()
            except ValueError as e:
                assert str(e) == "bad batch"
                continue
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.step(loss)
    assert w.failed is None
    steps = w.records()[1]
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert all("act" in s for s in steps)  # sampled after the exception too
    assert _hooks(net) == 0


def test_check_never_mutates_the_inputs():
    """Every tensor input, of any dtype and nested, is copied for each forward."""
    class Mutating(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 4)

        def forward(self, x, y, extra):
            y.mul_(2)
            extra["ids"].add_(1)
            extra["pair"][0].zero_()
            return self.lin(x) * y.float().mean()

    x = torch.randn(2, 4)
    for dtype in (torch.float32, torch.long, torch.float64):
        y = torch.ones(2, 4, dtype=dtype)
        extra = {"ids": torch.arange(3), "pair": [torch.ones(2), torch.ones(1, dtype=torch.int32)]}
        before = [t.clone() for t in (x, y, extra["ids"], *extra["pair"])]
        gd.check(Mutating(), (x, y, extra))
        after = [x, y, extra["ids"], *extra["pair"]]
        assert all(torch.equal(a, b) for a, b in zip(before, after)), dtype


@pytest.mark.parametrize("remedy", ["batchnorm", "layernorm", "groupnorm", "residual", "rezero", None])
def test_repair_keeps_a_float64_model_float64(remedy):
    """Inserted norms, projections and the ReZero gain take the dtype of their neighbours;
    the repaired model runs (was "mixed dtype"); None: the planner's own choice."""
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(8, 8), nn.Sigmoid())], nn.Linear(8, 1)).double()
    x = torch.randn(16, 8, dtype=torch.float64)
    report = gd.check(net, x)
    result = gd.repair(net, report, example_inputs=x, remedies=None if remedy is None else [remedy])
    applied = [c.remedy for c in result.changes if c.kind == "applied"]
    assert applied and (remedy is None or applied == [remedy])
    assert {p.dtype for p in result.model.parameters()} == {torch.float64}
    assert result.model(x).dtype == torch.float64


def test_two_watchers_on_one_log_dir_keep_their_own_steps(tmp_path):
    """A GAN's generator and discriminator watched into one log_dir: each run's steps carry
    its run id, so each watcher (and read_run) gets its own steps only."""
    gen, disc = nn.Linear(2, 3), nn.Linear(3, 1)
    og, od = torch.optim.SGD(gen.parameters(), lr=0.1), torch.optim.SGD(disc.parameters(), lr=0.1)
    with gd.watch(gen, og, log_dir=tmp_path, flush_every=2) as wg, \
            gd.watch(disc, od, log_dir=tmp_path, flush_every=3) as wd:
        for i in range(5):
            disc(gen(torch.ones(4, 2)).detach()).sum().backward()
            od.step()
            od.zero_grad()
            if i % 2 == 0:
                disc(gen(torch.ones(4, 2))).sum().backward()
                og.step()
                og.zero_grad()
    mg, sg = wg.records()
    md, sd = wd.records()
    assert [s["step"] for s in sg] == [1, 2, 3] and [s["step"] for s in sd] == [1, 2, 3, 4, 5]
    assert set(sg[0]["grad_norm"]) == {""} and {s["run_id"] for s in sg} == {mg["run_id"]}
    assert [s["step"] for s in read_run(tmp_path, run=md["run_id"])[1]] == [1, 2, 3, 4, 5]
    lines = [json.loads(x) for x in (tmp_path / "watch.jsonl").read_text().splitlines()]
    assert all(isinstance(x.get("run_id"), str) for x in lines)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_disk_full_warns_and_never_raises_from_the_with(tmp_path):
    """Every write fails with ENOSPC (watch.jsonl is /dev/full): one warning, training goes on,
    nothing escapes the ``with`` (was OSError from detach()), and the records stay in memory (the
    JSONL sink is dropped)."""
    os.symlink("/dev/full", tmp_path / "watch.jsonl")
    net = nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.warns(UserWarning, match="JsonlSink sink failed") as record:
        with gd.watch(net, opt, log_dir=tmp_path, flush_every=2) as w:
            for _ in range(5):
                before = net.weight.detach().clone()
                net(torch.ones(2, 3)).sum().backward()
                opt.step()
                opt.zero_grad()
                assert not torch.equal(before, net.weight)
    assert len([r for r in record if "graddoctor" in str(r.message)]) == 1
    assert w.failed is None and not w.attached and _hooks(net) == 0
    assert len(w.records()[1]) >= 4  # kept in memory from the failure on


class _Twice(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("my backward is broken")


@dataclasses.dataclass
class _Out:
    logits: torch.Tensor
    aux: float = 0.0


def _reentrant():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.head = nn.Sequential(nn.Linear(4, 4), nn.ReLU()), nn.Linear(4, 1)

        def forward(self, x):
            return self.head(ckpt.checkpoint(self.body, x, use_reentrant=True))
    return Net()


def _custom_function():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 1)

        def forward(self, x):
            return _Twice.apply(self.lin(x))
    return Net()


@pytest.mark.parametrize(("make", "error", "match"), [
    (_reentrant, InputError, r"use_reentrant=True.*use_reentrant=False"),
    (lambda: torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.ReLU())), InputError, r"TorchScript.*eager"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Sequential(nn.LazyLinear(2))), InputError,
     r"module '2\.0' \(LazyLinear\).*lazy.*forward on a batch first"),
    (lambda: nn.Linear(4, 2, device="meta"), InputError, r"meta device"),
    (_custom_function, ModelCallError, r"backward.*my backward is broken.*probe=False"),
])
def test_check_on_valid_but_unusual_models_gives_one_line(make, error, match):
    """No raw traceback: a one-line error naming the problem and a workaround."""
    with pytest.raises(error, match=match) as info:
        gd.check(make(), torch.randn(3, 4))
    assert "\n" not in str(info.value)


def test_check_reads_a_dataclass_output():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

        def forward(self, x):
            return _Out(self.lin(x))

    report = gd.check(Net(), torch.randn(3, 4))
    assert "probe" in report.data and report.data["probe"]["layers"]


def test_check_on_reentrant_checkpoint_without_the_probe_runs():
    assert gd.check(_reentrant(), torch.randn(3, 4), probe=False).source == "check"


def _run(args):
    return CliRunner().invoke(main, args)


def test_watch_report_on_malformed_lines_and_fields(tmp_path):
    """Non-object lines and wrongly typed fields are skipped with a count (stderr), not a
    traceback; the good steps are judged."""
    lines = ['{"type":"meta","version":3,"run_id":"a","layers":[{"name":"0","kind":"linear"},7],'
             '"activations":"x","config":[]}', "[1, 2]", '"text"', "null",
             '{"type":"step","step":1,"loss":"abc","grad_norm":{"0":"x"},"lr":[1],"nonfinite":{"0":"nan"}}',
             '{"type":"step","step":"2"}', '{"type":"step","step":3,"grad_norm":[1],"act":{"s":5}}',
             '{"type":"step","step":4,"skipped":"no","grad_norm":{"0":1.5},"loss":1.0}']
    (tmp_path / "watch.jsonl").write_text("\n".join(lines) + "\n")
    result = _run(["watch-report", str(tmp_path)])
    assert result.exit_code == 0 and result.exception is None or isinstance(result.exception, SystemExit)
    assert "skipped 4 malformed line(s)" in result.output and "3 steps, 1 layers" in result.output
    meta, steps = read_run(tmp_path)
    assert meta["malformed"]["lines"] == 4 and meta["malformed"]["fields"] >= 8
    assert steps[-1]["grad_norm"] == {"0": 1.5} and "skipped" not in steps[-1]


@pytest.mark.parametrize(("version", "match"), [(99, "newer than this graddoctor"), ("x", "unknown run-log format")])
def test_a_run_log_of_an_unknown_version_is_a_one_line_error(tmp_path, version, match):
    (tmp_path / "watch.jsonl").write_text(json.dumps({"type": "meta", "version": version, "run_id": "a",
                                                      "layers": []}) + "\n")
    with pytest.raises(InputError, match=match):
        read_run(tmp_path)
    result = _run(["watch-report", str(tmp_path)])
    assert result.exit_code == 2 and match in result.output and "Traceback" not in result.output


def test_a_run_killed_before_its_first_flush_is_not_read_as_clean(tmp_path):
    """Only the meta line (the process died before the ring buffer's first flush): watch-report
    says nothing was judged and exits 1, not "no findings" with 0."""
    meta = {"type": "meta", "version": 3, "run_id": "a", "layers": [{"name": "0", "kind": "linear"}],
            "config": {"flush_every": 50}}
    (tmp_path / "watch.jsonl").write_text(json.dumps(meta) + "\n")
    result = _run(["watch-report", str(tmp_path), "--no-layers"])
    text = " ".join(result.output.split())  # the console wraps long lines
    assert result.exit_code == 1 and "nothing judged - no step recorded" in text, result.output
    assert "every 50 steps" in text and "no findings" not in text


def test_a_log_dir_that_cannot_be_written_warns_once_and_keeps_the_records_in_memory(tmp_path):
    """A log_dir that cannot be a directory (here: an existing file; a read-only parent is the
    same path for a non-root user): one warning at attach, training goes on, the report reads
    the records from memory (it was 'nothing judged' after an internal error)."""
    import warnings

    import graddoctor as gd

    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Sigmoid(), torch.nn.Linear(16, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with gd.watch(net, opt, log_dir=blocker / "run") as w:
            for _ in range(12):
                loss = net(torch.randn(4, 8)).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
    said = [str(x.message) for x in seen if "cannot be written" in str(x.message)]
    assert len(said) == 1 and "in memory" in said[0], [str(x.message) for x in seen]
    assert w.failed is None and len(w.records()[1]) == 12
    assert "nothing judged" not in w.report().summary()


def test_parameters_left_out_of_the_optimizer_are_named_at_attach():
    """Trainable layers outside the optimizer get gradients that opt.zero_grad() never clears:
    watch says so once (they used to read as exploding / stalled layers only); a frozen layer
    (requires_grad=False) or the optimizer of every parameter says nothing."""
    import warnings

    import graddoctor as gd

    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    for params, said in [(net[2].parameters(), True), (net.parameters(), False)]:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            gd.watch(net, torch.optim.SGD(params, lr=0.1)).detach()
        lines = [str(x.message) for x in seen if "not in the optimizer" in str(x.message)]
        assert bool(lines) == said and (not said or "0.weight, 0.bias" in lines[0]), lines
        assert not said or "watch each network with its own optimizer" in lines[0]  # a GAN's other half
    net[0].requires_grad_(False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        gd.watch(net, torch.optim.SGD(net[2].parameters(), lr=0.1)).detach()
    assert not [x for x in seen if "not in the optimizer" in str(x.message)]


def test_layers_left_out_of_the_optimizer_are_not_read_as_stalled():
    """A head-only optimizer over a backbone that still requires grad: the backbone's updates
    are exactly zero, which read as a stalled-layers error ("steps below float32 resolution");
    watch measures the updates of the layers the optimizer holds only."""
    import graddoctor as gd

    torch.manual_seed(0)
    net = torch.nn.Sequential(*[m for _ in range(4) for m in (torch.nn.Linear(16, 16), torch.nn.ReLU())],
                              torch.nn.Linear(16, 2))
    opt = torch.optim.Adam(net[8].parameters(), lr=1e-2)
    x, y = torch.randn(64, 16), torch.randint(0, 2, (64,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(net, opt) as w:
            for _ in range(60):
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
    sampled = [s["update_ratio"] for s in w.records()[1] if s.get("update_ratio")]
    assert sampled and all(set(u) == {"8"} for u in sampled), sampled[:2]
    assert "stalled-layers" not in {f.code for f in w.report().findings}


def test_a_tensorboard_only_log_dir_says_why_there_is_no_run_log(tmp_path):
    (tmp_path / "events.out.tfevents.1.host").write_bytes(b"")
    result = _run(["watch-report", str(tmp_path)])
    assert result.exit_code == 2 and "TensorBoard events only" in result.output, result.output


def test_w_fixes_is_an_empty_list_without_autofix():
    import graddoctor as gd

    net = torch.nn.Linear(4, 2)
    with gd.watch(net, torch.optim.SGD(net.parameters(), lr=0.1)) as w:
        pass
    assert w.fixes == []
