"""The node's Prometheus metrics: what an operator graphs and alerts on.

Metrics live in one registry per process (``prometheus_client``'s default),
so that the node's HTTP endpoint exports exactly these. Names follow the
Prometheus conventions: a ``kaifang_`` prefix, base units, ``_total`` for
counters.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ADMISSIONS = Counter(
    "kaifang_admissions_total",
    "Statements submitted to this node, by statement kind and outcome "
    "(admitted, duplicate, or the rejection's reason code).",
    ["kind", "outcome"],
)
SEQUENCING_SECONDS = Histogram(
    "kaifang_sequencing_seconds",
    "Time from a statement's arrival in the admission queue to its durable, "
    "signed sequencing (seconds).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_SIZE = Histogram(
    "kaifang_admission_batch_size",
    "Statements admitted per ledger transaction (one commit, one signed checkpoint).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
LEDGER_SIZE = Gauge(
    "kaifang_ledger_size",
    "Entries in a log as of its latest signed checkpoint, by log origin.",
    ["origin"],
)
REPLICATED = Counter(
    "kaifang_replicated_entries_total",
    "Entries of other exchanges' logs replicated into this node, verified against "
    "their signed checkpoints, by log origin.",
    ["origin"],
)
REPLICATION_REFUSED = Counter(
    "kaifang_replication_refused_total",
    "Batches of entries refused because their checkpoint or proof did not verify "
    "(an altering, dropping or reordering relay), by log origin and serving peer.",
    ["origin", "peer"],
)
FORK_EVIDENCE = Counter(
    "kaifang_fork_evidence_total",
    "Pieces of fork evidence found: two checkpoints signed by one origin that cannot "
    "both be true. Alert on any increase: the origin has stopped being applied.",
    ["origin"],
)
