"""A subcommand whose module fails to import does not take the whole CLI down: ``--help`` lists
it as BROKEN with the error, and calling it fails in one line with exit code 2."""

from __future__ import annotations

from click.testing import CliRunner

from graddoctor import cli


def test_cli_help_shows_a_command_whose_import_fails(tmp_path, monkeypatch):
    """A module raising at import: listed as "BROKEN: RuntimeError: ..." in ``--help``, its call
    exits 2 with a one-line error; so is a command whose module is missing (never hidden).
    (Commands are registered through the CLI's internal ``_COMMANDS`` table.)"""
    (tmp_path / "gd_broken_cmd.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli._COMMANDS, "boom", "gd_broken_cmd:cmd")
    monkeypatch.setitem(cli._COMMANDS, "later", "gd_not_built_yet_cmd:cmd")
    runner = CliRunner()
    res = runner.invoke(cli.main, ["--help"])
    assert res.exit_code == 0, res.output
    assert "boom" in res.output and "BROKEN: RuntimeError: boom at import" in res.output
    assert "BROKEN: ModuleNotFoundError" in res.output  # a missing module is shown, not hidden
    res = runner.invoke(cli.main, ["boom", "x", "--flag"])
    assert res.exit_code == 2
    assert "graddoctor: error: the 'boom' command cannot be loaded (RuntimeError: boom at import)" \
        in res.output
