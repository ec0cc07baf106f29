"""bench/compare.py and bench/report.py: a run written as Markdown is read back row by row, judged in
the right direction, and a large transfer more than 10% worse fails the comparison."""

from __future__ import annotations

from pathlib import Path

import compare
import pytest
import report
from report import DETAIL, HEADLINE, LARGE, Results

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results.md"


def _run(path: Path, title: str, *, upload_ratio: str, retrieves: str, p50: str) -> Path:
    results = Results()
    results.add(LARGE, "Upload 256 MiB, MB/s (median of 3)", "openai", direct="960", gateway="1", ratio=upload_ratio)
    results.add(HEADLINE, "Retrieves at concurrency 16, req/s", "openai", direct="9,899", gateway=retrieves)
    results.add(DETAIL, "Retrieve p50 at concurrency 16, ms", "openai", direct="1.00", gateway=p50)
    path.write_text(report.render(results, title=title, header=["- Date: today"], method=[]))
    return path


def test_it_reads_back_the_rows_a_run_renders(tmp_path: Path) -> None:
    results = Results()
    results.add(
        HEADLINE,
        "List of an organisation's 1,000 files, p50 ms",
        "openai",
        direct="4.40",
        gateway="29.30 (31.00)",
        ratio="6.66x",
        target="<= 2x direct",
        met=False,
    )
    path = tmp_path / "run.md"
    path.write_text(report.render(results, title="After: a run", header=[], method=["How."]))

    (run,) = report.read_runs(path)

    row = run.rows[("List of an organisation's 1,000 files, p50 ms", "openai")]
    assert (row.section, row.direct, row.gateway, row.ratio, row.met) == (
        HEADLINE,
        "4.40",
        "29.30 (31.00)",
        "6.66x",
        False,
    )
    assert report.number(row.gateway) == 29.3
    assert report.number("9,899") == 9899


def test_it_judges_rates_higher_and_latencies_lower_as_better(tmp_path: Path) -> None:
    old = report.read_runs(_run(tmp_path / "a.md", "A", upload_ratio="0.80x", retrieves="875", p50="10.00"))[0]
    new = report.read_runs(_run(tmp_path / "b.md", "B", upload_ratio="0.80x", retrieves="1,750", p50="20.00"))[0]

    lines, regressions = compare.compare(old, new)

    verdicts = {line[0]: line[-1] for line in lines}
    assert verdicts["Retrieves at concurrency 16, req/s"] == "+100% better"
    assert verdicts["Retrieve p50 at concurrency 16, ms"] == "-100% worse"
    assert regressions == []


@pytest.mark.parametrize(("after", "is_regression"), [("0.70x", True), ("0.75x", False), ("0.90x", False)])
def test_a_large_transfer_more_than_10_percent_worse_fails(tmp_path: Path, after: str, is_regression: bool) -> None:
    old = _run(tmp_path / "a.md", "A", upload_ratio="0.80x", retrieves="875", p50="1.00")
    new = _run(tmp_path / "b.md", "B", upload_ratio=after, retrieves="875", p50="1.00")

    _, regressions = compare.compare(report.read_runs(old)[0], report.read_runs(new)[0])

    assert bool(regressions) is is_regression


def test_a_full_run_replaces_only_the_after_part(tmp_path: Path) -> None:
    path = tmp_path / "results.md"
    path.write_text(
        f"# Benchmark results\n\n## Before\n\nfixed figures\n\n{report.AFTER_MARKER}\n\n## After\n\nold run\n"
    )

    report.write(path, "## After: new run\n", keep_before=True)

    text = path.read_text()
    assert "fixed figures" in text
    assert "old run" not in text
    assert text.endswith(f"{report.AFTER_MARKER}\n\n## After: new run\n")
    path.write_text("no marker here\n")
    with pytest.raises(ValueError, match="before part"):
        report.write(path, "## After\n", keep_before=True)


def test_the_results_file_keeps_issue_14s_figures_as_its_before_run() -> None:
    before = report.read_runs(RESULTS)[0]

    assert before.title.startswith("Before")
    assert before.rows[("Retrieve p50 at concurrency 1, ms", "openai")].gateway == "3.19"
    assert before.rows[("Retrieves at concurrency 16, req/s", "openai")].gateway == "875"
    assert before.rows[("Small uploads at concurrency 16 (1,000 files of 4 KiB), files/s", "openai")].gateway == "107"
    assert before.rows[("List of an organisation's 1,000 files, p50 ms", "openai")].gateway == "29.30"
    assert before.rows[("Gateway CPU per GET, ms (retrieves at concurrency 16)", "openai")].gateway == "1.780"
    assert report.AFTER_MARKER in RESULTS.read_text()


def test_memory_is_judged_by_its_target_not_by_percent(tmp_path: Path) -> None:
    def run(name: str, growth: str, met: bool) -> report.Run:
        results = Results()
        results.add(
            LARGE,
            "Peak RSS growth, one 256 MiB upload, MiB (worst of 3)",
            "openai",
            direct="0.6",
            gateway=growth,
            target="<= 32 MiB",
            met=met,
        )
        path = tmp_path / f"{name}.md"
        path.write_text(report.render(results, title=name, header=[], method=[]))
        return report.read_runs(path)[0]

    _, more_but_within = compare.compare(run("a", "3.0", True), run("b", "4.0", True))
    _, past_the_target = compare.compare(run("a", "3.0", True), run("c", "40.0", False))

    assert more_but_within == []
    assert len(past_the_target) == 1
