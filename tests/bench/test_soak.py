"""The soak's arithmetic: windows, slopes, replication lag and the memory verdict."""

from __future__ import annotations

import math

import pytest

from bench.soak import Sample, Windows, memory_of, slope_per_minute, within


def _sample(t: float, rss: float, db: float = 0.0) -> Sample:
    return Sample(t, {"ex1": rss}, {"ex1": db}, {"ex1": 0.0}, {"ex1": {"ex1": 0}})


def test_windows_skip_the_warmup_and_compare_first_minute_with_last() -> None:
    windows = Windows.of(600)
    assert windows.first == (30, 90)
    assert windows.last == (540, 600)


def test_short_run_shrinks_windows_to_a_quarter_of_what_follows_the_warmup() -> None:
    windows = Windows.of(20)
    assert windows.first == (1, 5.75)
    assert windows.last == (15.25, 20)


def test_within_takes_the_half_open_span() -> None:
    points = [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert within(points, (1.0, 2.0)) == [2.0]


def test_slope_is_per_minute_and_undefined_below_three_points() -> None:
    assert slope_per_minute([(0, 100), (30, 101), (60, 102)]) == pytest.approx(2.0)
    assert math.isnan(slope_per_minute([(0, 1), (60, 2)]))
    assert math.isnan(slope_per_minute([(5, 1), (5, 2), (5, 3)]))


def test_lag_is_entries_behind_the_furthest_node_for_the_worst_origin() -> None:
    sample = Sample(
        0.0, {}, {}, {},
        {"ex1": {"ex1": 10, "ex2": 5}, "ex2": {"ex1": 8, "ex2": 5}, "ex3": {"ex1": 10}},
    )  # fmt: skip
    assert sample.lag() == {"ex1": 0, "ex2": 2, "ex3": 5}


def test_memory_is_judged_on_the_last_two_thirds_of_the_load_only() -> None:
    # A steep warm-up in the first third, then 1 MB/min while the database
    # grows 2 MB/min; the sample after the load (t > 600) is left out.
    samples = [_sample(t, 100 + t, 0) for t in range(0, 200, 10)]
    samples += [_sample(t, 300 + (t - 200) / 60, (t - 200) / 30) for t in range(200, 601, 10)]
    samples.append(_sample(700, 10_000, 0))
    verdict = memory_of(samples, "ex1", 600)
    assert verdict.rss_slope_mb_per_min == pytest.approx(1.0)
    assert verdict.database_slope_mb_per_min == pytest.approx(2.0)
    assert verdict.before_mb == 100
    assert verdict.peak_mb < 10_000
