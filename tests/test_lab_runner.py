"""Lab runner: per-seed verdicts, --seed-start, the RESULTS.md columns."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from click.testing import CliRunner

from graddoctor import lab
from graddoctor.lab.base import Check, Experiment
from graddoctor.lab.runner import versions


class _OneBadSeed(Experiment):
    """A fake experiment whose seed 2 alone goes against the claim."""

    name = "one-bad-seed"
    claim = source = setup = "x"
    quick: ClassVar[dict[str, Any]] = {}
    full: ClassVar[dict[str, Any]] = {}
    checks: ClassVar[list[Check]] = [Check("v", "<", 1.0, "value", "0.5 (paper)")]

    def run(self, seed: int, settings: dict[str, Any]) -> dict[str, Any]:
        return {"v": 5.0 if seed == 2 else 0.1}


def test_one_failing_seed_fails_the_row_even_when_the_mean_passes(monkeypatch) -> None:  # noqa: ANN001
    import graddoctor.lab.runner as runner

    monkeypatch.setattr(runner, "get", lambda name: _OneBadSeed())
    out = _OneBadSeed().verdict([0, 1, 3, 4, 5, 6, 7, 8, 9, 2], {})
    c = out.checks[0]
    assert c["mean"] < 1.0  # the mean alone would pass (0.59)
    assert c["seeds_passed"] == 9 and c["per_seed"][-1] == 5.0
    assert not c["passed"] and not out.passed
    md = runner.markdown([out], versions())
    assert "| 9/10 | **FAIL** |" in md and "0.5 (paper)" in md


def test_all_seeds_pass() -> None:
    out = _OneBadSeed().verdict([0, 1], {})
    assert out.passed and out.checks[0]["seeds_passed"] == 2


def test_seed_start_runs_the_held_out_seeds(tmp_path) -> None:  # noqa: ANN001
    o = lab.run("dynamical-isometry", seeds=2, seed_start=10, depth=4, width=16, inputs=2)
    assert o.seeds == [10, 11]
    from graddoctor.cli import main

    r = CliRunner().invoke(main, ["lab", "run", "dynamical-isometry", "--seeds", "2",
                                  "--seed-start", "12", "--out", str(tmp_path)])
    assert "seeds" in r.output
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["experiments"][0]["seeds"] == [12, 13]
    assert "/2 |" in (tmp_path / "RESULTS.md").read_text()


def test_render_rewrites_results_md_from_json(tmp_path) -> None:  # noqa: ANN001
    from graddoctor.cli import main
    from graddoctor.lab.runner import run_experiments

    run_experiments(["dynamical-isometry"], seeds=1, out=tmp_path, depth=4, width=16, inputs=2)
    before = json.loads((tmp_path / "results.json").read_text())
    (tmp_path / "RESULTS.md").write_text("stale")
    r = CliRunner().invoke(main, ["lab", "render", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "RESULTS.md").read_text()
    assert "| dynamical-isometry |" in md and "Pennington" in md
    assert json.loads((tmp_path / "results.json").read_text()) == before  # numbers untouched


def test_jobs_give_the_same_numbers_in_order(tmp_path) -> None:  # noqa: ANN001
    from graddoctor.lab.runner import run_experiments

    kw = {"depth": 4, "width": 16, "inputs": 2, "batch": 32}
    one = run_experiments(["dynamical-isometry", "gradient-decay"], seeds=1, **kw)
    two = run_experiments(["dynamical-isometry", "gradient-decay"], seeds=1, jobs=2,
                          out=tmp_path, **kw)
    assert [o.name for o in two] == ["dynamical-isometry", "gradient-decay"]
    for a, b in zip(one, two):
        assert [c["per_seed"] for c in a.checks] == [c["per_seed"] for c in b.checks]
    assert all(o.cpu_seconds > 0 for o in two)  # measured in the worker processes
    run = json.loads((tmp_path / "results.json").read_text())["run"]
    assert run["jobs"] == 2 and run["elapsed_s"] > 0
    assert "with 2 job(s)" in (tmp_path / "RESULTS.md").read_text()


def test_results_give_each_experiment_time_and_the_total(tmp_path) -> None:  # noqa: ANN001
    from graddoctor.cli import main

    r = CliRunner().invoke(main, ["lab", "run", "dynamical-isometry", "--seeds", "1",
                                  "--out", str(tmp_path)])
    assert "elapsed wall with 1 job(s); per experiment summed:" in r.output
    data = json.loads((tmp_path / "results.json").read_text())
    o = data["experiments"][0]
    md = (tmp_path / "RESULTS.md").read_text()
    assert "| experiment | wall s | CPU s |" in md
    assert f"| dynamical-isometry | {o['seconds']:.1f} | {o['cpu_seconds']:.1f} |" in md
    assert f"| total | {o['seconds']:.1f} | {o['cpu_seconds']:.1f} |" in md
    assert data["run"]["elapsed_s"] >= o["seconds"]


def test_render_without_a_results_file_or_with_a_broken_one_is_a_one_line_error(tmp_path) -> None:  # noqa: ANN001
    from graddoctor.cli import main

    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "results.json").write_text("{bad")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "results.json").write_text("{}")
    for folder, needle in [(tmp_path, "not found"), (tmp_path / "corrupt", "cannot be read as JSON"),
                           (tmp_path / "other", "not a lab results file")]:
        res = CliRunner().invoke(main, ["lab", "render", "--out", str(folder)])
        assert res.exit_code == 2 and needle in res.output and "lab run" in res.output, res.output


def test_a_second_run_into_the_same_folder_keeps_the_other_experiments(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    import dataclasses

    import graddoctor.lab.runner as runner
    from graddoctor.lab.runner import write_results

    monkeypatch.setattr(runner, "get", lambda name: _OneBadSeed())

    first = _OneBadSeed().verdict([0, 1], {})
    second = dataclasses.replace(first, name="other")
    write_results([first], tmp_path)
    write_results([second], tmp_path)  # another experiment: the first one's numbers stay
    names = [e["name"] for e in json.loads((tmp_path / "results.json").read_text())["experiments"]]
    assert names == ["one-bad-seed", "other"]
    md = (tmp_path / "RESULTS.md").read_text()
    assert "| one-bad-seed |" in md and "| other |" in md
    again = dataclasses.replace(first, seconds=123.0)
    write_results([again], tmp_path)  # the same experiment again: replaced, not doubled
    stored = json.loads((tmp_path / "results.json").read_text())["experiments"]
    assert [e["name"] for e in stored] == ["other", "one-bad-seed"] and stored[1]["seconds"] == 123.0
