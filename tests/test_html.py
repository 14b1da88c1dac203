"""The HTML report: self-contained (no URL to fetch), findings on top, names escaped, data inline."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pytest
from matplotlib.image import imread

from graddoctor.present import html as html
from graddoctor.report import Finding, Report
from runfixtures import record_run

pytestmark = pytest.mark.slow  # every figure is drawn: ~10 s in all on a busy 2-core machine

EVIL = '</script><img src="https://evil.example/x.png" onerror="alert(1)">'


@pytest.fixture(scope="module")
def reports():
    meta, steps = record_run(frozen=("2",), nan_at=10, n_steps=12)
    meta["layers"][0]["name"] = EVIL  # a hostile module name must stay text
    for s in steps:
        s["grad_norm"][EVIL] = s["grad_norm"].pop("0")
    check = Report([Finding("saturating-hidden-activation", "warning", "sigmoid hidden layers", ["1", "3"],
                            {"count": 5}, ["relu"], reference="Glorot & Bengio 2010"),
                    Finding("vanishing-gradient", "error", "gradient shrinks 1e6x", [EVIL, "10"],
                            {"ratio": 1e-6}, ["relu", "he-init"], step=0)],
                   "check", {"probe": {"layers": ["0", "2"], "grad_rms": [1e-7, 1e-1]}})
    watch = Report([Finding("non-finite", "error", "NaN gradient", [EVIL], {"steps": [10]}, step=10)],
                   "watch", {"meta": meta, "steps": steps})
    repair = Report([], "repair", {"changes": [{"remedy": "relu", "kind": "applied", "modules": ["1", "3"],
                                                "why": "sigmoid saturates", "details": {"old": "Sigmoid"}}]})
    return {"check (before)": check, "watch (before)": watch, "repair": repair}


@pytest.fixture(scope="module")
def page(reports):
    return html.render(reports, title="graddoctor <test>")


def test_self_contained_no_urls_and_csp(page):
    assert f'content="{html.CSP}"' in page
    assert not re.search(r"https?:", page.replace("https://evil.example", "")), "a URL besides the evil name"
    # no element may load anything: every src is a data: URL, every link an anchor in the page
    for attr in re.findall(r'\ssrc="([^"]*)"', page):
        assert attr.startswith("data:image/png;base64,"), attr[:40]
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    links = re.findall(r'\shref="([^"]*)"', page)
    assert len(links) == 5 and all(h.startswith("#") and h[1:] in ids for h in links), links


def test_names_are_escaped(page):
    assert EVIL not in page
    assert html.escape(EVIL) in page
    assert page.count("<script") == 1  # only the inline JSON data block
    assert "<title>graddoctor &lt;test&gt;</title>" in page


def test_findings_table_on_top_lists_every_finding(page, reports):
    table = page.index('id="findings-table"')
    assert table < page.index("<figure")
    codes = re.findall(r'<tr data-code="([a-z-]+)">', page)
    assert sorted(codes) == ["non-finite", "saturating-hidden-activation", "vanishing-gradient"]
    row = page[page.index('data-code="saturating-hidden-activation"'):]
    row = row[: row.index("</tr>")]
    for text in ("warning", "sigmoid hidden layers", "count=5", "relu", "Glorot &amp; Bengio 2010"):
        assert text in row


def test_figures_are_inline_pngs(page):
    names = re.findall(r'<figure data-figure="([a-z_]+)">', page)
    assert names == ["probe_profile", "loss_curve", "gradient_flow", "grad_heatmap", "update_ratio",
                     "activation_histograms", "dead_saturated"]
    for b64 in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        img = imread(io.BytesIO(base64.b64decode(b64)))
        assert img.shape[0] > 100 and img.std() > 0.05


def test_changes_table(page):
    assert '<table class="changes">' in page and "sigmoid saturates" in page and "old=Sigmoid" in page


def test_data_block_round_trips(page, reports):
    block = re.search(r'<script type="application/json" id="graddoctor-data">(.*?)</script>', page, re.S)
    data = json.loads(block.group(1))
    assert set(data) == set(reports)
    assert data["watch (before)"]["data"]["steps"][9]["loss"] == "nan"
    back = Report.from_dict(data["check (before)"])
    assert back.codes == reports["check (before)"].codes
    assert data["check (before)"]["findings"][0]["layers"][0] == EVIL  # the JSON keeps the real name


def test_no_findings_and_write(tmp_path):
    path = html.write(tmp_path / "sub" / "r.html", Report([], "check"), figures=False)
    text = path.read_text()
    assert "No findings." in text and "<figure" not in text


# ----------------------------------------------------------------------------- graddoctor report


def test_report_command_from_a_watch_run_and_result_json(tmp_path):
    import torch
    from click.testing import CliRunner

    import graddoctor as gd
    from graddoctor.cli import main
    from runfixtures import tiny_model, to_jsonl

    model = tiny_model(depth=8)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with gd.watch(model, optimizer=opt, log_dir=tmp_path / "run", example_inputs=x) as w:
        for _ in range(30):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    (tmp_path / "check.json").write_text(gd.check(model, x).to_json())
    (tmp_path / "repair.json").write_text(json.dumps({"changes": [{"remedy": "relu", "modules": ["1"],
                                                                   "why": "because", "kind": "applied"}]}))
    (tmp_path / "nan").mkdir()
    (tmp_path / "nan" / "watch.jsonl").write_text(to_jsonl(*record_run(nan_at=3, n_steps=6)))
    (tmp_path / "other.json").write_text("[1, 2]")  # not a report: ignored
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--out", str(tmp_path / "out.html")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out.html").read_text()
    titles = re.findall(r'<h2 id="section-\d+">(.*?)</h2>', page)
    assert titles == ["check", "watch: nan", "watch: run", "repair"]
    assert 'data-code="saturating-hidden-activation"' in page  # from check.json
    assert 'data-code="non-finite"' in page  # diagnosed from the NaN run log
    assert "report written to" in result.output


def test_report_command_errors(tmp_path):
    from click.testing import CliRunner

    from graddoctor.cli import main

    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "nothing to report" in result.output
    (tmp_path / "bad.json").write_text("{not json")
    result = CliRunner().invoke(main, ["report", str(tmp_path / "bad.json")])
    assert result.exit_code == 2 and "not valid JSON" in result.output
    result = CliRunner().invoke(main, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_report_command_reads_graddoctor_fix_output(tmp_path):
    from click.testing import CliRunner

    from graddoctor.cli import main

    before = Report([Finding("poor-init", "warning", "too small", ["0"])], "check")
    payload = {"factory": "m.py:f", "before": before.to_dict(), "after": Report([], "check").to_dict(),
               "changes": [{"remedy": "he-init", "modules": ["0"], "why": "scale", "kind": "applied"}],
               "plan": [], "seconds": 0.1}
    (tmp_path / "changes.json").write_text(json.dumps(payload))
    result = CliRunner().invoke(main, ["report", str(tmp_path / "changes.json")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "report.html").read_text()
    titles = re.findall(r'<h2 id="section-\d+">(.*?)</h2>', page)
    assert titles == ["check (before): changes", "repair: changes", "check (after): changes"]
    assert 'data-code="poor-init"' in page and "<code>he-init</code>" in page


def test_long_runs_are_thinned_in_the_embedded_data():
    steps = [{"type": "step", "step": i, "loss": 1.0, "grad_norm": {"0": 1.0}} for i in range(1, 2502)]
    report = Report([], "watch", {"meta": {"layers": [{"name": "0"}]}, "steps": steps})
    page = html.render(report, figures=False)
    block = re.search(r'<script type="application/json" id="graddoctor-data">(.*?)</script>', page, re.S)
    data = json.loads(block.group(1))["watch"]["data"]
    assert data["thinned"] == {"kept": 1251, "of": 2501, "every": 2}
    assert [s["step"] for s in data["steps"][:2]] == [1, 3] and data["steps"][-1]["step"] == 2501
    assert "1251 of 2501 steps" in page
    assert len(report.data["steps"]) == 2501  # the report itself is left whole


def test_a_repair_results_summary_counts_its_changes_as_the_page_does(reports):
    repair = next(r for r in reports.values() if r.source == "repair")
    n = len(repair.data["changes"])
    assert repair.summary() == f"graddoctor repair: {n} change(s)"  # not "no findings"


@pytest.mark.parametrize("where", ["a-file/r.html", "/proc/graddoctor-nope.html"])
def test_an_unwritable_path_is_one_line(tmp_path, where):
    from graddoctor.errors import InputError
    from graddoctor.present.html import write

    (tmp_path / "a-file").write_text("x")
    path = tmp_path / where if not where.startswith("/") else Path(where)
    if where.startswith("/proc") and not Path("/proc").is_dir():
        pytest.skip("no /proc on this system")
    with pytest.raises(InputError, match="cannot write the report to"):
        write(path, Report([], source="check"))
