"""``graddoctor fix FACTORY``: check, repair, check again; save the repaired model.

Prints the findings before, the repair (what changed, where, why, and the code
changes to make by hand) and the findings after. With ``--out DIR`` it writes
``DIR/state_dict.pt`` (the repaired model's ``state_dict``; its module names
follow the changes), ``DIR/model.pt`` (the whole module, when it pickles: a class defined
in the factory's file does not; one line then says why, and an earlier ``model.pt`` there is
left as it was) and ``DIR/changes.json`` (changes, plan, reports before and after). Each file
is written to a temporary file in ``DIR`` and renamed over the old one only when complete:
a failed save leaves no partial file. Exit code 0
when the repaired model has no error finding, 1 otherwise, 2 on bad input.

Example::

    graddoctor fix examples/models.py:sigmoid_mlp --input-shape 16,64 --out fixed/
    graddoctor fix graddoctor.zoo:mlp --input-shape 16,64 --remedies relu,he-init
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

import click

from graddoctor.cli.factory import model_input_options
from graddoctor.errors import InputError


@click.command("fix")
@model_input_options("16,64")
@click.option("--remedies", default=None,
              help="Comma-separated remedy ids to apply in order instead of the planner's choice.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Directory for state_dict.pt, model.pt and changes.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the changes and reports as JSON.")
def fix(factory: str, input_shape: str | None, dtype: str, seq: int | None,
        remedies: str | None, out_dir: str | None, as_json: bool) -> None:
    """Repair a model whose gradients will vanish or explode, and show before/after.

    FACTORY is path/to/file.py:function or package.module:function; the function
    returns a model or (model, example_inputs). The file is imported and the function
    run, as python or torchrun would run them: pass only code you trust.
    """
    from graddoctor.cli.factory import build
    from graddoctor.cli.paths import writable_dir
    from graddoctor.diagnose.checkup import check
    from graddoctor.fix.repairing import repair

    if out_dir is not None:
        writable_dir(out_dir, "--out")  # before the work, not after it
    model, inputs = build(factory, input_shape, dtype, seq)
    ids = [r.strip() for r in remedies.split(",") if r.strip()] if remedies is not None else None
    if ids == []:
        raise InputError(f"--remedies {remedies!r} names no remedy - give ids like relu,he-init, or leave "
                         "it out to apply the planned ones")
    before = check(model, inputs)
    result = repair(model, before, example_inputs=inputs, remedies=ids)
    after = check(result.model, inputs)
    payload = {"factory": factory, "before": before.to_dict(), "after": after.to_dict(),
               **result.to_dict()}
    if out_dir is not None:
        payload["files"] = _save(Path(out_dir), result, payload)
    if as_json:
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo("before:\n" + _indent(str(before)))
        click.echo(str(result))
        click.echo("after:\n" + _indent(str(after)))
        if out_dir is not None:
            click.echo(f"saved: {', '.join(payload['files'])}")
            if "not_saved" in payload:
                click.echo(f"not saved: model.pt ({payload['not_saved']['model.pt']}) - to reload, build "
                           "the model, repair it the same way, then load_state_dict(torch.load(state_dict.pt))")
    sys.exit(0 if after.ok else 1)


def _save(out: Path, result, payload: dict) -> list[str]:  # noqa: ANN001
    """Write state_dict.pt, model.pt (when the model pickles) and changes.json; the files saved.

    A model that does not pickle adds ``payload["not_saved"] = {"model.pt": why}``."""
    import torch

    files = [str(out / "state_dict.pt"), str(out / "changes.json")]
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_whole(out / "state_dict.pt", lambda f: torch.save(result.model.state_dict(), f))
    except OSError as e:  # (a location the nearest-parent check passed, such as /proc)
        raise InputError(f"--out {str(out)!r} cannot be written: {e.strerror or e} - pass a directory you "
                         "can write to") from None
    try:
        _write_whole(out / "model.pt", lambda f: torch.save(result.model, f))
        files.append(str(out / "model.pt"))
    except Exception as e:  # noqa: BLE001 - classes defined in a script may not pickle; state_dict is enough
        why = (f"cannot be written: {e.strerror or e}" if isinstance(e, OSError)
               else f"the model does not pickle: {_unpicklable(e)}")
        old = "; the model.pt there is an earlier run's" if (out / "model.pt").exists() else ""
        payload["not_saved"] = {"model.pt": why + old}
    text = json.dumps({**payload, "files": files}, indent=2)
    try:
        _write_whole(out / "changes.json", lambda f: f.write(text.encode()))
    except OSError as e:
        raise InputError(f"--out {str(out)!r} cannot be written: {e.strerror or e} - pass a directory you "
                         "can write to") from None
    return files


def _unpicklable(e: Exception) -> str:
    """Why ``torch.save(model)`` failed, in one short line (the factory's module name left out)."""
    user = r"_graddoctor_user_\d+"  # the name cli.factory imports a factory's file under
    msg = re.sub(rf": import of module '{user}' failed", " (defined in the factory's file)", " ".join(str(e).split()))
    return re.sub(rf"{user}\.", "", msg)[:160] or type(e).__name__


def _write_whole(path: Path, write: Callable) -> None:
    """``write(file)`` into a temporary file next to ``path``, renamed to ``path`` only when it
    succeeds (an earlier ``path`` stays intact otherwise); the temporary file never stays."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask's mode, as open() gives
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
