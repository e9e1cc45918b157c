"""Log key rotation: checkpoints signed by two keys of one log, and the keys a stored log accepts.

The pure half signs and opens checkpoints with a log's current and next
keys (C2SP signed-note: a note may carry several signatures; a verifier
ignores keys it does not know and rejects a note whose known key's
signature fails). The stored half runs on both engines: a log accepts a next
key, signs with both, retires the old one, and still refuses a key it never
accepted; fsck checks every checkpoint against every accepted key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.db import Database
from ledger.errors import FsckError, KeyMismatchError, SignatureError
from ledger.models import Log
from ledger.note import Note, NoteSignature, Signer, parse_note
from ledger.receipt import verify_receipt
from ledger.store import LogStore
from tests.conftest import ORIGIN

CHECKPOINT = Checkpoint(ORIGIN, 7, hashlib.sha256(b"root").digest())


def _keys() -> tuple[Signer, Signer]:
    return Signer.generate(ORIGIN), Signer.generate(ORIGIN)


# -- pure: signing and opening -------------------------------------------------


def test_a_checkpoint_signed_by_both_keys_verifies_under_either_alone_and_under_both() -> None:
    current, following = _keys()
    note = sign_checkpoint(CHECKPOINT, current, following)
    signatures = parse_note(note).signatures
    assert [(s.name, s.key_id) for s in signatures] == [
        (ORIGIN, current.key_id),
        (ORIGIN, following.key_id),
    ]
    for keys in ([current.verifier()], [following.verifier()]):
        assert open_checkpoint(note, keys) == CHECKPOINT
    assert open_checkpoint(note, current.verifier()) == CHECKPOINT
    assert open_checkpoint(note, [current.verifier(), following.verifier()]) == CHECKPOINT


def test_a_checkpoint_signed_only_by_the_next_key_verifies_for_a_verifier_listing_both() -> None:
    current, following = _keys()
    note = sign_checkpoint(CHECKPOINT, following)
    assert open_checkpoint(note, [current.verifier(), following.verifier()]) == CHECKPOINT
    with pytest.raises(SignatureError, match="no signature by a known key"):
        open_checkpoint(note, current.verifier())


def test_a_bad_signature_by_a_listed_log_key_rejects_the_checkpoint() -> None:
    current, following = _keys()
    good, forged = parse_note(sign_checkpoint(CHECKPOINT, current, following)).signatures
    altered = NoteSignature(forged.name, forged.key_id, bytes(64))
    note = Note(CHECKPOINT.body(), (good, altered)).format()
    # Knowing only the current key, the next key's line is an unknown key's.
    assert open_checkpoint(note, current.verifier()) == CHECKPOINT
    with pytest.raises(SignatureError, match=forged.key_id.hex()):
        open_checkpoint(note, [current.verifier(), following.verifier()])


def test_a_checkpoint_signed_by_no_listed_key_is_refused() -> None:
    current, following = _keys()
    stranger = Signer.generate(ORIGIN)
    note = sign_checkpoint(CHECKPOINT, stranger)
    with pytest.raises(SignatureError):
        open_checkpoint(note, [current.verifier(), following.verifier()])
    with pytest.raises(ValueError, match="no log key"):
        open_checkpoint(note, [])


def test_one_key_twice_or_a_key_of_another_name_cannot_sign_a_checkpoint() -> None:
    current, _ = _keys()
    with pytest.raises(ValueError, match="given twice"):
        sign_checkpoint(CHECKPOINT, current, current)
    with pytest.raises(ValueError, match="does not match origin"):
        sign_checkpoint(CHECKPOINT, current, Signer.generate("other.example/log"))


# -- stored: the keys a log accepts ---------------------------------------------


async def test_a_log_that_accepts_its_next_key_signs_with_both_and_receipts_verify_with_either(
    db: Database,
) -> None:
    current, following = _keys()
    store = await LogStore.create(db, ORIGIN, current.verifier_key())
    await store.sequence([b"before"], current)
    assert await store.accept_key(following.verifier_key()) is True
    assert await store.accept_key(following.verifier_key()) is False  # already accepted
    assert store.vkeys == (current.verifier_key(), following.verifier_key())
    _, checkpoint = await store.sequence([b"during"], [current, following])
    assert len(parse_note(checkpoint.note).signatures) == 2
    receipt = (await store.receipt(1)).format()
    for key in (current, following):
        assert verify_receipt(receipt, key.verifier()).size == 2
    reopened = await LogStore.open(db, ORIGIN)
    assert reopened.vkeys == store.vkeys
    assert await reopened.fsck() == 2


async def test_after_retiring_the_old_key_the_next_signs_alone_and_old_checkpoints_stay_clean(
    db: Database,
) -> None:
    current, following = _keys()
    store = await LogStore.create(db, ORIGIN, current.verifier_key())
    await store.sequence([b"old"], current)
    await store.accept_key(following.verifier_key())
    await store.sequence([b"both"], [current, following])
    # Restarted with the next key as its only key: the log already accepts it.
    retired = await LogStore.create(db, ORIGIN, following.verifier_key())
    assert retired.vkey == current.verifier_key()  # the key it was created with
    _, checkpoint = await retired.sequence([b"new"], following)
    (signature,) = parse_note(checkpoint.note).signatures
    assert signature.key_id == following.key_id
    assert open_checkpoint(checkpoint.note, following.verifier()).size == 3
    assert await retired.fsck() == 3
    # Each key alone explains only the checkpoints it signed.
    with pytest.raises(FsckError, match="size 3"):
        await retired.fsck(current.verifier())
    with pytest.raises(FsckError, match="size 1"):
        await retired.fsck(following.verifier())


async def test_a_key_the_log_never_accepted_is_refused_alone_or_beside_an_accepted_one(
    db: Database,
) -> None:
    current, following = _keys()
    stranger = Signer.generate(ORIGIN)  # a key file lost and recreated, or the wrong file
    store = await LogStore.create(db, ORIGIN, current.verifier_key())
    await store.sequence([b"a"], current)
    # Creating an existing log with another key does not make that key accepted.
    again = await LogStore.create(db, ORIGIN, stranger.verifier_key())
    assert again.vkeys == (current.verifier_key(),)
    with pytest.raises(KeyMismatchError, match=re.escape(stranger.verifier_key())):
        await again.sequence([b"b"], stranger)
    with pytest.raises(KeyMismatchError):
        await store.sequence([b"b"], [current, following])
    assert (await store.latest_checkpoint()).size == 1
    with pytest.raises(KeyMismatchError, match="not after log"):
        await store.accept_key(Signer.generate("other.example/log").verifier_key())
    assert await store.reload_keys() == (current.verifier_key(),)


async def test_a_key_another_process_accepted_may_sign_without_reopening(db: Database) -> None:
    current, following = _keys()
    writer = await LogStore.create(db, ORIGIN, current.verifier_key())
    operator = await LogStore.open(db, ORIGIN)  # stands for another process
    await operator.accept_key(following.verifier_key())
    _, checkpoint = await writer.sequence([b"x"], [current, following])
    assert len(parse_note(checkpoint.note).signatures) == 2


@pytest.mark.parametrize(
    "statement", ["UPDATE log_keys SET vkey = 'forged'", "DELETE FROM log_keys"]
)
async def test_the_database_refuses_to_forget_or_change_an_accepted_key(
    db: Database, statement: str
) -> None:
    current, _ = _keys()
    await LogStore.create(db, ORIGIN, current.verifier_key())
    with pytest.raises((IntegrityError, DBAPIError), match="append-only"):
        async with db.engine.begin() as conn:
            await conn.execute(text(statement))


async def test_a_log_created_before_log_keys_existed_accepts_its_original_key(
    db_url: str,
) -> None:
    current, following = _keys()
    db = Database(db_url)
    try:
        await db.migrate("0005_federation")
        async with db.engine.begin() as conn:
            created = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
            await conn.execute(
                insert(Log).values(origin=ORIGIN, vkey=current.verifier_key(), created_at=created)
            )
        await db.migrate()
        store = await LogStore.open(db, ORIGIN)
        assert store.vkeys == (current.verifier_key(),)
        await store.sequence([b"a"], current)
        await store.accept_key(following.verifier_key())
        assert store.vkeys == (current.verifier_key(), following.verifier_key())
    finally:
        await db.dispose()
