"""``python -m bench``: run the benchmarks, print a table, write ``bench/report.json``.

Usage::

    python -m bench                 # everything, full sizes (about 25 minutes)
    python -m bench --quick         # small sizes: a smoke test of the suite
    python -m bench --only proofs   # one benchmark (repeatable)
    python -m bench --profile       # also write cProfile output to bench/out/
    python -m bench --only federation --size federation_rate=200   # resize one figure

Benchmarks (see each module): ``append`` (:mod:`bench.append`), ``pymerkle``
(:mod:`bench.pymerkle_compare`), ``proofs`` (:mod:`bench.proofs`),
``latency`` (:mod:`bench.latency`), ``admission`` (:mod:`bench.admission`),
``views`` (:mod:`bench.views`), ``federation`` (:mod:`bench.federation`),
``audit`` (:mod:`bench.audit`) and ``soak`` (:mod:`bench.soak`). Each runs
in an event loop of its own, and an error in one is reported without
stopping the others.

A complete run at full size (every benchmark; no ``--quick``, ``--size`` or
``--profile``) also writes the one-page summary ``bench/results.md``
(:mod:`bench.results`), with the charts the benchmarks drew copied next to
it; ``--results PATH`` writes that page for any run.

Exit status: 0 if every target is met, 1 if one is missed or a benchmark
failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import io
import json
import pstats
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    admission,
    append,
    audit,
    federation,
    latency,
    machine,
    proofs,
    pymerkle_compare,
    soak,
    views,
)
from bench.common import Context, Figure, Outcome, Sizes, format_number
from bench.results import render as render_results

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_FILE = BENCH_DIR / "results.md"
BENCHMARKS: dict[str, Callable[[Context], Coroutine[Any, Any, Outcome]]] = {
    "append": append.run,
    "pymerkle": pymerkle_compare.run,
    "proofs": proofs.run,
    "latency": latency.run,
    "admission": admission.run,
    "views": views.run,
    "federation": federation.run,
    "audit": audit.run,
    "soak": soak.run,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark the Kaifang ledger."
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, for a smoke test (about a minute)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--seed", type=int, default=6962, help="seed of data and requests")
    parser.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one of the sizes (bench.common.Sizes), after --quick (repeatable)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run each benchmark under cProfile; write OUT/NAME.prof and OUT/NAME.profile.txt "
        "(the figures are then slower than without)",
    )
    parser.add_argument(
        "--report", type=Path, default=BENCH_DIR / "report.json", help="where to write the report"
    )
    parser.add_argument(
        "--out", type=Path, default=BENCH_DIR / "out", help="where to write plots and samples"
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="write the Markdown summary here even for a partial run (a complete full-size "
        f"run writes {RESULTS_FILE.relative_to(BENCH_DIR.parent)})",
    )
    args = parser.parse_args(argv)
    try:
        args.sizes = apply_sizes(Sizes.quick() if args.quick else Sizes(), args.size)
    except ValueError as e:
        parser.error(str(e))
    return args


def apply_sizes(sizes: Sizes, overrides: Sequence[str]) -> Sizes:
    """``sizes`` with each ``NAME=VALUE`` of ``overrides`` set, the value of the field's type.

    Raises ``ValueError`` for an unknown name or a value of the wrong type.
    """
    changes: dict[str, Any] = {}
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or key not in {f.name for f in dataclasses.fields(sizes)}:
            raise ValueError(f"--size {override!r}: not NAME=VALUE with NAME one of the sizes")
        kind = type(getattr(sizes, key))
        try:
            changes[key] = kind(value)
        except ValueError:
            raise ValueError(f"--size {override!r}: not a {kind.__name__}") from None
    return dataclasses.replace(sizes, **changes)


def _value(figure: Figure) -> str:
    return f"{format_number(figure.value)} {figure.unit}"


def _verdict(figure: Figure) -> str:
    return {True: "PASS", False: "FAIL", None: "-"}[figure.passed]


def render_table(results: dict[str, dict[str, Any]], figures: dict[str, list[Figure]]) -> str:
    """The plain-text table of every figure: value, baseline, ratio, targets, verdict."""
    header = ("figure", "value", "baseline", "ratio", "target", "result")
    rows: list[tuple[str, ...]] = []
    for name, result in results.items():
        if result["error"] is not None:
            rows.append(
                (f"{name}: ERROR", result["error"].splitlines()[0][:60], "", "", "", "FAIL")
            )
            continue
        for figure in figures[name]:
            baseline = "" if figure.baseline is None else _value_of(figure.baseline, figure.unit)
            ratio = "" if figure.ratio is None else _ratio(figure.ratio)
            targets = "; ".join(t.describe(figure.unit) for t in figure.targets) or "-"
            rows.append((figure.label, _value(figure), baseline, ratio, targets, _verdict(figure)))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    right = {1, 2, 3}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def _ratio(ratio: float) -> str:
    # Two decimals, but a ratio far below 1 keeps two significant digits
    # rather than printing as 0.00.
    return f"{ratio:.2f}" if ratio >= 0.01 else f"{ratio:.2g}"


def _value_of(x: float, unit: str) -> str:
    return f"{format_number(x)} {unit}"


def render_baselines(figures: dict[str, list[Figure]]) -> str:
    """What each figure's baseline is, one line per figure that has one."""
    return "\n".join(
        f"  {figure.key}: {figure.baseline_label}"
        for group in figures.values()
        for figure in group
        if figure.baseline_label
    )


def results_path(args: argparse.Namespace) -> Path | None:
    """Where to write the summary: ``--results``, else results.md after a complete full run.

    A partial, quick, resized or profiled run leaves the committed page alone:
    it describes one whole ``make bench``.
    """
    if args.results is not None:
        return Path(args.results)
    complete = not (args.only or args.quick or args.size or args.profile)
    return RESULTS_FILE if complete else None


def write_results(report: dict[str, Any], path: Path) -> list[Path]:
    """Write the summary of ``report`` to ``path``, charts copied beside it; return the charts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    charts = []
    for result in report["benchmarks"].values():
        for chart in (result.get("info") or {}).get("charts", []):
            source = Path(chart)
            if source.exists():
                target = path.parent / source.name
                if source.resolve() != target.resolve():
                    shutil.copyfile(source, target)
                charts.append(target)
    path.write_text(render_results(report, [c.name for c in charts]))
    return charts


def save_profile(profiler: cProfile.Profile, out_dir: Path, name: str) -> None:
    """Write the raw profile and its 40 most expensive functions (own time) next to it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(out_dir / f"{name}.prof")
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(40)
    (out_dir / f"{name}.profile.txt").write_text(text.getvalue())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks; print the table; write the report; return the exit status."""
    args = parse_args(argv)
    sizes: Sizes = args.sizes
    ctx = Context(sizes=sizes, seed=args.seed, out_dir=args.out, quick=args.quick)
    selected = args.only or list(BENCHMARKS)
    started = datetime.now(UTC)
    facts = machine.describe()
    results: dict[str, dict[str, Any]] = {}
    figures: dict[str, list[Figure]] = {}
    for name in selected:
        ctx.log(name, "starting")
        start = time.perf_counter()
        error = None
        outcome = Outcome()
        profiler = cProfile.Profile() if args.profile else None
        try:
            if profiler is not None:
                profiler.enable()
            outcome = asyncio.run(BENCHMARKS[name](ctx))
        except Exception as e:
            error = f"{type(e).__name__}: {e}"
            print(f"\n!!! benchmark {name} FAILED: {error}", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
        finally:
            if profiler is not None:
                profiler.disable()
                save_profile(profiler, args.out, name)
        elapsed = time.perf_counter() - start
        ctx.log(name, f"done in {elapsed:.1f} s")
        figures[name] = outcome.figures
        results[name] = {
            "seconds": elapsed,
            "error": error,
            "figures": [f.to_json() for f in outcome.figures],
            "info": outcome.info,
            "notes": outcome.notes,
        }
    facts["load_average_at_end"] = machine.load_average()
    all_figures = [f for group in figures.values() for f in group]
    failed = [f.key for f in all_figures if f.passed is False]
    errors = [name for name, r in results.items() if r["error"] is not None]
    report = {
        "started": started.isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "profiled": args.profile,
        "seed": args.seed,
        "sizes": vars(sizes),
        "machine": facts,
        "benchmarks": results,
        "summary": {
            "targets_met": sum(1 for f in all_figures if f.passed is True),
            "targets_missed": failed,
            "errors": errors,
            "passed": not failed and not errors,
        },
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")

    print()
    print(f"Kaifang ledger benchmarks ({report['mode']}), {started:%Y-%m-%d %H:%M} UTC")
    print(
        f"{facts['cpu_model']}, {facts['cores']} cores, "
        f"{(facts['memory_bytes'] or 0) / 2**30:.1f} GiB; {facts['python']}; "
        f"SQLite {facts['sqlite']}; {facts['postgresql'] or 'no PostgreSQL'}; "
        f"load {facts['load_average_at_start']} -> {facts['load_average_at_end']}"
    )
    print()
    print(render_table(results, figures))
    print()
    print("ratio = value / baseline, both measured in this run. Baselines:")
    print(render_baselines(figures))
    for name, result in results.items():
        for note in result["notes"]:
            print(f"note ({name}): {note}")
    print()
    verdict = "all targets met" if report["summary"]["passed"] else "TARGETS MISSED"
    if failed:
        verdict += f": {', '.join(failed)}"
    if errors:
        verdict += f"; benchmarks failed: {', '.join(errors)}"
    print(f"{verdict}. Report: {args.report}")
    summary = results_path(args)
    if summary is not None:
        write_results(report, summary)
        print(f"Summary: {summary}")
    else:
        print(f"{RESULTS_FILE.name} not updated: not a complete full-size run (--results PATH "
              "writes one anyway)")  # fmt: skip
    return 0 if report["summary"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
