"""A fix whose causes are gone and whose loss is falling, only slowly (a low learning rate), is
judged once more one trial window later instead of being undone (fix/autofix/judge.py
``falling``): an 8-layer sigmoid MLP at PyTorch's default init, AdamW 1e-4, repaired at step 10
(relu + He + rezero) read 2.56 -> 2.49 by step 90 against 2.34 before the fix and was undone back
to the net that never learns; judged again while each window lowers the loss, it passes that
level by step 250 and reaches 2.12 at 300 while the broken net sits at 2.30."""

from __future__ import annotations

import torch
from torch import nn

from test_autofix_learnt import _fit_digits


def _run(steps: int, autofix: bool) -> tuple[list[float], list[dict]]:
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(64, 64), nn.Sigmoid())], nn.Linear(64, 10))
    return _fit_digits(net, steps, seed=1, autofix=autofix, lr=1e-4)


def test_a_fix_that_is_slow_at_a_low_rate_gets_one_more_window_and_stays():
    losses, fixes = _run(300, autofix=True)
    assert [e["step"] for e in fixes] == [10], fixes  # no undo (it was undone at step 90)
    assert fixes[0]["verdict"].startswith("helped"), fixes  # judged again at 170, kept at 250
    plain, _ = _run(300, autofix=False)
    end, end_plain = sum(losses[-20:]) / 20, sum(plain[-20:]) / 20
    assert end < end_plain - 0.05, (end, end_plain)  # the broken net stays at chance (ln 10 = 2.30)
