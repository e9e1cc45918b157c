"""Rebuilding the views from the log gives exactly the views kept incrementally.

A property test on both engines: hypothesis draws sequences of statements
over a small market (registrations, patent records, offers, acceptances,
withdrawals, pledges, releases, transfers, licences, disputes; each may be
forged, signed by the wrong party or aimed at something that does not
exist), submits them in batches of random size through the node's real
admission path (so refusals land in the middle of batches), then rebuilds
the views from the log in memory and compares every row of every view
table with what admission maintained one statement at a time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, delete, select, update

from clients.cli import main
from exchange.config import NodeConfig
from exchange.models import PatentRow
from exchange.node import Exchange, rebuild_views
from exchange.sample import SampleParty, generate, sample_statements
from exchange.server import RunningNode, start_node
from exchange.viewstore import VIEW_TABLES
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.db import Database
from ledger.keys import load_key_file
from ledger.note import Signer
from tests.conftest import ORIGIN
from tests.exchange import story

SAMPLE = generate(51, parties=5, patents=4)
PARTIES = SAMPLE.parties
PATENTS = SAMPLE.patents
KINDS = ["register", "record", "offer", "accept", "withdraw", "pledge", "release",
         "transfer", "grant", "record_licence", "dispute", "garbage"]  # fmt: skip


@pytest.fixture
async def node(db_url: str, tmp_path: Path) -> AsyncIterator[RunningNode]:
    config = NodeConfig(
        origin=ORIGIN, listen="127.0.0.1:0", database=db_url, log_key=tmp_path / "log.key"
    )
    async with start_node(config) as running:
        register = load_key_file(tmp_path / "register.key")
        setup = [story.registration(p) for p in PARTIES]
        setup += [story.record(p, [PARTIES[j]], register) for j, p in enumerate(PATENTS)]
        setup += [story.offer(p.application_number, [PARTIES[j]]) for j, p in enumerate(PATENTS)]
        outcomes = await running.exchange.submit_many(setup)
        assert not [o for o in outcomes if isinstance(o, Exception)]
        yield running


async def _snapshot(exchange: Exchange) -> dict[str, list[tuple[object, ...]]]:
    def read(conn: Connection) -> dict[str, list[tuple[object, ...]]]:
        return {
            t.name: sorted((tuple(r) for r in conn.execute(select(t)).all()), key=repr)
            for t in VIEW_TABLES
        }

    return await exchange.db.read(read)


def _party(party_id: str) -> SampleParty:
    return next(p for p in PARTIES if p.party_id == party_id)


async def _statement(
    exchange: Exchange, register: Signer, action: tuple[str, int, int, bool]
) -> pb.SignedStatement:
    kind, i, j, forge = action
    party, patent = PARTIES[i], PATENTS[j]
    number = patent.application_number
    state = await exchange.db.read(lambda c: exchange.world(c).patent(number))
    owners = [_party(o) for o in state.owners] if state else [PARTIES[0]]
    unknown = os.urandom(32)
    offer = state.offer.offer_id if state and state.offer else unknown
    pledge = state.pledge if state else None
    licence = state.licences[-1].license_id if state and state.licences else unknown
    today = story.date(story.today())
    if kind == "register":
        signed = story.registration(party)
    elif kind == "record":
        signed = story.record(patent, [party], register)
    elif kind == "offer":
        signed = story.offer(number, owners)
    elif kind == "accept":
        signed = story.acceptance(offer, party)
    elif kind == "withdraw":
        signed = story.withdrawal(offer, owners)
    elif kind == "pledge":
        signed = story.pledge(number, owners, party)
    elif kind == "release":
        release = pb.PledgeReleased(pledge_id=pledge.pledge_id if pledge else unknown)
        pledgee = _party(pledge.pledgee) if pledge else party
        signed = story.signed(pb.Statement(pledge_released=release), (pledgee.party_id, pledgee))
    elif kind == "transfer":
        body = pb.TransferRegistered(
            application_number=number, assignors=[o.party_id for o in owners],
            assignees=[party.party_id], contract_reference="T-1",
        )  # fmt: skip
        signers = [*owners, party]
        if pledge is not None:
            signers.append(_party(pledge.pledgee))
        signed = story.signed(
            pb.Statement(transfer_registered=body), *((s.party_id, s) for s in signers)
        )
    elif kind == "grant":
        end = story.today() + dt.timedelta(days=365)
        body2 = pb.LicenseGranted(
            application_number=number, licensors=[o.party_id for o in owners],
            licensee=party.party_id, type=pb.LICENSE_TYPE_ORDINARY, start_date=today,
            end_date=story.date(end), terms=story.CNY_20K, contract_reference="L-1",
        )  # fmt: skip
        signed = story.signed(
            pb.Statement(license_granted=body2), *((o.party_id, o) for o in owners)
        )
    elif kind == "record_licence":
        body3 = pb.LicenseRecorded(
            license_id=licence,
            recordal_number="2026990000123",
            recorded_on=today,
        )
        signed = story.signed(
            pb.Statement(license_recorded=body3), *((o.party_id, o) for o in owners)
        )
    elif kind == "dispute":
        body4 = pb.DisputeFiled(
            application_number=number, subject_id=offer,
            kind=pb.DISPUTE_KIND_OPEN_LICENSE, claimant=party.party_id,
            respondents=[o.party_id for o in owners], summary="royalty report late",
        )  # fmt: skip
        signed = story.signed(pb.Statement(dispute_filed=body4), (party.party_id, party))
    else:
        signed = pb.SignedStatement(statement=os.urandom(40))
    if forge and signed.signatures:
        signed.signatures[0].signature = bytes(64)
    return signed


actions = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.integers(0, len(PARTIES) - 1),
        st.integers(0, len(PATENTS) - 1),
        st.sampled_from([False, False, False, True]),  # forged one time in four
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=actions, batch=st.integers(1, 8))
async def test_rebuild_equals_the_incremental_views(
    node: RunningNode, tmp_path: Path, plan: list[tuple[str, int, int, bool]], batch: int
) -> None:
    # The node persists across examples: each example extends one history,
    # which is still a sequence of valid and invalid statements.
    exchange = node.exchange
    register = load_key_file(tmp_path / "register.key")
    pending: list[pb.SignedStatement] = []
    for action in plan:
        pending.append(await _statement(exchange, register, action))
        if len(pending) == batch:
            await exchange.submit_many(pending)
            pending = []
    await exchange.submit_many(pending)
    incremental = await _snapshot(exchange)
    assert incremental["offers"]  # the history is not all refusals
    size = (await node.store.latest_checkpoint()).size
    assert await rebuild_views(exchange.db) == size
    assert await _snapshot(exchange) == incremental


def test_views_rebuild_command_restores_damaged_views(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = NodeConfig(
        origin=ORIGIN, listen="127.0.0.1:0", database=db_url, log_key=tmp_path / "log.key"
    )

    async def load() -> dict[str, list[tuple[object, ...]]]:
        async with start_node(config) as running:
            register = load_key_file(tmp_path / "register.key")
            now = dt.datetime.now(dt.UTC)
            statements = sample_statements(generate(52, parties=4, patents=6), register, now)
            outcomes = await running.exchange.submit_many(statements)
            assert not [o for o in outcomes if isinstance(o, Exception)]
            return await _snapshot(running.exchange)

    async def damage_and_read(damage: bool) -> dict[str, list[tuple[object, ...]]]:
        db = Database(db_url)
        try:
            if damage:
                await db.write(lambda c: c.execute(delete(VIEW_TABLES[0])))
                await db.write(lambda c: c.execute(update(PatentRow).values(title="?")))
            views = await db.read(
                lambda conn: {
                    t.name: sorted((tuple(r) for r in conn.execute(select(t)).all()), key=repr)
                    for t in VIEW_TABLES
                }
            )
        finally:
            await db.dispose()
        return views

    before = asyncio.run(load())
    assert asyncio.run(damage_and_read(True)) != before
    assert main(["views", "rebuild", "--db", db_url]) == 0
    assert "views rebuilt from" in capsys.readouterr().out
    assert asyncio.run(damage_and_read(False)) == before


async def test_entries_that_are_not_statements_are_skipped_by_the_views(
    db_url: str, tmp_path: Path
) -> None:
    # A log may hold entries appended with the general `kaifang ledger append`:
    # the node must still start, serve its log and keep admitting.
    config = NodeConfig(
        origin=ORIGIN, listen="127.0.0.1:0", database=db_url, log_key=tmp_path / "log.key"
    )
    async with start_node(config) as running:
        await running.store.sequence([b"not a log entry", b"\x0a\x03abc"], running.signer)
    async with start_node(config) as running:  # catches up over the two entries
        outcome = await running.exchange.submit(story.registration(PARTIES[0]))
        assert outcome.index == 2
        incremental = await _snapshot(running.exchange)
        assert await rebuild_views(running.exchange.db) == 3
        assert await _snapshot(running.exchange) == incremental
        assert len(incremental["statements"]) == 1
