"""The recurrent lab experiments (adding-problem, temporal-order): gate initialisation, the
training-only stop, the fair RNN learning-rate choice, and tiny runs of both experiments.

The paper-scale thresholds are judged by `graddoctor lab run ... --quick`, not here.
"""

from __future__ import annotations

import math

import torch

from graddoctor import data, lab, zoo
from graddoctor.lab import adding_problem, temporal_order
from graddoctor.lab.recurrent import chrono_init, set_forget_bias


def test_chrono_init_sets_forget_and_input_biases() -> None:
    net = zoo.rnn("lstm", input_size=2, hidden_size=16, seed=0)
    before = {n: p.detach().clone() for n, p in net.rnn.named_parameters()}
    rng = torch.get_rng_state()
    chrono_init(net, T=100, seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # a private generator
    b_ih, b_hh = net.rnn.bias_ih_l0.detach(), net.rnn.bias_hh_l0.detach()
    h = 16
    b_f, b_i = b_ih[h:2 * h], b_ih[:h]
    assert bool((b_f >= 0).all()) and bool((b_f <= math.log(99)).all())
    assert torch.equal(b_i, -b_f)
    assert bool((b_hh[:2 * h] == 0).all())
    assert torch.equal(b_ih[2 * h:], before["bias_ih_l0"][2 * h:])  # cell and output gates kept
    assert torch.equal(b_hh[2 * h:], before["bias_hh_l0"][2 * h:])
    assert torch.equal(net.rnn.weight_hh_l0, before["weight_hh_l0"])
    other = zoo.rnn("lstm", input_size=2, hidden_size=16, seed=0)
    chrono_init(other, T=100, seed=3)
    assert torch.equal(other.rnn.bias_ih_l0, net.rnn.bias_ih_l0)  # seeded


def test_set_forget_bias_only_touches_the_forget_gate() -> None:
    net = zoo.rnn("lstm", input_size=2, hidden_size=4, seed=0)
    before = net.rnn.bias_ih_l0.detach().clone()
    set_forget_bias(net, 2.5)
    after = net.rnn.bias_ih_l0.detach()
    assert after[4:8].tolist() == [2.5] * 4
    assert torch.equal(after[:4], before[:4]) and torch.equal(after[8:], before[8:])
    assert temporal_order.set_forget_bias is set_forget_bias  # the old import path still works


def _first_step_gradient(net: torch.nn.Module, x: torch.Tensor) -> float:
    """Norm of d(output at the last step)/d(input at the first step), summed over the batch."""
    x = x.clone().requires_grad_(True)
    net(x).sum().backward()
    return float(x.grad[:, 0].norm())


def test_chrono_init_carries_the_gradient_across_100_steps() -> None:
    # the mechanism the experiments rest on: at init, the signal from step 1 reaches the
    # output at step 100 through an LSTM with chrono init, far less with PyTorch's default
    # init, and not at all through a tanh RNN
    x = data.load("adding", seed=0, T=100, n_train=64, n_test=1).x_train
    default = zoo.rnn("lstm", input_size=2, hidden_size=32, seed=0)
    chrono = zoo.rnn("lstm", input_size=2, hidden_size=32, seed=0)
    chrono_init(chrono, T=100, seed=0)
    tanh = zoo.rnn("rnn", input_size=2, hidden_size=32, seed=0)
    g_default, g_chrono, g_tanh = (_first_step_gradient(n, x) for n in (default, chrono, tanh))
    assert g_chrono > 1e3 * g_default, (g_chrono, g_default)
    assert g_chrono > 1e3 * g_tanh, (g_chrono, g_tanh)


def test_early_stop_never_reads_the_test_set(monkeypatch) -> None:  # noqa: ANN001
    # shuffling the test labels changes the test accuracy, not when training stops
    real = data.load

    def shuffled(name: str, **kw):  # noqa: ANN003, ANN202
        b = real(name, **kw)
        b.y_test = b.y_test[torch.randperm(len(b.y_test), generator=torch.Generator().manual_seed(1))]
        return b

    settings = {"T": 20, "steps": 150, "n_train": 512, "n_test": 64, "hidden": 16,
                "stop_loss": 0.3, "rnn_lrs": (0.01,)}
    a = lab.run("temporal-order", seeds=1, **settings).runs[0]
    monkeypatch.setattr(temporal_order.data, "load", shuffled)
    b = lab.run("temporal-order", seeds=1, **settings).runs[0]
    assert a["steps_lstm"] == b["steps_lstm"] < 150  # it stopped, at the same step
    assert a["acc_lstm"] != b["acc_lstm"]


def test_rnn_reported_at_its_best_learning_rate() -> None:
    out = lab.run("adding-problem", seeds=1, T=10, steps=30, n_train=256, n_test=64, hidden=8,
                  rnn_lrs=(1e-4, 0.01)).runs[0]
    assert len(out["mse_rnn_per_lr"]) == 2 and out["mse_rnn"] == min(out["mse_rnn_per_lr"])
    assert out["lr_rnn"] == (1e-4, 0.01)[out["mse_rnn_per_lr"].index(out["mse_rnn"])]
    assert 0 <= out["within_strict_lstm"] <= out["within_lstm"] <= 1


def test_quick_settings_keep_the_papers_length_and_one_budget() -> None:
    for exp in (adding_problem.AddingProblem(), temporal_order.TemporalOrder()):
        s = exp.settings("quick")
        assert s["T"] == 100  # the papers' T (H&S: 100-110; Arjovsky et al.: 100 and more)
        assert s["gate_init"] == "chrono"
        assert set(exp.quick) == set(exp.full)


def test_temporal_order_lstm_beats_rnn_on_short_sequences() -> None:
    r = lab.run("temporal-order", seeds=1, T=20, steps=300, n_train=1000, n_test=200,
                hidden=16).runs[0]
    assert r["acc_lstm"] >= 0.9 and r["acc_lstm"] > r["acc_rnn"]
