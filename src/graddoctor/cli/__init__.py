"""The ``graddoctor`` command. Each subcommand lives in its own module of this
package and is imported only when called (``_COMMANDS``: name -> module:attr).

Errors derived from ``GraddoctorError`` print as one line and exit with code 2.
"""

from __future__ import annotations

import sys
from importlib import import_module

import click

from graddoctor import __version__
from graddoctor.errors import GraddoctorError

_COMMANDS: dict[str, str] = {
    "demo": "graddoctor.cli.demo:demo",
    "map": "graddoctor.cli.map:map_command",
    "check": "graddoctor.cli.check:check",
    "watch-report": "graddoctor.cli.watch_report:watch_report",
    "fix": "graddoctor.cli.fix:fix",
    "lab": "graddoctor.cli.lab:lab",
    "report": "graddoctor.cli.report:report",
    "lr-find": "graddoctor.cli.lr_find:lr_find_command",
}


def _load(name: str) -> click.Command:
    """The command ``name``, or a stand-in that shows the error in ``--help`` and fails in one
    line when its import fails (a broken install is shown, never hidden)."""
    module_name, attr = _COMMANDS[name].split(":")
    try:
        return getattr(import_module(module_name), attr)
    except Exception as e:  # noqa: BLE001 - shown, not hidden: the command is broken
        return _broken(name, e)


def _broken(name: str, error: Exception) -> click.Command:
    msg = str(error).strip().splitlines()[0] if str(error).strip() else ""
    why = f"{type(error).__name__}: {msg}"

    def fail(**_: object) -> None:
        raise GraddoctorError(f"the {name!r} command cannot be loaded ({why}) - reinstall "
                              "graddoctor or report this")

    return click.Command(name, callback=fail, help=f"BROKEN: {why}", short_help=f"BROKEN: {why}",
                         context_settings={"ignore_unknown_options": True},
                         params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)])


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return _load(cmd_name) if cmd_name in _COMMANDS else None

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        try:
            return super().invoke(ctx)
        except GraddoctorError as e:
            click.echo(f"graddoctor: error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="graddoctor")
def main() -> None:
    """Find and fix vanishing and exploding gradients in PyTorch models."""
