"""Rank collapse (``measure.collapse``) and autofix's collapse gate on post-LN restarts."""

import types
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor import zoo
from graddoctor.fix.autofix.collapse import COLLAPSED, LOOK_UNTIL, CollapseGate
from graddoctor.measure.collapse import row_spread, token_spread
from graddoctor.report import Finding


def test_row_spread_matches_a_numpy_oracle():
    g = torch.Generator().manual_seed(0)
    for shape in [(7, 5), (3, 4, 6), (2, 3, 4, 8)]:
        x = torch.randn(*shape, generator=g) + torch.randn(shape[-1], generator=g)  # a shared offset
        rows = x.reshape(-1, shape[-1]).numpy().astype(np.float64)
        oracle = np.linalg.norm(rows - rows.mean(0)) / np.linalg.norm(rows)
        assert row_spread(x) == pytest.approx(oracle, rel=1e-5)


def test_row_spread_reads_a_strided_sample_of_many_rows():
    x = torch.randn(3, 5000, 4, generator=torch.Generator().manual_seed(1)) + 2.0
    rows = x.reshape(-1, 4)[::4].double()  # 15000 rows: every 4th (<= MAX_ROWS 4096)
    oracle = float((rows - rows.mean(0)).norm() / rows.norm())
    assert row_spread(x) == pytest.approx(oracle, rel=1e-5)


def test_row_spread_is_zero_for_identical_rows_and_nan_for_nothing():
    assert row_spread(torch.randn(1, 8).expand(5, 8)) == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(row_spread(torch.zeros(4, 3)))
    assert np.isnan(row_spread(torch.empty(0, 3)))
    assert np.isnan(row_spread(torch.randn(1, 8))) and np.isnan(row_spread(torch.randn(8)))  # one row
    assert np.isnan(row_spread(torch.full((2, 2), float("inf"))))


class _Collapsing(nn.Module):
    """Tokens through a Linear (weights zeroed: every token the same vector) and a LayerNorm."""

    def __init__(self, dead: bool) -> None:
        super().__init__()
        self.emb = nn.Linear(4, 8)
        self.norm = nn.LayerNorm(8)
        self.drop = nn.Dropout(0.5)
        if dead:
            nn.init.zeros_(self.emb.weight)
            nn.init.normal_(self.emb.bias)

    def forward(self, x):
        return self.drop(self.norm(self.emb(x)))


def test_token_spread_reads_collapse_and_leaves_modes_and_rng_as_they_were():
    x = torch.randn(6, 10, 4)
    live, dead = _Collapsing(False), _Collapsing(True)
    dead.drop.eval()  # a module the user put in eval mode stays in it
    torch.manual_seed(3)
    before = torch.rand(1)
    torch.manual_seed(3)
    assert token_spread(live, x, ["norm"]) > 0.5
    assert token_spread(dead, x, ["norm"]) == pytest.approx(0.0, abs=1e-6)
    assert torch.equal(torch.rand(1), before)  # the user's RNG stream is where it was
    assert live.training and dead.training and not dead.drop.training
    assert token_spread(live, x, []) is None and token_spread(live, x, ["nothere"]) is None


def _post_ln_error() -> Finding:
    return Finding("post-ln-no-warmup", "error", "stuck", ["b.0"], {}, ["warmup", "prenorm"])


META = {"layers": [{"name": "emb", "kind": "linear"}, {"name": "norm", "kind": "norm"}]}


def _gate(model, post_ln=True):
    return CollapseGate(model, types.SimpleNamespace(mapping=False), post_ln=lambda meta: post_ln)


def test_the_gate_keeps_the_restart_only_where_the_tokens_collapsed():
    x = torch.randn(6, 10, 4)
    other = Finding("loss-plateau", "warning", "flat")
    gate = _gate(_Collapsing(True))
    gate.look(10, META, x)
    kept = gate.confirm([_post_ln_error(), other])
    assert [f.code for f in kept] == ["post-ln-no-warmup", "loss-plateau"]
    assert kept[0].evidence["token_spread_min"] < COLLAPSED and gate.forwards.mapping is False
    gate = _gate(_Collapsing(False))
    gate.look(10, META, x)
    assert [f.code for f in gate.confirm([_post_ln_error(), other])] == ["loss-plateau"]


def test_the_gate_remembers_an_early_collapse_and_measures_only_early():
    model, x = _Collapsing(True), torch.randn(6, 10, 4)
    gate = _gate(model)
    gate.look(10, META, x)
    nn.init.normal_(model.emb.weight)  # the tokens come apart again (the run left the collapse)
    gate.look(20, META, x)
    assert gate.lowest < COLLAPSED and len(gate.confirm([_post_ln_error()])) == 1
    late = _gate(_Collapsing(False))
    late.look(LOOK_UNTIL + 10, META, x)  # a late check reads the records only
    assert late.lowest is None and len(late.confirm([_post_ln_error()])) == 1


def test_without_a_measure_the_records_decide():
    x = torch.randn(6, 10, 4)
    for gate, inputs, meta in [(_gate(_Collapsing(False)), None, META),  # no batch
                               (_gate(_Collapsing(False)), torch.randn(3, 5), META),  # forward fails
                               (_gate(_Collapsing(False)), x, {"layers": []}),  # no norm layers
                               (_gate(_Collapsing(False), post_ln=False), x, META),  # no post-LN stack
                               (CollapseGate(_Collapsing(False), types.SimpleNamespace(mapping=False),
                                             post_ln=lambda meta: True, enabled=False), x, META)]:  # refused
        gate.look(10, meta, inputs)
        assert gate.lowest is None and len(gate.confirm([_post_ln_error()])) == 1
        assert gate.forwards.mapping is False


def test_autofix_leaves_a_post_ln_run_alone_whose_tokens_stay_apart(monkeypatch):
    # the rules call it stuck (forced), but its hidden tokens differ: no restart, the user's rate kept
    calls = []

    def findings(meta, steps):
        calls.append(len(steps))
        return [_post_ln_error()]

    monkeypatch.setattr("graddoctor.fix.autofix.watcher.training_findings", findings)
    model = zoo.transformer(depth=6, d_model=16, nhead=2, norm="post", input_dim=8, num_classes=4,
                            max_len=8, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, 8, generator=g), torch.randint(0, 4, (64,), generator=g)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gd.watch(model, opt, example_inputs=x[:16], autofix=True) as w:
            for t in range(80):
                sl = slice(t % 4 * 16, (t % 4 + 1) * 16)
                loss = nn.functional.cross_entropy(model(x[sl]), y[sl])
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
    assert calls, "autofix never checked"
    assert w._collapse.lowest is not None and w._collapse.lowest >= COLLAPSED
    assert not [e for e in w.fixes if not e.get("noop")], w.fixes
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    # said once, in w.fixes and as a warning line: the report keeps the error autofix did not act on
    held = [e for e in w.fixes if "not_collapsed" in e]
    assert len(held) == 1 and held[0]["codes"] == ["post-ln-no-warmup"], w.fixes
    assert sum("no restart: the tokens never collapsed" in str(c.message) for c in caught) == 1
