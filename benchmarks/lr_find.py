"""Learning-rate finders side by side: graddoctor's ``lr_find``, ``torch-lr-finder`` and Lightning's
``Tuner.lr_find`` on the same model, data and seed, and the test accuracy each suggestion
reaches after the same training budget.

Tasks: a digits MLP (SGD + momentum), an MNIST-1D CNN (SGD + momentum) and a small
Transformer (2 layers, d=32; AdamW) reading MNIST-1D as a sequence of 10 patches of 4 values
(the temporal-order task at T=20 reached 100% test accuracy at both rates tried, 1e-4 and
3e-4, so that row could not tell the finders apart). The method was chosen on the first two rows; the
Transformer row is the held-out check. For every task and seed, each
finder sweeps 1e-7 -> 10 over 100 batches from the same fresh model; then a fresh model
with the same seed trains ``TRAIN_STEPS`` steps at the suggested constant learning rate on
the same batch order, and its test accuracy is measured. ``ours (minimum)`` is the default
(``gd.lr_find(...).suggestion``); ``ours (steepest)`` and ``ours (valley)`` are our other
rules (``.suggestions``), shown to justify it. Trainings at the same learning rate are run
once (same seed, same lr: the same run).

The budget (``TRAIN_STEPS`` = 300 steps, batch 64, constant lr) was fixed before the finders
were compared; ``--grid`` checks it is a fair one: seed 0 trained at half-decade learning
rates, to show that some constant lr trains each model in that budget.

torch-lr-finder's suggestion is what ``LRFinder.plot(suggest_lr=True)`` computes (steepest
gradient of its smoothed history, skip_start=10, skip_end=5), read from ``history`` without
drawing. Lightning runs when it is installed (else it is reported and left out).

Spread: max/min ratio of a method's suggestion over the seeds (1.0 = the same every time).

    PYTHONPATH=src python benchmarks/lr_find.py [--seeds 5] [--train-steps 300] [--only ours] [--grid]

``--only ours`` runs our methods only (the peers' numbers do not depend on our code: same
seeds, models, batches and budget).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

import graddoctor as gd

START_LR, END_LR, SWEEP_STEPS, BATCH = 1e-7, 10.0, 100, 64
TRAIN_STEPS = 300


def _tasks() -> dict[str, tuple[Callable[[int], nn.Module], Callable, gd.data.Bundle]]:
    digits = gd.data.load("digits")
    mnist1d = gd.data.load("mnist1d", flat=False)
    patches = dataclasses.replace(mnist1d, name="mnist1d-patches", input_shape=(10, 4),
                                  x_train=mnist1d.x_train.reshape(-1, 10, 4),
                                  x_test=mnist1d.x_test.reshape(-1, 10, 4))

    def sgd(params: object, lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=lr, momentum=0.9)

    def adamw(params: object, lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=lr)

    return {
        "digits MLP": (lambda s: gd.zoo.mlp(depth=4, width=64, seed=s), sgd, digits),
        "MNIST-1D CNN": (lambda s: gd.zoo.cnn(depth=5, kind="plain", dims=1, in_channels=1, width=16,
                                              seed=s), sgd, mnist1d),
        "Transformer (MNIST-1D patches)": (
            lambda s: gd.zoo.transformer(depth=2, d_model=32, nhead=4, input_dim=4, num_classes=10,
                                         max_len=10, seed=s), adamw, patches),
    }


def _loader(bundle: gd.data.Bundle, seed: int) -> torch.utils.data.DataLoader:
    return bundle.loaders(BATCH, seed=seed)[0]


def ours(make: Callable, opt: Callable, bundle: gd.data.Bundle, seed: int) -> dict[str, float | None]:
    model = make(seed)
    r = gd.lr_find(model, opt(model.parameters(), 1e-3), _loader(bundle, seed), start_lr=START_LR,
                   end_lr=END_LR, num_steps=SWEEP_STEPS)
    assert r.suggestion == r.suggestions[r.method]
    return {f"ours ({m})": r.suggestions[m] for m in (r.method, *sorted(set(r.suggestions) - {r.method}))}


def torch_lr_finder(make: Callable, opt: Callable, bundle: gd.data.Bundle, seed: int) -> float:
    from torch_lr_finder import LRFinder

    model = make(seed)
    finder = LRFinder(model, opt(model.parameters(), START_LR), nn.CrossEntropyLoss(), device="cpu")
    finder.range_test(_loader(bundle, seed), end_lr=END_LR, num_iter=SWEEP_STEPS)
    lrs, losses = finder.history["lr"][10:-5], finder.history["loss"][10:-5]
    finder.reset()
    return float(lrs[int(np.gradient(np.array(losses)).argmin())])


def lightning_tuner(make: Callable, opt: Callable, bundle: gd.data.Bundle, seed: int) -> float | None:
    import lightning.pytorch as pl
    from lightning.pytorch.tuner import Tuner

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.lr = make(seed), 1e-3

        def training_step(self, batch: tuple, _: int) -> torch.Tensor:
            return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return opt(self.parameters(), self.lr)

    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=-1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=tmp)
        found = Tuner(trainer).lr_find(Module(), train_dataloaders=_loader(bundle, seed),
                                       min_lr=START_LR, max_lr=END_LR, num_training=SWEEP_STEPS,
                                       update_attr=False)
    return found.suggestion() if found is not None else None


_TRAINED: dict[tuple[str, int, float], float] = {}


def accuracy(make: Callable, opt: Callable, bundle: gd.data.Bundle, seed: int, lr: float | None) -> float:
    """Test accuracy (%) after TRAIN_STEPS steps at a constant ``lr`` (NaN without a suggestion);
    a (task, seed, lr) already trained is read back (the run is deterministic)."""
    if lr is None or not math.isfinite(lr):
        return math.nan
    key = (bundle.name, seed, float(lr))
    if key not in _TRAINED:
        _TRAINED[key] = _train(make, opt, bundle, seed, lr)
    return _TRAINED[key]


def _train(make: Callable, opt: Callable, bundle: gd.data.Bundle, seed: int, lr: float) -> float:
    torch.manual_seed(seed)
    model = make(seed)
    optimizer = opt(model.parameters(), lr)
    train, test = bundle.loaders(BATCH, seed=seed)
    step = 0
    while step < TRAIN_STEPS:
        for x, y in train:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            if not torch.isfinite(loss):
                return 100.0 * _chance(bundle)
            loss.backward()
            optimizer.step()
            step += 1
            if step == TRAIN_STEPS:
                break
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in test)
    return 100.0 * correct / len(bundle.y_test)


def _chance(bundle: gd.data.Bundle) -> float:
    return 1.0 / (bundle.num_classes or 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--train-steps", type=int, default=TRAIN_STEPS)
    ap.add_argument("--only", choices=("all", "ours"), default="all")
    ap.add_argument("--grid", action="store_true", help="also train seed 0 at half-decade lrs")
    args = ap.parse_args()
    globals()["TRAIN_STEPS"] = args.train_steps
    warnings.filterwarnings("ignore")
    try:
        import lightning  # noqa: F401
        have_lightning = args.only == "all"
    except ImportError as e:
        have_lightning = False
        print(f"Lightning not installed ({e}); its column is left out")
    torch.set_num_threads(1)
    t0 = time.time()
    for task, (make, opt, bundle) in _tasks().items():
        picks: dict[str, list[float | None]] = {}
        accs: dict[str, list[float]] = {}
        secs: dict[str, float] = {}
        for seed in range(args.seeds):
            found: dict[str, float | None] = {}
            finders = {"ours": ours}
            if args.only == "all":
                finders["torch-lr-finder"] = torch_lr_finder
            if have_lightning:
                finders["Lightning"] = lightning_tuner
            for name, finder in finders.items():
                t = time.perf_counter()
                got = finder(make, opt, bundle, seed)
                secs[name] = secs.get(name, 0.0) + time.perf_counter() - t
                found.update(got if isinstance(got, dict) else {name: got})
            for method, lr in found.items():
                picks.setdefault(method, []).append(lr)
                accs.setdefault(method, []).append(accuracy(make, opt, bundle, seed, lr))
        _table(task, picks, accs)
        print("  sweep time per seed: " + ", ".join(f"{k} {v / args.seeds:.1f} s" for k, v in secs.items()))
        if args.grid:
            _grid(make, opt, bundle)
    print(f"\n({args.seeds} seeds, sweep {SWEEP_STEPS} steps {START_LR:g}->{END_LR:g}, "
          f"{TRAIN_STEPS} training steps, batch {BATCH}; {time.time() - t0:.0f} s)")


def _grid(make: Callable, opt: Callable, bundle: gd.data.Bundle) -> None:
    """Seed 0 trained at half-decade learning rates: what the budget allows at a constant lr."""
    lrs = [10 ** (k / 2) for k in range(-8, 1)]
    accs = [accuracy(make, opt, bundle, 0, lr) for lr in lrs]
    print("  grid (seed 0): " + ", ".join(f"{lr:.2g}: {a:.1f}" for lr, a in zip(lrs, accs, strict=True)))


def _table(task: str, picks: dict[str, list[float | None]], accs: dict[str, list[float]]) -> None:
    print(f"\n{task}")
    print(f"  {'method':<18} {'median lr':>10} {'spread (max/min)':>17} {'test acc % (mean +- sd)':>24}")
    for method, lrs in picks.items():
        ok = [v for v in lrs if v is not None]
        spread = max(ok) / min(ok) if ok else math.nan
        acc = [a for a in accs[method] if math.isfinite(a)]
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        mean = statistics.mean(acc) if acc else math.nan
        print(f"  {method:<18} {statistics.median(ok) if ok else math.nan:>10.2g} {spread:>17.1f} "
              f"{mean:>17.1f} +- {sd:4.1f}")
        print(f"  {'':<18} per seed: " + ", ".join("-" if v is None else f"{v:.2g}" for v in lrs))


if __name__ == "__main__":
    main()
