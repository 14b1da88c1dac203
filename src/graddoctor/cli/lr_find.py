"""``graddoctor lr-find FACTORY --dataset digits|mnist1d``: the range test from the command line.

Trains the factory's model on an embedded dataset (flat inputs: digits (64,), mnist1d (40,)),
prints the curve in the terminal, the suggestion or the finding, and writes the figure as a
PNG (``--out``). Exit code 1 when a finding has severity "error", 0 otherwise; bad input
prints one line ``graddoctor: error: ...`` and exits 2.

Example::

    graddoctor lr-find examples/models.py:sigmoid_mlp --dataset digits --out lr.png
"""

from __future__ import annotations

import math
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from graddoctor.cli.paths import writable_file
from graddoctor.errors import GraddoctorError, InputError

if TYPE_CHECKING:  # torch is imported when the command runs, not when the CLI lists it
    from torch import nn

#: terminal plot size (columns x rows)
WIDTH, HEIGHT = 64, 12

#: the ``--dataset`` choices and the number of features of one (flat) input
FEATURES = {"digits": 64, "mnist1d": 40}

#: the Python API's argument names in ``lr_find``'s messages, and the CLI option for each
OPTION_NAMES = {"num_steps": "--steps", "start_lr": "--start-lr", "end_lr": "--end-lr"}


def ascii_curve(lrs: Sequence[float], losses: Sequence[float], mark: float | None = None) -> str:
    """The loss against log10(lr) as text: one ``*`` per column (its mean loss), ``|`` at ``mark``.

    Example:
        >>> print(ascii_curve([1e-3, 1e-2, 1e-1], [2.0, 1.0, 3.0]).splitlines()[0].strip())
        3 |                                                               *
    """
    pts = [(math.log10(x), y) for x, y in zip(lrs, losses) if x > 0 and math.isfinite(y)]
    if len(pts) < 2:
        return "(too few points to draw)"
    x0, x1 = pts[0][0], pts[-1][0]
    cols: dict[int, list[float]] = {}
    for x, y in pts:
        cols.setdefault(round((x - x0) / (x1 - x0 or 1) * (WIDTH - 1)), []).append(y)
    level = {c: sum(v) / len(v) for c, v in cols.items()}
    lo, hi = min(level.values()), max(level.values())
    grid = [[" "] * WIDTH for _ in range(HEIGHT)]
    if mark is not None and mark > 0 and x1 > x0:
        c = round((math.log10(mark) - x0) / (x1 - x0) * (WIDTH - 1))
        for row in grid if 0 <= c < WIDTH else []:
            row[c] = "|"
    for c, y in level.items():
        grid[HEIGHT - 1 - round((y - lo) / (hi - lo or 1) * (HEIGHT - 1))][c] = "*"
    label = [f"{hi:.3g}"] + [""] * (HEIGHT - 2) + [f"{lo:.3g}"]
    pad = max(len(s) for s in label)
    lines = [f"{s:>{pad}} |{''.join(r)}" for s, r in zip(label, grid)]
    axis = f"{'':>{pad}}  lr {10 ** x0:.0e}" + f"{10 ** x1:.0e}".rjust(WIDTH - 8)
    return "\n".join([*lines, f"{'':>{pad}} +" + "-" * WIDTH, axis])


#: figure formats ``--out`` may end with (matplotlib writes each; a name without one gets ".png")
FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def check_options(start_lr: float, end_lr: float, steps: int, batch_size: int, out: str) -> None:
    """Raise a one-line ``InputError`` for the first bad option, before the model is built.

    Example:
        >>> check_options(1e-7, 10.0, 100, 64, "lr.png")
        >>> check_options(1e-7, 10.0, 100, 64, "lr.txt")
        Traceback (most recent call last):
        graddoctor.errors.InputError: --out 'lr.txt': the figure is written as .png, .pdf, .svg, .jpg or .jpeg - e.g. --out lr_find.png
    """
    if not (0 < start_lr < end_lr and math.isfinite(end_lr)):
        raise InputError(f"need 0 < --start-lr < --end-lr, got {start_lr:g} and {end_lr:g} - e.g. "
                         "--start-lr 1e-7 --end-lr 10")
    if steps < 10:
        raise InputError(f"--steps {steps}: the sweep needs at least 10 batches (100 is typical)")
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size} must be at least 1 (64 is typical)")
    if Path(out).suffix.lower() not in FORMATS:
        raise InputError(f"--out {out!r}: the figure is written as {', '.join(FORMATS[:-1])} or "
                         f"{FORMATS[-1]} - e.g. --out lr_find.png")
    writable_file(out, "--out")


def cli_wording(text: str) -> str:
    """``text`` with the Python API's argument names replaced by the CLI options that set them.

    Example:
        >>> cli_wording("the sweep is too short (raise num_steps), or start lower (start_lr)")
        'the sweep is too short (raise --steps), or start lower (--start-lr)'
    """
    return re.sub(r"\b(" + "|".join(OPTION_NAMES) + r")\b", lambda m: OPTION_NAMES[m.group(1)], text)


def first_linear(model: nn.Module) -> tuple[str, int] | None:
    """``(name, in_features)`` of the model's first weight layer when it is an ``nn.Linear``
    (definition order), else None: what the model expects of a flat input, when easily known.

    Example:
        >>> from torch import nn
        >>> first_linear(nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 2)))
        ('0', 64)
    """
    from torch import nn

    for name, module in model.named_modules():
        if next(module.parameters(recurse=False), None) is None:
            continue
        if isinstance(module, nn.Linear) and not isinstance(module, nn.LazyLinear):
            return name or type(module).__name__, module.in_features
        return None
    return None


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0]}" if msg else type(e).__name__


def first_batch_error(error: InputError, model: nn.Module, dataset: str, batch_size: int) -> InputError:
    """``error`` with the dataset's input shape and what the model expects, when the model's own
    code failed on the first batch (``error.__cause__``); ``error`` itself otherwise.

    Example:
        >>> from torch import nn
        >>> try:
        ...     raise InputError("the forward failed on the first batch") from RuntimeError("shapes")
        ... except InputError as e:
        ...     print(first_batch_error(e, nn.Linear(64, 2), "mnist1d", 32))
        the forward failed on the first batch (RuntimeError: shapes): --dataset mnist1d gives 40 input features, the model's first layer 'Linear' takes 64 - use --dataset digits (64 features), or make the factory build a model with 40 input features
    """
    cause, got = error.__cause__, FEATURES[dataset]
    if cause is None or isinstance(cause, GraddoctorError):
        return error
    head = f"the forward failed on the first batch ({_one_line(cause)})"
    layer = first_linear(model)
    if layer is None or layer[1] == got:
        return InputError(f"{head}: --dataset {dataset} gives batches of shape ({batch_size}, {got}) "
                          "and integer class labels - check that the model and its output fit them")
    name, expects = layer
    other = [f"use --dataset {d} ({n} features), or " for d, n in FEATURES.items() if n == expects]
    return InputError(f"{head}: --dataset {dataset} gives {got} input features, the model's first "
                      f"layer {name!r} takes {expects} - {''.join(other[:1])}make the factory build "
                      f"a model with {got} input features")


@contextmanager
def held_warnings() -> Iterator[None]:
    """Hold the warnings raised inside; show them when the block ends, drop them when it raises a
    ``GraddoctorError``: its one error line says what went wrong, and a warning the same
    failure caused inside graddoctor (e.g. ``watch``'s "ModelMap failed") is noise before it.
    """
    dropped = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            try:
                yield
            except GraddoctorError:
                dropped = True
                raise
    finally:
        for w in [] if dropped else caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)


@click.command("lr-find")
@click.argument("factory")
@click.option("--dataset", type=click.Choice(list(FEATURES)), default="digits", show_default=True,
              help="Embedded dataset to sweep on (flat inputs).")
@click.option("--optimizer", "opt_name", type=click.Choice(["sgd", "adam"]), default="sgd",
              show_default=True, help="SGD with momentum 0.9, or Adam.")
@click.option("--steps", type=int, default=100, show_default=True, help="Batches in the sweep.")
@click.option("--start-lr", type=float, default=1e-7, show_default=True)
@click.option("--end-lr", type=float, default=10.0, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the batch order.")
@click.option("--out", default="lr_find.png", show_default=True, help="Where the PNG goes.")
def lr_find_command(factory: str, dataset: str, opt_name: str, steps: int, start_lr: float,
                    end_lr: float, batch_size: int, seed: int, out: str) -> None:
    """Learning-rate range test: suggest a learning rate, or say why none works.

    FACTORY is path/to/file.py:function or package.module:function; the function returns a
    model (or (model, example_inputs)) taking the dataset's flat inputs.
    """
    import torch

    from graddoctor.cli.factory import build
    from graddoctor.data import load
    from graddoctor.lrfind import lr_find

    check_options(start_lr, end_lr, steps, batch_size, out)
    bundle = load(dataset, seed=seed)
    shape = ",".join(str(d) for d in (batch_size, *bundle.input_shape))
    model, _ = build(factory, input_shape=shape)
    if not any(p.requires_grad for p in model.parameters()):
        raise InputError(f"{factory} returned a model with no trainable parameters - nothing to sweep")
    opt = (torch.optim.SGD(model.parameters(), lr=start_lr, momentum=0.9) if opt_name == "sgd"
           else torch.optim.Adam(model.parameters(), lr=start_lr))
    train = bundle.loaders(batch_size)[0]
    try:
        with held_warnings():
            result = lr_find(model, opt, train, start_lr=start_lr, end_lr=end_lr, num_steps=steps)
    except InputError as e:
        raise first_batch_error(e, model, dataset, batch_size) from e
    click.echo(ascii_curve(result.lrs, result.smoothed_losses, result.suggestion))
    click.echo(cli_wording(str(result)))
    Path(out).expanduser().parent.mkdir(parents=True, exist_ok=True)
    result.plot(out)
    click.echo(f"figure: {out}")
    sys.exit(1 if any(f.severity == "error" for f in result.findings) else 0)


__all__ = ["FEATURES", "FORMATS", "ascii_curve", "check_options", "cli_wording", "first_batch_error",
           "first_linear", "held_warnings", "lr_find_command"]
