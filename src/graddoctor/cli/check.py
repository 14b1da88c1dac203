"""``graddoctor check FACTORY``: the pre-flight audit from the command line.

Exit code 1 if any finding has severity "error" (a CI gate), 0 otherwise; bad
input (a missing file, no such factory, a factory that raises, inputs that do
not fit the model) prints one line ``graddoctor: error: ...`` and exits 2.

Example::

    graddoctor check examples/models.py:sigmoid_mlp --input-shape 16,64
    graddoctor check graddoctor.zoo:rnn --input-shape 8,2 --seq 300 --json
"""

from __future__ import annotations

import sys

import click

from graddoctor.cli.factory import model_input_options


@click.command("check")
@model_input_options("8,3,32,32")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-probe", is_flag=True, help="Static rules only (no forward/backward probe).")
def check(factory: str, input_shape: str | None, dtype: str, seq: int | None, as_json: bool,
          no_probe: bool) -> None:
    """Audit a model before training: will its gradients vanish or explode?

    FACTORY is path/to/file.py:function or package.module:function; the function
    returns a model or (model, example_inputs). The file is imported and the function
    run, as python or torchrun would run them: pass only code you trust.
    """
    from graddoctor.cli.factory import build
    from graddoctor.diagnose.checkup import check as run_check

    model, inputs = build(factory, input_shape, dtype, seq)
    report = run_check(model, inputs, probe=not no_probe)
    if as_json:
        click.echo(report.to_json())
    elif sys.stdout.isatty():
        from rich.console import Console

        Console().print(report)
    else:
        click.echo(str(report))
    sys.exit(0 if report.ok else 1)
