"""The one-page summary of a benchmark run, ``bench/results.md``, made from its report.

:func:`render` is pure: it takes the report that ``python -m bench`` writes
(``bench/report.json``, already parsed) and returns Markdown: the date, the
machine, then one table of every figure of every benchmark, grouped by
benchmark, each with its value, the baseline measured in the same run, their
ratio, the target and whether it was met; a benchmark that failed gets one
row saying why. What each baseline is follows the table, then any charts.

The runner writes ``bench/results.md`` after a complete run at full size
(every benchmark, no ``--quick``, no ``--size``, no ``--profile``), so that
the committed page always describes one whole ``make bench``; ``--results
PATH`` writes one for any run. ``python -m bench.results [REPORT] [-o OUT]``
renders a report already written.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.common import format_number

TITLE = "# Kaifang benchmark results"
_VERDICT = {True: "PASS", False: "**MISSED**", None: "-"}


def _cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell (one line, no column breaks)."""
    return " ".join(text.split()).replace("|", "\\|")


def _quantity(x: float | None, unit: str) -> str:
    if x is None or x != x:  # nan: a figure that could not be measured
        return "-"
    return f"{format_number(x)} {unit}"


def _ratio(ratio: float | None) -> str:
    if ratio is None or ratio != ratio:
        return "-"
    # As the runner prints it: two decimals, two significant digits below 0.01.
    return f"{ratio:.2f}" if abs(ratio) >= 0.01 or ratio == 0 else f"{ratio:.2g}"


def machine_line(facts: Mapping[str, Any]) -> str:
    """One line about the machine and the software, as the runner prints it."""
    memory = (facts.get("memory_bytes") or 0) / 2**30
    cores = f"{facts.get('cores')} cores"
    usable = facts.get("cores_usable")
    if usable is not None and usable != facts.get("cores"):
        cores += f" ({usable} usable)"
    load = f"load {facts.get('load_average_at_start')} -> {facts.get('load_average_at_end')}"
    return (
        f"{facts.get('cpu_model') or 'unknown CPU'}, {cores}, {memory:.1f} GiB; "
        f"{facts.get('kernel') or 'unknown kernel'}; {facts.get('python')}; "
        f"SQLite {facts.get('sqlite')}; {facts.get('postgresql') or 'no PostgreSQL'}; {load}"
    )


def _source_line(report: Mapping[str, Any]) -> str:
    facts = report.get("machine", {})
    commit = (facts.get("git_commit") or "")[:12] or "unknown commit"
    dirty = facts.get("git_dirty")
    tree = {True: ", with uncommitted changes", False: "", None: ""}[dirty]
    when = str(report.get("started", "?")).replace("T", " ").replace("+00:00", " UTC")
    mode = report.get("mode", "?")
    profiled = "; profiled (slower than unprofiled)" if report.get("profiled") else ""
    return f"Run of {when}, {mode} sizes{profiled}; commit {commit}{tree}."


def _rows(report: Mapping[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for name, result in report.get("benchmarks", {}).items():
        group = f"**{name}** ({result.get('seconds', 0):.0f} s)"
        if result.get("error"):
            first = str(result["error"]).splitlines()[0] if result["error"] else ""
            rows.append((group, f"failed: {_cell(first)}", "-", "-", "-", "-", "**FAILED**"))
            continue
        figures = result.get("figures", [])
        if not figures:
            rows.append((group, "no figures", "-", "-", "-", "-", "-"))
            continue
        for i, figure in enumerate(figures):
            unit = figure.get("unit", "")
            targets = "; ".join(t.get("text", "") for t in figure.get("targets", [])) or "-"
            rows.append((
                group if i == 0 else "",
                _cell(figure.get("label", figure.get("key", "?"))),
                _quantity(figure.get("value"), unit),
                _quantity(figure.get("baseline"), unit),
                _ratio(figure.get("ratio")),
                _cell(targets),
                _VERDICT[figure.get("passed")],
            ))  # fmt: skip
    return rows


def _summary(report: Mapping[str, Any]) -> str:
    summary = report.get("summary", {})
    missed = summary.get("targets_missed", [])
    errors = summary.get("errors", [])
    parts = [f"{summary.get('targets_met', 0)} targets met"]
    parts.append(f"{len(missed)} missed" + (f" ({', '.join(missed)})" if missed else ""))
    if errors:
        parts.append(f"benchmarks failed: {', '.join(errors)}")
    return "; ".join(parts) + "."


def render(report: Mapping[str, Any], charts: Sequence[str] = ()) -> str:
    """The Markdown summary of ``report``; ``charts`` are image paths relative to the page.

    Requires a report as ``python -m bench`` writes it; missing facts show as
    ``-`` or ``unknown`` rather than failing.
    """
    header = ("benchmark", "figure", "value", "baseline", "ratio", "target", "result")
    align = ("---", "---", "---:", "---:", "---:", "---", "---")
    table = [header, align, *_rows(report)]
    lines = [
        TITLE,
        "",
        _source_line(report),
        "",
        f"Machine: {_cell(machine_line(report.get('machine', {})))}.",
        "",
        "Every figure is compared with a baseline measured in the same run, on the same "
        "machine (ratio = value / baseline), since the machine is shared and absolute "
        "numbers move with its load.",
        "",
        *("| " + " | ".join(row) + " |" for row in table),
        "",
        _summary(report),
    ]
    baselines = [
        f"- `{figure['key']}`: {_cell(figure['baseline_label'])}"
        for result in report.get("benchmarks", {}).values()
        for figure in result.get("figures", [])
        if figure.get("baseline_label")
    ]
    if baselines:
        lines += ["", "## Baselines", "", *baselines]
    if charts:
        lines += ["", "## Charts", ""]
        lines += [f"![{Path(chart).stem}]({chart})" for chart in charts]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.results``: render a report already written."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.results", description="Render a benchmark report as Markdown."
    )
    here = Path(__file__).resolve().parent
    parser.add_argument("report", nargs="?", type=Path, default=here / "report.json")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    text = render(json.loads(args.report.read_text()))
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
