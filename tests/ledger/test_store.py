"""The stored log on both engines: appends, dedup, reads, proofs, immutability, fsck."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from ledger.checkpoint import open_checkpoint
from ledger.db import Database
from ledger.errors import (
    EntryNotFoundError,
    EntryTooLargeError,
    FsckError,
    IndexOutOfRangeError,
    KeyMismatchError,
    SizeNotSignedError,
    UnknownLogError,
)
from ledger.merkle import leaf_hash, root_hash, verify_consistency, verify_inclusion
from ledger.note import Signer
from ledger.receipt import verify_receipt
from ledger.store import MAX_ENTRY_SIZE, LogStore, RowCache, Sequencer
from tests.conftest import ORIGIN


async def _store(db: Database, signer: Signer) -> LogStore:
    return await LogStore.create(db, ORIGIN, signer.verifier_key())


def _entries(n: int, tag: str = "e") -> list[bytes]:
    return [f"{tag}-{i}".encode() * 3 for i in range(n)]


async def test_appended_entries_get_consecutive_indices_and_a_signed_checkpoint(
    db: Database, signer: Signer
) -> None:
    store = await _store(db, signer)
    data = _entries(10)
    indices, cp = await store.sequence(data, signer)
    assert indices == list(range(10))
    assert cp.size == 10
    assert cp.root_hash == root_hash([leaf_hash(d) for d in data])
    opened = open_checkpoint(cp.note, signer.verifier())
    assert (opened.origin, opened.size, opened.root_hash) == (ORIGIN, 10, cp.root_hash)
    indices2, cp2 = await store.sequence(_entries(5, "f"), signer)
    assert indices2 == list(range(10, 15))
    assert cp2.size == 15


async def test_duplicate_entries_get_their_first_index_back(db: Database, signer: Signer) -> None:
    store = await _store(db, signer)
    await store.sequence([b"a", b"b", b"c"], signer)
    indices, cp = await store.sequence([b"x", b"b", b"x", b"a"], signer)
    assert indices == [3, 1, 3, 0]
    assert cp.size == 4
    # A batch of nothing but duplicates signs nothing new.
    indices, cp2 = await store.sequence([b"c"], signer)
    assert indices == [2]
    assert cp2 == cp


async def test_dedup_survives_reopening_the_store(db: Database, signer: Signer) -> None:
    store = await _store(db, signer)
    await store.sequence([b"one", b"two"], signer)
    reopened = await LogStore.open(db, ORIGIN)
    indices, _ = await reopened.sequence([b"two", b"three"], signer)
    assert indices == [1, 2]


async def test_concurrent_appenders_on_separate_stores_never_duplicate(
    db: Database, signer: Signer
) -> None:
    # Separate LogStore objects stand for separate writer processes: no shared
    # in-memory state, only the database.
    first = await _store(db, signer)
    stores = [first] + [await LogStore.open(db, ORIGIN) for _ in range(3)]
    shared = _entries(30, "shared")

    async def writer(store: LogStore, k: int) -> list[int]:
        out: list[int] = []
        for i in range(0, 30, 5):
            own = [f"own-{k}-{i}".encode()]
            indices, _ = await store.sequence(shared[i : i + 5] + own, signer)
            out.extend(indices[:5])
        return out

    results = await asyncio.gather(*(writer(s, k) for k, s in enumerate(stores)))
    # Every writer saw the same index for every shared entry.
    assert all(r == results[0] for r in results)
    cp = await first.latest_checkpoint()
    assert cp.size == 30 + 4 * 6
    assert await first.fsck() == cp.size


async def test_entry_over_the_size_limit_is_refused_and_nothing_is_written(
    db: Database, signer: Signer
) -> None:
    store = await _store(db, signer)
    with pytest.raises(EntryTooLargeError):
        await store.sequence([b"ok", b"x" * (MAX_ENTRY_SIZE + 1)], signer)
    with pytest.raises(SizeNotSignedError):
        await store.latest_checkpoint()
    # The largest allowed entry is accepted.
    indices, _ = await store.sequence([b"y" * MAX_ENTRY_SIZE], signer)
    assert indices == [0]


async def test_proofs_verify_at_every_signed_size(db: Database, signer: Signer) -> None:
    store = await _store(db, signer)
    data: list[bytes] = []
    sizes: list[int] = []
    for batch in (1, 2, 5, 1, 8, 3, 13):
        new = _entries(batch, f"b{len(data)}")
        data += new
        await store.sequence(new, signer)
        sizes.append(len(data))
    hashes = [leaf_hash(d) for d in data]
    for size in sizes:
        cp = await store.checkpoint(size)
        assert cp.root_hash == root_hash(hashes[:size])
        for index in range(size):
            proof, at = await store.inclusion_proof(index, size)
            assert at == cp
            verify_inclusion(hashes[index], index, size, proof, cp.root_hash)
        for old in sizes:
            if old <= size:
                proof, _ = await store.consistency_proof(old, size)
                old_root = (await store.checkpoint(old)).root_hash
                verify_consistency(old, size, proof, old_root, cp.root_hash)


async def test_reads_beyond_the_log_are_refused(db: Database, signer: Signer) -> None:
    store = await _store(db, signer)
    with pytest.raises(SizeNotSignedError):
        await store.inclusion_proof(0)
    await store.sequence(_entries(4), signer)
    with pytest.raises(IndexOutOfRangeError):
        await store.inclusion_proof(4)
    with pytest.raises(SizeNotSignedError):
        await store.inclusion_proof(0, 3)
    with pytest.raises(SizeNotSignedError):
        await store.consistency_proof(2, 4)
    with pytest.raises(IndexOutOfRangeError):
        await store.consistency_proof(5, 4)
    with pytest.raises(EntryNotFoundError):
        await store.index_of(leaf_hash(b"absent"))
    assert await store.index_of(leaf_hash(_entries(4)[2])) == 2
    with pytest.raises(UnknownLogError):
        await LogStore.open(db, "other.example/log")


async def test_entries_are_read_back_verbatim_in_batches(db: Database, signer: Signer) -> None:
    store = await _store(db, signer)
    data = [bytes([i % 256]) * (i % 7) for i in range(23)]
    data = list(dict.fromkeys(data))  # distinct entries only
    await store.sequence(data, signer)
    got = [batch async for batch in store.entries(0, len(data), batch=4)]
    assert [len(b) for b in got][:-1] == [4] * (len(got) - 1)
    assert [d for b in got for _, d in b] == data


async def test_receipt_verifies_offline(db: Database, signer: Signer) -> None:
    store = await _store(db, signer)
    await store.sequence(_entries(9), signer)
    receipt = await store.receipt(6)
    cp = verify_receipt(receipt.format(), signer.verifier())
    assert cp.size == 9
    assert receipt.extra == _entries(9)[6]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE entries SET data = X'00'",
        "DELETE FROM entries",
        "UPDATE checkpoints SET note = 'forged'",
        "DELETE FROM checkpoints",
        "UPDATE logs SET origin = 'forged'",
        "DELETE FROM logs",
    ],
)
async def test_database_refuses_to_change_the_record(
    db: Database, signer: Signer, statement: str
) -> None:
    store = await _store(db, signer)
    await store.sequence(_entries(3), signer)
    if db.dialect == "postgresql":
        statement = statement.replace("X'00'", "'\\x00'::bytea")
    with pytest.raises((IntegrityError, DBAPIError), match="append-only"):
        async with db.engine.begin() as conn:
            await conn.execute(text(statement))
    assert await store.fsck() == 3


async def test_fsck_reports_a_checkpoint_signed_by_another_key(
    db: Database, signer: Signer
) -> None:
    store = await _store(db, signer)
    await store.sequence(_entries(3), signer)
    with pytest.raises(FsckError, match="size 3"):
        await store.fsck(Signer.generate(ORIGIN).verifier())


async def test_sequencer_batches_concurrent_appends(db: Database, signer: Signer) -> None:
    store = await _store(db, signer)
    sequencer = Sequencer(store, signer)
    results = await asyncio.gather(*(sequencer.append(d) for d in _entries(50)))
    assert sorted(r.index for r in results) == list(range(50))
    # Concurrent appends share checkpoints: far fewer than one per append.
    sizes = {r.checkpoint.size for r in results}
    assert len(sizes) < 50
    for r in results:
        assert r.checkpoint.size > r.index
    dup = await sequencer.append(_entries(50)[7])
    assert dup.index == 7
    await sequencer.close()


def test_row_cache_keeps_the_most_recently_used_rows_within_capacity() -> None:
    cache = RowCache(3)
    cache.put_many({1: b"a", 2: b"b", 3: b"c"})
    found, missing = cache.get_many([1, 4])  # touching 1 makes 2 the oldest
    assert (found, missing) == ({1: b"a"}, [4])
    cache.put_many({4: b"d"})
    found, missing = cache.get_many([1, 2, 3, 4])
    assert set(found) == {1, 3, 4}
    assert missing == [2]


async def test_proofs_served_from_memory_match_proofs_read_from_the_database(
    db: Database, signer: Signer
) -> None:
    store = await _store(db, signer)
    data = _entries(300)
    _, cp = await store.sequence(data, signer)
    cold = LogStore(db, store.log_id, store.origin, store.vkey)
    cold._rows = RowCache(0)  # nothing is ever cached: every proof reads the database
    for index in range(0, 300, 7):
        warm_proof, _ = await store.inclusion_proof(index, 300)
        again, _ = await store.inclusion_proof(index, 300)
        cold_proof, _ = await cold.inclusion_proof(index, 300)
        assert warm_proof == again == cold_proof
        verify_inclusion(leaf_hash(data[index]), index, 300, again, cp.root_hash)


async def test_a_key_other_than_the_logs_cannot_sign_for_it(db: Database, signer: Signer) -> None:
    store = await _store(db, signer)
    await store.sequence([b"a"], signer)
    impostor = Signer.generate(ORIGIN)  # same name, e.g. a lost key file recreated
    with pytest.raises(KeyMismatchError):
        await store.sequence([b"b"], impostor)
    assert (await store.latest_checkpoint()).size == 1
    assert await store.fsck() == 1


async def test_cancelling_close_leaves_no_append_waiting_forever(
    db: Database, signer: Signer
) -> None:
    store = await _store(db, signer)
    sequencer = Sequencer(store, signer)
    appends = [asyncio.ensure_future(sequencer.append(d)) for d in _entries(20)]
    await asyncio.sleep(0)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sequencer.close(), timeout=0.0001)
    done, pending = await asyncio.wait(appends, timeout=30)
    assert not pending
    indices = sorted(a.result().index for a in done if not a.cancelled() and not a.exception())
    assert indices == list(range(len(indices)))
