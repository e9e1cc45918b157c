"""A member rotates its log key while the network keeps replicating, every node a real process.

Member ``a`` announces a next key (the network file lists it in
``other_vkeys`` on every member), signs with both keys for a while, then
retires the old one (the next key becomes ``vkey``; the old one stays
listed, since it signed a's earlier checkpoints). ``b`` replicates every
stage and stores a's checkpoints with the signatures of a's keys; ``c``,
first started at the retirement with an empty database, catches up with
a's whole log, checkpoints by the old key, by both and by the new key
alike. The replicas' fsck accepts all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clients.localnet import LocalNetwork
from exchange.network import NETWORK_FILE, NODE_CONFIG_FILE
from exchange.sample import generate
from kaifang.federation.v1 import federation_pb2 as fed
from ledger.db import Database, sqlite_url
from ledger.keys import create_key_file, load_key_file
from ledger.note import parse_note
from ledger.receipt import parse_receipt
from ledger.store import LogStore
from tests.exchange import story
from tests.federation.net import network_dir, submit, submit_all

PARTIES = generate(53, parties=4, patents=0).parties


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    network = LocalNetwork.create(network_dir(tmp_path), ["a", "b", "c"])
    try:
        await network.start_all(["a", "b"])
        yield network
    finally:
        await network.close()


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: {old!r}"
    path.write_text(text.replace(old, new))


async def _restart(net: LocalNetwork, names: list[str], *, joining: tuple[str, ...] = ()) -> None:
    """Restart ``names``, which read their configuration and the network file again.

    ``joining`` start at the same time, for the first time.
    """
    assert await asyncio.gather(*(net.stop(n) for n in names)) == [0] * len(names)
    await net.start_all([*names, *joining])


def _head(heads: fed.GetHeadsResponse, origin: str) -> fed.Head:
    (head,) = [h for h in heads.heads if h.origin == origin]
    return head


def _signers(note: str) -> list[bytes]:
    """The key IDs of a's own signatures on ``note`` (witnesses' cosignatures left out)."""
    return [s.key_id for s in parse_note(note).signatures if len(s.signature) == 64]


async def _replica_fsck(net: LocalNetwork, at: str, origin: str) -> tuple[int, tuple[str, ...]]:
    """Check ``at``'s replica of ``origin`` with the keys it accepts; return its size and keys."""
    db = Database(sqlite_url(net.nodes[at].directory / "kaifang.db"))
    try:
        store = await LogStore.open(db, origin)
        return await store.fsck(), store.vkeys
    finally:
        await db.dispose()


async def test_a_member_rotating_its_log_key_keeps_replicating_and_a_late_joiner_catches_up(
    net: LocalNetwork,
) -> None:
    a_dir = net.nodes["a"].directory
    network_file = net.directory / NETWORK_FILE
    old = load_key_file(a_dir / "log.key")
    await submit(net, "a", story.registration(PARTIES[0]))
    await net.wait_converged(["a", "b"])

    # Announce the next key to every member, then sign with both.
    new = create_key_file(a_dir / "log-next.key", "a")
    old_line = f'vkey = "{old.verifier_key()}"\n'
    _replace(network_file, old_line, f'{old_line}other_vkeys = ["{new.verifier_key()}"]\n')
    config = a_dir / NODE_CONFIG_FILE
    _replace(
        config, 'log_key = "log.key"\n', 'log_key = "log.key"\nlog_key_next = "log-next.key"\n'
    )
    await _restart(net, ["b", "a"])
    (both,) = await submit_all(net, "a", [story.registration(PARTIES[1])])
    signed = parse_note(parse_receipt(both.receipt).checkpoint_note).signatures
    assert [s.key_id for s in signed] == [old.key_id, new.key_id]
    heads = await net.wait_converged(["a", "b"])
    held = _head(await net.heads("b"), "a")
    assert held.tree_size == _head(heads, "a").tree_size
    assert _signers(held.checkpoint) == [old.key_id, new.key_id]

    # Retire the old key: the next key signs alone; the old one stays listed.
    _replace(
        network_file,
        f'{old_line}other_vkeys = ["{new.verifier_key()}"]\n',
        f'vkey = "{new.verifier_key()}"\nother_vkeys = ["{old.verifier_key()}"]\n',
    )
    _replace(
        config, 'log_key = "log.key"\nlog_key_next = "log-next.key"\n', 'log_key = "log-next.key"\n'
    )
    # A member joining now, with an empty database, must verify a's history under both keys.
    await _restart(net, ["b", "a"], joining=("c",))
    (alone,) = await submit_all(net, "a", [story.registration(PARTIES[2])])
    signed = parse_note(parse_receipt(alone.receipt).checkpoint_note).signatures
    assert [s.key_id for s in signed] == [new.key_id]
    heads = await net.wait_converged()
    assert _signers(_head(await net.heads("b"), "a").checkpoint) == [new.key_id]
    size = _head(heads, "a").tree_size
    for replica in ("b", "c"):
        checked, keys = await _replica_fsck(net, replica, "a")
        assert checked == size
        assert sorted(keys) == sorted([old.verifier_key(), new.verifier_key()])
