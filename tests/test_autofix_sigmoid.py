"""Acceptance: a 20-layer sigmoid MLP trained with ``autofix=True`` on digits reaches >= 90% test
accuracy within 1.3x the steps its ReLU+He twin needs (same width, optimizer, batches)."""

from __future__ import annotations

import warnings

import torch

import graddoctor as gd
from graddoctor import data, zoo
from graddoctor.train import accuracy, sampled_batches

_B = data.load("digits", seed=0)
X, Y, XT, YT = _B.x_train.float(), _B.y_train, _B.x_test.float(), _B.y_test
TARGET, EVERY, CAP = 0.90, 10, 1500


def steps_to_target(activation: str, init: str, autofix: bool, seed: int = 0,
                    cap: int = CAP) -> tuple[int | None, list]:
    """Steps until test accuracy >= TARGET (checked every EVERY steps), and the fix events."""
    torch.manual_seed(seed)
    model = zoo.mlp(depth=20, width=32, in_features=64, out_features=10, activation=activation,
                    init=init, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = sampled_batches(X, Y, 32, seed=seed)
    w = gd.watch(model, opt, example_inputs=X[:32], autofix=True) if autofix else None
    try:
        for t in range(1, cap + 1):
            x, y = next(batches)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if w is not None:
                w.step(loss)
            if t % EVERY == 0 and accuracy(model, XT, YT) >= TARGET:
                return t, (w.fixes if w else [])
        return None, (w.fixes if w else [])
    finally:
        if w is not None:
            w.detach()


def test_sigmoid20_with_autofix_reaches_90pct_within_1_3x_of_relu_he():
    twin, _ = steps_to_target("relu", "he", autofix=False)
    assert twin is not None, "the ReLU+He twin did not reach 90%"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixed, fixes = steps_to_target("sigmoid", "default", autofix=True)
        broken, _ = steps_to_target("sigmoid", "default", autofix=False, cap=int(1.3 * twin))
    assert broken is None, "the fault is not real: the sigmoid MLP learns without a fix"
    assert fixes and fixes[0]["step"] < twin, fixes
    assert fixed is not None, f"sigmoid+autofix did not reach 90% in {CAP} steps (twin: {twin})"
    print(f"ReLU+He twin: {twin} steps; sigmoid + autofix: {fixed} steps (fix at step "
          f"{fixes[0]['step']}: {fixes[0]['remedies']}); ratio {fixed / twin:.2f}")
    assert fixed <= 1.3 * twin
