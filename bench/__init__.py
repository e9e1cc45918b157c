"""Benchmarks of the ledger, run as ``python -m bench`` (``make bench``).

The machine these run on is shared and noisy, so every figure is reported
next to a baseline measured in the same run (a bare insert, a bare point
query, a bare commit, pymerkle) and judged, where the issue sets a target,
on the ratio as well as on the absolute number. See :mod:`bench.__main__`.
"""
