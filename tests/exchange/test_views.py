"""Admission over the real views, on both engines: admit, link, append to the ledger, apply.

The same open-licence story as the in-memory tests, but every state read by
admission comes from the database, every accepted statement becomes a ledger
entry with its ``previous`` link, and rebuilding the views from the log gives
back exactly the same views.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, select

from exchange.admission import admit
from exchange.errors import RuleViolationError, ViewOrderError
from exchange.rules import REGISTER
from exchange.sample import generate
from exchange.statements import sign
from exchange.views import DbWorld, apply_entry, build_entry, clear
from exchange.viewstore import VIEW_TABLES
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.db import Database
from ledger.note import Signer
from ledger.store import LogStore
from tests.conftest import ORIGIN

NOW = dt.datetime(2026, 11, 27, 4, 0, tzinfo=dt.UTC)
REGISTER_KEY = Ed25519PrivateKey.generate()
OPERATOR_KEY = Ed25519PrivateKey.generate()


@dataclass
class Node:
    """Just enough of an exchange node: views, a ledger, the keys."""

    db: Database
    store: LogStore
    signer: Signer

    def world(self, conn: Connection) -> DbWorld:
        return DbWorld(
            conn,
            REGISTER_KEY.public_key().public_bytes_raw(),
            {ORIGIN: OPERATOR_KEY.public_key().public_bytes_raw()},
        )

    async def submit(self, signed: pb.SignedStatement) -> tuple[bytes, int]:
        admitted = await self.db.read(lambda c: admit(signed, self.world(c), NOW))
        entry = await self.db.read(
            lambda c: build_entry(ORIGIN, NOW, signed, admitted, self.world(c))
        )
        (index,), _ = await self.store.sequence([entry], self.signer)
        await self.db.write(lambda c: _apply_one(self.world(c), index, entry))
        return admitted.statement_id, index

    async def snapshot(self) -> list[object]:
        def read(conn: Connection) -> list[object]:
            rows: list[object] = []
            for table in VIEW_TABLES:
                rows += [(table.name, *r) for r in conn.execute(select(table)).all()]
            return sorted(rows, key=repr)

        return await self.db.read(read)


def _apply(node: Node, index: int, data: bytes, conn: Connection) -> None:
    _apply_one(node.world(conn), index, data)


def _apply_one(world: DbWorld, index: int, data: bytes) -> None:
    apply_entry(world, ORIGIN, index, data)
    world.flush()  # the cursor is written at the end of the transaction


def signed(statement: pb.Statement, *signers: tuple[str, Ed25519PrivateKey]) -> pb.SignedStatement:
    statement.nonce = statement.nonce or b"n" * 16
    statement.created_at.FromDatetime(NOW)
    data = statement.SerializeToString()
    return pb.SignedStatement(statement=data, signatures=[sign(data, n, k) for n, k in signers])


@pytest.fixture
async def node(db: Database, signer: Signer) -> Node:
    store = await LogStore.create(db, ORIGIN, signer.verifier_key())
    return Node(db, store, signer)


async def test_open_licence_story_over_the_views_and_a_rebuild_gives_the_same_views(
    node: Node,
) -> None:
    sample = generate(11, parties=3, patents=1)
    owner_party, licensee, third = sample.parties
    for party in sample.parties:
        await node.submit(
            signed(pb.Statement(party_registered=party.registration), (party.party_id, party.key))
        )
    patent = pb.PatentRecorded()
    patent.CopyFrom(sample.patents[0])
    patent.owners[:] = [owner_party.party_id]
    patent.fees_paid_until.CopyFrom(pb.Date(year=2030, month=1, day=1))
    record_id, record_index = await node.submit(
        signed(pb.Statement(patent_recorded=patent), (REGISTER, REGISTER_KEY))
    )
    terms = pb.RoyaltyTerms(lump_sum=pb.Money(amount_minor=100_000, currency="CNY"))
    offer = pb.OfferPublished(
        application_number=patent.application_number, terms=terms, licence_term_months=12,
        evaluation_report="EVAL-1",
    )  # fmt: skip
    offer_id, offer_index = await node.submit(
        signed(pb.Statement(offer_published=offer), (owner_party.party_id, owner_party.key))
    )
    payment = pb.Payment(
        amount=terms.lump_sum, reference="TX", paid_on=pb.Date(year=2026, month=11, day=27)
    )
    for who in (licensee, third):
        accept = pb.LicenseAccepted(
            offer_id=offer_id, licensee=who.party_id, terms=terms,
            start_date=pb.Date(year=2026, month=11, day=27), payment=payment,
        )  # fmt: skip
        await node.submit(
            signed(
                pb.Statement(nonce=who.party_id.encode()[:16], license_accepted=accept),
                (who.party_id, who.key),
            )
        )
    _, withdraw_index = await node.submit(
        signed(
            pb.Statement(offer_withdrawn=pb.OfferWithdrawn(offer_id=offer_id)),
            (owner_party.party_id, owner_party.key),
        )
    )
    late = pb.LicenseAccepted(
        offer_id=offer_id, licensee=owner_party.party_id, terms=terms,
        start_date=pb.Date(year=2026, month=11, day=27), payment=payment,
    )  # fmt: skip
    with pytest.raises(RuleViolationError, match="OFFER_NOT_ACTIVE"):
        await node.submit(
            signed(pb.Statement(license_accepted=late), (owner_party.party_id, owner_party.key))
        )

    # The patent's history is a chain in the log: each entry links to the previous one.
    size = (await node.store.latest_checkpoint()).size
    raw = [d for batch in [b async for b in node.store.entries(0, size)] for _, d in batch]
    entries = [pb.LogEntry.FromString(d) for d in raw]
    about = [
        (i, e) for i, e in enumerate(entries) if e.previous[0].patent == patent.application_number
    ]
    assert about[0][0] == record_index
    assert not about[0][1].previous[0].HasField("previous_index")
    for (earlier, _), (_, later) in itertools.pairwise(about):
        assert later.previous[0].previous_index == earlier
    assert about[-1][0] == withdraw_index
    state = await node.db.read(lambda c: node.world(c).patent(patent.application_number))
    assert state is not None
    assert state.offer is None
    assert [x.licensee for x in state.licences] == [licensee.party_id, third.party_id]

    # Views are derived: clear them, re-apply the log, and nothing differs.
    before = await node.snapshot()
    await node.db.write(clear)
    for index, data in enumerate(raw):  # the stored bytes, never re-serialised
        await node.db.write(functools.partial(_apply, node, index, data))
    assert await node.snapshot() == before
    assert record_id != offer_id
    assert offer_index > record_index


async def test_entries_must_be_applied_in_order(node: Node) -> None:
    party = generate(3, parties=1, patents=1).parties[0]
    sig = signed(pb.Statement(party_registered=party.registration), (party.party_id, party.key))
    admitted = await node.db.read(lambda c: admit(sig, node.world(c), NOW))
    entry = await node.db.read(lambda c: build_entry(ORIGIN, NOW, sig, admitted, node.world(c)))
    with pytest.raises(ViewOrderError):
        await node.db.write(lambda c: apply_entry(node.world(c), ORIGIN, 5, entry))
