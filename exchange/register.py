"""The register authority's feed: patents as CSV, and the signed statements made from them.

The national patent register feeds every node with ``PatentRecorded``
statements signed by its key (the signer name ``register``). This module
turns a CSV export into such statements and signs them; the ``kaifang
register`` command wraps it. Pure: text and values in, messages out.

CSV columns (a header row, UTF-8, dates as YYYY-MM-DD, lists separated by
``;``): ``application_number, title, ipc, owners, filing_date, grant_date,
expiry_date, status, fees_paid_until, region``. ``status`` is a
``PatentStatus`` name without its prefix (``IN_FORCE``, ``PENDING``, …).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Callable, Iterable

from exchange.errors import InvalidFieldError
from exchange.rules import REGISTER
from exchange.statements import check_structure, sign
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.note import Signer

COLUMNS = (
    "application_number",
    "title",
    "ipc",
    "owners",
    "filing_date",
    "grant_date",
    "expiry_date",
    "status",
    "fees_paid_until",
    "region",
)
_DATES = ("filing_date", "grant_date", "expiry_date", "fees_paid_until")
_STATUS_PREFIX = "PATENT_STATUS_"


def _iso(day: pb.Date) -> str:
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"


def patents_to_csv(patents: Iterable[pb.PatentRecorded]) -> str:
    """Write patents as the register's CSV."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for p in patents:
        writer.writerow(
            [
                p.application_number,
                p.title,
                ";".join(p.ipc),
                ";".join(p.owners),
                _iso(p.filing_date) if p.HasField("filing_date") else "",
                _iso(p.grant_date) if p.HasField("grant_date") else "",
                _iso(p.expiry_date) if p.HasField("expiry_date") else "",
                pb.PatentStatus.Name(p.status).removeprefix(_STATUS_PREFIX),
                _iso(p.fees_paid_until) if p.HasField("fees_paid_until") else "",
                p.region,
            ]
        )
    return out.getvalue()


def patents_from_csv(text: str) -> list[pb.PatentRecorded]:
    """Read the register's CSV; raise :class:`InvalidFieldError` naming the row and column."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or tuple(reader.fieldnames) != COLUMNS:
        raise InvalidFieldError("header", f"expected the columns {', '.join(COLUMNS)}")
    patents = []
    for number, row in enumerate(reader, start=2):  # row 1 is the header
        patent = pb.PatentRecorded(
            application_number=row["application_number"],
            title=row["title"],
            ipc=[s for s in row["ipc"].split(";") if s],
            owners=[s for s in row["owners"].split(";") if s],
            region=row["region"],
        )
        for name in _DATES:
            if row[name]:
                try:
                    day = dt.date.fromisoformat(row[name])
                except ValueError as e:
                    raise InvalidFieldError(
                        f"row {number}: {name}", f"{row[name]!r} is not a date"
                    ) from e
                getattr(patent, name).CopyFrom(pb.Date(year=day.year, month=day.month, day=day.day))
        try:
            patent.status = pb.PatentStatus.Value(_STATUS_PREFIX + row["status"])
        except ValueError as e:
            raise InvalidFieldError(f"row {number}: status", f"{row['status']!r} is unknown") from e
        patents.append(patent)
    return patents


def sign_patents(
    patents: Iterable[pb.PatentRecorded],
    key: Signer,
    now: dt.datetime,
    nonce: Callable[[], bytes] = lambda: os.urandom(16),
) -> list[pb.SignedStatement]:
    """Make a signed ``PatentRecorded`` statement of each patent, checked before signing.

    Raises :class:`InvalidFieldError` (naming the patent) for a record that
    admission would refuse as malformed.
    """
    signed = []
    for patent in patents:
        statement = pb.Statement(nonce=nonce(), patent_recorded=patent)
        statement.created_at.FromDatetime(now)
        try:
            check_structure(statement)
        except InvalidFieldError as e:
            raise InvalidFieldError(f"{patent.application_number}: {e.field}", e.reason) from e
        data = statement.SerializeToString()
        signed.append(pb.SignedStatement(statement=data, signatures=[sign(data, REGISTER, key)]))
    return signed
