"""Signed statements for the ``admission`` benchmark: registrations, patent records, offers.

The logic of ``tests/exchange/story.py``, copied rather than imported (the
benchmarks do not depend on the test suite's helpers): parties come from
the synthetic sample (:func:`exchange.sample.generate`), each registers
itself; the register authority records each patent, in force with its fees
paid, so that an open licence may be declared on it today; the owner then
publishes one open-licence offer per patent.

Nonces come from a seeded generator, so a run builds the same statements
apart from their creation time, which must be now (admission's replay window).
"""

from __future__ import annotations

import datetime as dt
import random

from google.protobuf.timestamp_pb2 import Timestamp

from exchange.rules import REGISTER
from exchange.sample import SampleParty
from exchange.statements import sign
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.note import Signer

CNY_20K = pb.RoyaltyTerms(lump_sum=pb.Money(amount_minor=2_000_000, currency="CNY"))


def today() -> dt.date:
    """Today in China, the day the rules judge by."""
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=8)).date()


def _date(day: dt.date) -> pb.Date:
    return pb.Date(year=day.year, month=day.month, day=day.day)


class StatementMaker:
    """Stamps statements with a nonce from ``rng`` and one creation time, and signs them."""

    def __init__(self, rng: random.Random, created_at: dt.datetime) -> None:
        """Draw nonces from ``rng``; date every statement ``created_at``."""
        self._rng = rng
        self._created = Timestamp()
        self._created.FromDatetime(created_at)

    def signed(self, statement: pb.Statement, *signers: SampleParty | Signer) -> pb.SignedStatement:
        """Stamp ``statement`` and sign it by each of ``signers`` (a Signer is the register)."""
        statement.nonce = self._rng.randbytes(16)
        statement.created_at.CopyFrom(self._created)
        data = statement.SerializeToString()
        signatures = [
            sign(data, REGISTER, key)
            if isinstance(key, Signer)
            else sign(data, key.party_id, key.key)
            for key in signers
        ]
        return pb.SignedStatement(statement=data, signatures=signatures)

    def registration(self, party: SampleParty) -> pb.SignedStatement:
        """``party`` registers itself."""
        return self.signed(pb.Statement(party_registered=party.registration), party)

    def record(
        self, patent: pb.PatentRecorded, owner: SampleParty, register: Signer
    ) -> pb.SignedStatement:
        """The register records ``patent`` as owned by ``owner``, in force with fees paid."""
        copy = pb.PatentRecorded()
        copy.CopyFrom(patent)
        copy.owners[:] = [owner.party_id]
        copy.status = pb.PATENT_STATUS_IN_FORCE
        if not copy.HasField("grant_date"):
            copy.grant_date.CopyFrom(copy.filing_date)
        copy.fees_paid_until.CopyFrom(_date(today() + dt.timedelta(days=3 * 365)))
        copy.expiry_date.CopyFrom(_date(today() + dt.timedelta(days=12 * 365)))
        return self.signed(pb.Statement(patent_recorded=copy), register)

    def offer(self, patent: pb.PatentRecorded, owner: SampleParty) -> pb.SignedStatement:
        """``owner`` declares an open licence of ``patent`` (one owner, hence one signature)."""
        body = pb.OfferPublished(
            application_number=patent.application_number, terms=CNY_20K,
            licence_term_months=24, evaluation_report="EVAL-2026-001",
            description=f"{patent.title}: 开放许可，条件对所有被许可人相同。",
        )  # fmt: skip
        return self.signed(pb.Statement(offer_published=body), owner)
