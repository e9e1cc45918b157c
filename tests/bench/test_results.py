"""The summary page ``bench/results.md``: rendered from a report, written only after full runs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.__main__ import RESULTS_FILE, parse_args, results_path, write_results
from bench.common import Figure, Target
from bench.results import render

MACHINE = {
    "cpu_model": "AMD EPYC",
    "cores": 2,
    "cores_usable": 2,
    "memory_bytes": 24 * 2**30,
    "kernel": "Linux 6.1",
    "python": "CPython 3.11.7",
    "sqlite": "3.40.1",
    "postgresql": None,
    "git_commit": "0123456789abcdef0123",
    "git_dirty": True,
    "load_average_at_start": [0.5, 0.4, 0.3],
    "load_average_at_end": [1.5, 1.0, 0.5],
}


def _report() -> dict[str, Any]:
    append = [
        Figure("append.sqlite", "append, SQLite", 12_000.0, "entries/s", 24_000.0,
               "bare INSERT of the same bytes", (Target(">=", 0.4, on="ratio"),)),
        Figure("append.note", "tree height", 17.0, "levels"),
    ]  # fmt: skip
    soak = [
        Figure("soak.memory.ex1", "ex1 RSS | growth", 9.0, "MB/min", 3.0, "database growth",
               (Target("<=", 2.0, on="ratio"),)),
        Figure("soak.lag", "lag, last minute", math.nan, "entries", 0.0, "first minute"),
    ]  # fmt: skip
    return {
        "started": "2026-11-27T17:14:53+00:00",
        "mode": "full",
        "profiled": False,
        "machine": MACHINE,
        "benchmarks": {
            "append": {
                "seconds": 12.0,
                "error": None,
                "info": {},
                "figures": [f.to_json() for f in append],
            },
            "views": {
                "seconds": 3.0,
                "error": "BenchError: root mismatch\nTraceback",
                "info": {},
                "figures": [],
            },
            "soak": {
                "seconds": 650.0,
                "error": None,
                "info": {},
                "figures": [f.to_json() for f in soak],
            },
        },
        "summary": {
            "targets_met": 1,
            "targets_missed": ["soak.memory.ex1"],
            "errors": ["views"],
            "passed": False,
        },
    }


def _table(text: str) -> list[list[str]]:
    """The rows of the page's table, header and alignment row included, as cells."""
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in rows]


def test_every_figure_is_a_row_with_value_baseline_ratio_and_verdict() -> None:
    rows = _table(render(_report()))
    by_figure = {row[1]: row for row in rows[2:]}
    assert by_figure["append, SQLite"][2:] == [
        "12,000 entries/s", "24,000 entries/s", "0.50", "ratio >= 0.4", "PASS"
    ]  # fmt: skip
    assert by_figure["ex1 RSS \\| growth"][4:] == ["3.00", "ratio <= 2", "**MISSED**"]


def test_figure_without_baseline_or_target_shows_dashes() -> None:
    rows = {row[1]: row for row in _table(render(_report()))[2:]}
    assert rows["tree height"][2:] == ["17.0 levels", "-", "-", "-", "-"]
    # A value that could not be measured is a dash, not "nan".
    assert rows["lag, last minute"][2] == "-"


def test_rows_are_grouped_under_their_benchmark_in_run_order() -> None:
    rows = _table(render(_report()))[2:]
    groups = [row[0] for row in rows]
    assert groups == ["**append** (12 s)", "", "**views** (3 s)", "**soak** (650 s)", ""]


def test_failed_benchmark_gets_one_row_with_the_first_line_of_its_error() -> None:
    rows = {row[0]: row for row in _table(render(_report()))[2:]}
    failed = rows["**views** (3 s)"]
    assert failed[1] == "failed: BenchError: root mismatch"
    assert failed[-1] == "**FAILED**"


def test_pipe_in_a_label_does_not_add_a_column() -> None:
    rows = _table(render(_report()))
    assert {len(row) for row in rows} == {7}


def test_page_states_date_machine_commit_and_summary() -> None:
    text = render(_report())
    assert (
        "Run of 2026-11-27 17:14:53 UTC, full sizes; commit 0123456789ab, with uncommitted" in text
    )
    assert "Machine: AMD EPYC, 2 cores, 24.0 GiB; Linux 6.1; CPython 3.11.7; SQLite 3.40.1" in text
    assert "no PostgreSQL; load [0.5, 0.4, 0.3] -> [1.5, 1.0, 0.5]." in text
    assert "1 targets met; 1 missed (soak.memory.ex1); benchmarks failed: views." in text
    assert "- `append.sqlite`: bare INSERT of the same bytes" in text


def test_charts_are_linked_by_relative_name() -> None:
    text = render(_report(), ["soak.png"])
    assert text.rstrip().endswith("![soak](soak.png)")
    assert "## Charts" not in render(_report())


def test_only_a_complete_full_size_run_rewrites_results_md(tmp_path: Path) -> None:
    assert results_path(parse_args([])) == RESULTS_FILE
    for partial in (["--quick"], ["--only", "soak"], ["--size", "soak_seconds=60"],
                    ["--profile"]):  # fmt: skip
        assert results_path(parse_args(partial)) is None
    chosen = tmp_path / "page.md"
    assert results_path(parse_args(["--only", "soak", "--results", str(chosen)])) == chosen


def test_write_results_copies_charts_beside_the_page(tmp_path: Path) -> None:
    chart = tmp_path / "out" / "soak.png"
    chart.parent.mkdir()
    chart.write_bytes(b"\x89PNG")
    report = _report()
    report["benchmarks"]["soak"]["info"]["charts"] = [str(chart), str(tmp_path / "gone.png")]
    page = tmp_path / "page" / "results.md"
    copied = write_results(report, page)
    assert copied == [page.parent / "soak.png"]
    assert (page.parent / "soak.png").read_bytes() == b"\x89PNG"
    assert "![soak](soak.png)" in page.read_text()
    assert str(tmp_path) not in page.read_text()  # the page names no machine path
