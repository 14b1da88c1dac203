"""Load a user's model factory for the CLI: ``path/to/file.py:factory`` or ``package.module:factory``.

The factory is called with no arguments and returns a model, or
``(model, example_inputs)``. When it returns only a model, the example inputs
are built from ``--input-shape`` (batch first), ``--dtype`` and ``--seq``.
Every failure is a one-line ``InputError`` (the CLI prints it and exits 2).

Example:
    >>> x = make_inputs(None, parse_shape("8,3"), "float32", seq=20)
    >>> tuple(x.shape)
    (8, 20, 3)
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import torch
from torch import nn
from torch.nn.parameter import is_lazy

from graddoctor.errors import InputError
from graddoctor.inputs import call_model

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float": torch.float32, "float64": torch.float64,
    "double": torch.float64, "float16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.long, "long": torch.long, "int": torch.long,
}


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0]}" if msg else type(e).__name__


def load_factory(spec: str) -> Any:
    """The callable named by ``spec`` (``file.py:name`` or ``package.module:name``).

    Example:
        >>> load_factory("graddoctor.zoo:mlp").__name__
        'mlp'
    """
    if ":" not in spec and spec.endswith((".pt", ".pth", ".ckpt", ".bin", ".safetensors")):
        raise InputError(f"{spec!r} is a checkpoint, not a factory: write a file with `def make(): return "
                         f"torch.load({spec!r}, weights_only=False)` (or build the model and load its state_dict) "
                         "and pass FILE.py:make")
    if ":" not in spec:
        raise InputError(f"expected FILE.py:FACTORY or package.module:FACTORY, got {spec!r}")
    where, name = spec.rsplit(":", 1)
    if not where or not name:
        raise InputError(f"expected FILE.py:FACTORY or package.module:FACTORY, got {spec!r}")
    if _is_file(where):
        with _user_folder_on_path(spec):
            module = _load_file(Path(where))
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as e:
            raise InputError(f"cannot import module {where!r} ({_one_line(e)}); "
                             "check the name or give a FILE.py path") from e
        except Exception as e:  # noqa: BLE001 - user code
            raise InputError(f"importing {where!r} failed: {_one_line(e)}") from e
    factory = getattr(module, name, None)
    if factory is None or not callable(factory):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        listed = ", ".join(found[:8]) + (f", ... (+{len(found) - 8})" if len(found) > 8 else "")
        raise InputError(f"{where} has no callable {name!r}; callables there: {listed or 'none'}")
    return factory


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


@contextmanager
def _user_folder_on_path(spec: str) -> Iterator[None]:
    """Put a ``FILE.py:factory`` file's folder first on ``sys.path`` (sibling imports), then restore it.

    Held while the file is imported and while the factory runs, so imports inside the
    factory find the file's neighbours too. Module specs leave ``sys.path`` alone.
    """
    where = spec.rsplit(":", 1)[0]
    if not _is_file(where):
        yield
        return
    folder = str(Path(where).resolve().parent)
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        if folder in sys.path:
            sys.path.remove(folder)


def _load_file(path: Path) -> Any:
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a Python file - name the file: FOLDER/FILE.py:factory")
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    mod_name = f"_graddoctor_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot load {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - user code
        raise InputError(f"importing {path} failed: {_one_line(e)}") from e
    return module


#: the largest random example input the CLI makes (a typo in --input-shape must not exhaust memory)
MAX_INPUT_BYTES = 2**32


def parse_shape(text: str) -> tuple[int, ...]:
    """``"8,3,32,32"`` -> ``(8, 3, 32, 32)`` (also ``x``-separated); every part a number.

    Example:
        >>> parse_shape("8,3,32,32"), parse_shape("2x64")
        ((8, 3, 32, 32), (2, 64))
        >>> parse_shape("2,,64")
        Traceback (most recent call last):
        graddoctor.errors.InputError: --input-shape must be positive integers separated by commas (batch first), like 8,3,32,32; got '2,,64'
    """
    ok = re.fullmatch(r"\s*\d+(\s*[,x]\s*\d+)*\s*", text or "")
    shape = tuple(int(p) for p in re.split(r"[,x]", text)) if ok else ()
    if not shape or any(d <= 0 for d in shape):
        raise InputError(f"--input-shape must be positive integers separated by commas (batch first), "
                         f"like 8,3,32,32; got {text!r}")
    return shape


def make_inputs(model: nn.Module | None, shape: tuple[int, ...], dtype: str = "float32",
                seq: int | None = None, seed: int = 0) -> torch.Tensor:
    """A seeded random input: N(0, 1) floats, or token ids below the first embedding's size.

    ``seq`` inserts a time axis of that length after the batch axis.
    """
    if dtype not in DTYPES:
        raise InputError(f"unknown --dtype {dtype!r}; one of {', '.join(DTYPES)}")
    if seq is not None:
        if seq <= 0:
            raise InputError(f"--seq must be a positive number of steps, got {seq}")
        shape = (shape[0], seq, *shape[1:])
    gen = torch.Generator().manual_seed(seed)
    dt = DTYPES[dtype]
    size = math.prod(shape) * max(dt.itemsize, 4)
    if size > MAX_INPUT_BYTES:
        raise InputError(f"--input-shape {','.join(map(str, shape))} needs {size / 2**30:.3g} GiB, over the "
                         f"{MAX_INPUT_BYTES // 2**30} GiB graddoctor allocates for an example input - use a "
                         "smaller batch (the probe needs only a few samples)")
    if dt.is_floating_point:
        return torch.randn(shape, generator=gen).to(dt)
    vocab = min((m.num_embeddings for m in (model.modules() if model is not None else [])
                 if isinstance(m, (nn.Embedding, nn.EmbeddingBag))), default=2)
    return torch.randint(0, vocab, shape, generator=gen, dtype=dt)


def build(spec: str, input_shape: str | None = None, dtype: str = "float32",
          seq: int | None = None) -> tuple[nn.Module, Any]:
    """Call the factory and return ``(model, example_inputs)``.

    ``--input-shape`` wins over inputs the factory returns.
    """
    with _user_folder_on_path(spec):  # the factory may import the file's neighbours itself
        factory = load_factory(spec)
        try:
            made = factory()
        except Exception as e:  # noqa: BLE001 - user code
            hint = (" - the CLI calls it with no arguments: write a zero-argument factory (def make(): return "
                    "Net(...) with its arguments filled in)") if isinstance(e, TypeError) and "required" in str(e) else ""
            raise InputError(f"the factory {spec} raised {_one_line(e)}{hint}") from e
    inputs = None
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], nn.Module):
        made, inputs = made
    if not isinstance(made, nn.Module):
        raise InputError(f"the factory {spec} must return an nn.Module or (model, example_inputs), "
                         f"got {type(made).__name__}")
    if input_shape is not None:
        inputs = make_inputs(made, parse_shape(input_shape), dtype, seq)
    elif inputs is not None and (seq is not None or dtype != "float32"):
        raise InputError(f"--seq and --dtype shape the random input of --input-shape, but the factory {spec} "
                         "returned its own inputs - give --input-shape too, or drop them")
    elif inputs is None:
        raise InputError(f"the factory {spec} returned only a model: give --input-shape "
                         "(batch first, e.g. --input-shape 8,3,32,32)")
    if any(is_lazy(p) for p in made.parameters()):  # nn.LazyLinear & co: the factory's fresh model takes
        with torch.no_grad():  # its shapes from one forward (a CLI user cannot run one in between)
            call_model(made, inputs)
    return made, inputs


__all__ = ["DTYPES", "build", "load_factory", "make_inputs", "parse_shape"]


def model_input_options(example_shape: str) -> Callable[[Callable], Callable]:
    """The FACTORY argument plus --input-shape/--dtype/--seq, shared by ``check`` and ``fix``."""

    def decorate(command: Callable) -> Callable:
        for option in reversed([
            click.argument("factory"),
            click.option("--input-shape", default=None,
                         help=f"Shape of a random example input, batch first (e.g. {example_shape}); "
                              "needed when the factory returns only a model."),
            click.option("--dtype", default="float32", show_default=True,
                         help="Input dtype: float32, float64, bfloat16, float16, or long (token ids)."),
            click.option("--seq", type=int, default=None,
                         help="Insert a time axis of this many steps after the batch axis."),
        ]):
            command = option(command)
        return command

    return decorate
