"""``graddoctor fix FACTORY``: check, repair, check again; save the repaired model.

Prints the findings before, the repair (what changed, where, why, and the code
changes to make by hand) and the findings after. With ``--out DIR`` it writes
``DIR/state_dict.pt`` (the repaired model's ``state_dict``; its module names
follow the changes), ``DIR/model.pt`` (the whole module, when it pickles) and
``DIR/changes.json`` (changes, plan, reports before and after). Exit code 0
when the repaired model has no error finding, 1 otherwise, 2 on bad input.

Example::

    graddoctor fix examples/models.py:sigmoid_mlp --input-shape 16,64 --out fixed/
    graddoctor fix graddoctor.zoo:mlp --input-shape 16,64 --remedies relu,he-init
"""

from __future__ import annotations

import json
import sys
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
    sys.exit(0 if after.ok else 1)


def _save(out: Path, result, payload: dict) -> list[str]:  # noqa: ANN001
    import torch

    files = [str(out / "state_dict.pt"), str(out / "changes.json")]
    try:
        out.mkdir(parents=True, exist_ok=True)
        torch.save(result.model.state_dict(), out / "state_dict.pt")
    except OSError as e:  # (a location the nearest-parent check passed, such as /proc)
        raise InputError(f"--out {str(out)!r} cannot be written: {e.strerror or e} - pass a directory you "
                         "can write to") from None
    try:
        torch.save(result.model, out / "model.pt")
        files.append(str(out / "model.pt"))
    except Exception:  # noqa: BLE001 - classes defined in a script may not pickle; state_dict is enough
        pass
    (out / "changes.json").write_text(json.dumps({**payload, "files": files}, indent=2))
    return files


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
