"""Autofix's init audit leaves alone a model that has learnt (fix/autofix/initaudit.py, ``learnt``):
a checkpoint trained from a poor init keeps the init's scale, and its spectrum can still read as
fresh (``looks_trained`` False), but its first loss, far under a uniform guess over its classes,
says it has learnt. Both were re-drawn at step 10 and ended worse than the same run without
autofix. Controls: the same models fresh are still re-drawn."""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor import data
from graddoctor.fix.autofix.initaudit import LEARNT_FRACTION, init_fault
from graddoctor.measure.trained import looks_trained
from test_autofix_attention_init import V, _batch, _llama, _train

DIGITS = data.load("digits", seed=0)


def _sigmoid_mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(64, 64), nn.Sigmoid())], nn.Linear(64, 10))
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.5)
            nn.init.zeros_(m.bias)
    return net


def _fit_digits(net: nn.Module, steps: int, seed: int, autofix: bool, lr: float = 1e-3) -> tuple[list[float], list[dict]]:
    """AdamW (no weight decay) on batches of 64 digits drawn with ``seed``, under ``gd.watch``."""
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0)
    g, x, y, losses = torch.Generator().manual_seed(seed), DIGITS.x_train, DIGITS.y_train, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(net, opt, autofix=autofix) as w:
            for _ in range(steps):
                i = torch.randint(0, len(x), (64,), generator=g)
                loss = F.cross_entropy(net(x[i]), y[i])
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
                losses.append(loss.item())
    return losses, getattr(w, "fixes", [])


def test_a_sigmoid_mlp_checkpoint_trained_from_std_half_is_not_re_drawn():
    net = _sigmoid_mlp(0)
    fresh, fresh_fixes = _fit_digits(_sigmoid_mlp(0), 20, seed=1, autofix=True)
    assert fresh_fixes and fresh_fixes[0]["step"] == 10  # the control: fresh, it is re-drawn
    assert fresh[0] >= LEARNT_FRACTION * math.log(10)
    _fit_digits(net, 300, seed=1, autofix=False)
    assert not looks_trained(net) and init_fault(net, DIGITS.x_train[:64])  # the spectral test lets it through
    state = {k: v.clone() for k, v in net.state_dict().items()}
    runs = []
    for autofix in (True, False):
        ckpt = _sigmoid_mlp(123)
        ckpt.load_state_dict(state)
        runs.append(_fit_digits(ckpt, 100, seed=2, autofix=autofix))
    (losses, fixes), (plain, _) = runs
    assert losses[0] < LEARNT_FRACTION * math.log(10)
    assert not fixes, fixes
    assert losses == plain  # autofix took nothing from the run


def test_a_checkpoint_trained_from_a_large_init_is_not_re_drawn():
    # a Llama trained from initializer_range 0.5 keeps large weights and peaked attention, and its
    # spectrum still reads as fresh (looks_trained is False); its first loss, far under a uniform
    # guess over the vocabulary, says it has learnt: no re-draw (it was re-drawn at step 10 and
    # restored at step 90, ending worse than the same run without autofix)
    model = _llama(0.5)
    _train(model, 300, autofix=False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert not looks_trained(model)  # the control: the spectral test alone would let it through
    assert init_fault(model, _batch(torch.Generator().manual_seed(0)))  # and the audit still reads a fault
    runs = []
    for autofix in (True, False):
        ckpt = _llama(0.02)
        ckpt.load_state_dict(state)
        runs.append(_train(ckpt, 100, autofix=autofix))
    (losses, fixes), (plain, _) = runs
    assert losses[0] < LEARNT_FRACTION * math.log(V)
    assert not fixes, fixes
    assert losses == plain  # autofix took nothing from the run



def test_a_second_round_while_the_first_is_on_trial_is_judged_with_it(monkeypatch):
    # the learnt guard off: the sigmoid checkpoint is re-drawn at step 10 (xavier), and the re-drawn
    # net's findings bring a second round at step 50 (relu + he-init + rezero) while the first is on
    # trial. Judged on its own, the second round compared with the re-drawn loss and stayed; judged
    # together, both compare with the checkpoint's level before step 10 and are undone together
    from graddoctor.fix.autofix import initaudit

    monkeypatch.setattr(initaudit, "LEARNT_FRACTION", 0.0)
    net = _sigmoid_mlp(0)
    _fit_digits(net, 300, seed=1, autofix=False)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    ckpt = _sigmoid_mlp(123)
    ckpt.load_state_dict(state)
    losses, fixes = _fit_digits(ckpt, 150, seed=2, autofix=True)
    rounds = [e for e in fixes if e["remedies"] != ["undo"]]
    assert len(rounds) == 2 and rounds[1]["step"] - rounds[0]["step"] < 80, fixes  # the control
    undo = fixes[-1]
    assert undo["remedies"] == ["undo"] and undo["undone"] == [r["step"] for r in rounds], fixes
    assert all("undone" in r["verdict"] for r in rounds)
    assert ckpt.state_dict().keys() == state.keys()  # the rezero wrap is gone with the rest
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[20:30]) / 10  # back at the checkpoint's level
