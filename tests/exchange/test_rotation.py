"""Rotating a node's log key: configuration, the network file, and a real node on both engines.

A node started with ``log_key_next`` signs every checkpoint with its current
and next keys, so that clients trusting either key verify its receipts;
restarted with the next key as ``log_key`` (the old one retired) it signs
with the new key alone, and its log, old checkpoints included, stays clean.
A key the log never accepted is refused, with or without a next key beside
it. The network file lists a member's other keys in ``other_vkeys``, and a
node's keys must be among those its entry lists.
"""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from clients.audit import build_bundle, verify_bundle
from clients.client import Client
from clients.errors import BundleError, CheckpointVerificationError
from clients.trust import Trust
from exchange.config import ConfigError, NodeConfig, load_config
from exchange.network import init_network, load_federation, load_network
from exchange.sample import generate
from exchange.server import RunningNode, start_node
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from ledger.db import Database
from ledger.errors import KeyMismatchError
from ledger.keys import create_key_file, load_key_file
from ledger.note import Signer, parse_note
from ledger.receipt import verify_receipt
from ledger.store import LogStore
from tests.conftest import ORIGIN
from tests.exchange import story

PARTIES = generate(47, parties=6, patents=0).parties


def _config(db_url: str, directory: Path, log_key: str, log_key_next: str | None) -> NodeConfig:
    return NodeConfig(
        origin=ORIGIN,
        listen="127.0.0.1:0",
        database=db_url,
        log_key=directory / log_key,
        log_key_next=None if log_key_next is None else directory / log_key_next,
    )


@asynccontextmanager
async def _node(
    db_url: str, directory: Path, log_key: str = "log.key", log_key_next: str | None = None
) -> AsyncIterator[RunningNode]:
    async with start_node(_config(db_url, directory, log_key, log_key_next)) as node:
        yield node


async def _register(node: RunningNode, trust: Trust, party: int) -> str:
    """Submit a registration through a client trusting ``trust``; return the verified receipt."""
    async with Client(f"127.0.0.1:{node.port}", trust) as client:
        submitted = await client.submit(story.registration(PARTIES[party]))
    return submitted.text


async def _bundle(node: RunningNode, party: int, vkeys: list[str]) -> dict[str, Any]:
    """An audit bundle of a party's history, exported knowing the log's keys ``vkeys``."""
    party_id = PARTIES[party].party_id
    async with grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        history = await stub.GetHistory(api.GetHistoryRequest(party_id=party_id))
    return build_bundle(("party", party_id), [history], {ORIGIN: vkeys}, [])


def _key_ids(note: str) -> list[bytes]:
    return [s.key_id for s in parse_note(note).signatures]


async def test_a_node_rotating_its_key_signs_with_both_and_clients_trusting_either_verify(
    db_url: str, tmp_path: Path
) -> None:
    async with _node(db_url, tmp_path, log_key_next="log-next.key") as node:
        current, following = node.signer, node.next_signer
        assert following is not None
        assert node.signers == (current, following)
        # Created like the log key: private, named after the origin, another key ID.
        mode = (tmp_path / "log-next.key").stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
        assert following.name == ORIGIN
        assert following.key_id != current.key_id
        assert node.store.vkeys == (current.verifier_key(), following.verifier_key())
        receipts = [
            await _register(node, Trust.from_keys([current.verifier_key()]), 0),
            await _register(node, Trust.from_keys([following.verifier_key()]), 1),
            await _register(
                node, Trust.from_keys([following.verifier_key(), current.verifier_key()]), 2
            ),
        ]
        latest = await node.store.latest_checkpoint()
        assert _key_ids(latest.note) == [current.key_id, following.key_id]
        for receipt in receipts:
            for key in node.signers:
                verify_receipt(receipt, key.verifier())
        assert await node.store.fsck() == latest.size


async def test_after_retiring_the_old_key_the_node_signs_with_the_new_key_alone_and_stays_clean(
    db_url: str, tmp_path: Path
) -> None:
    async with _node(db_url, tmp_path) as node:
        await _register(node, Trust.from_keys([node.signer.verifier_key()]), 0)
        old = node.signer
    async with _node(db_url, tmp_path, log_key_next="log-next.key") as node:
        await _register(node, Trust.from_keys([old.verifier_key()]), 1)
        new = node.next_signer
        assert new is not None
        # Exported while both keys sign: the bundle names the first key given that signed.
        during = await _bundle(node, 1, [new.verifier_key(), old.verifier_key()])
    # Retired: the next key is now the log key, and the only one that signs.
    async with _node(db_url, tmp_path, log_key="log-next.key") as node:
        assert node.signer.verifier_key() == new.verifier_key()
        assert node.next_signer is None
        receipt = await _register(node, Trust.from_keys([new.verifier_key()]), 2)
        both = Trust.from_keys([old.verifier_key(), new.verifier_key()])
        await _register(node, both, 3)
        with pytest.raises(CheckpointVerificationError, match="no signature by a known key"):
            await _register(node, Trust.from_keys([old.verifier_key()]), 4)
        assert _key_ids((await node.store.latest_checkpoint()).note) == [new.key_id]
        verify_receipt(receipt, new.verifier())
        size = (await node.store.latest_checkpoint()).size
        after = await _bundle(node, 2, [old.verifier_key(), new.verifier_key()])
    # Verified offline with both keys pinned, a bundle of either time holds.
    assert during["logs"][ORIGIN]["vkey"] == new.verifier_key()
    assert after["logs"][ORIGIN]["vkey"] == new.verifier_key()
    pinned = {ORIGIN: [old.verifier_key(), new.verifier_key()]}
    for bundle in (during, after):
        assert verify_bundle(bundle, pinned_vkeys=pinned).logs[ORIGIN].pinned
    assert verify_bundle(during, pinned_vkeys={ORIGIN: new.verifier_key()})
    with pytest.raises(BundleError, match="not a key pinned"):
        verify_bundle(during, pinned_vkeys={ORIGIN: old.verifier_key()})
    # A bundle naming the retired key for a checkpoint only the new key signed.
    after["logs"][ORIGIN]["vkey"] = old.verifier_key()
    with pytest.raises(BundleError, match="not signed by the bundle's key"):
        verify_bundle(after, pinned_vkeys=pinned)
    # Checkpoints by the old key alone, by both and by the new key alone: all clean.
    db = Database(db_url)
    try:
        store = await LogStore.open(db, ORIGIN)
        assert store.vkeys == (old.verifier_key(), new.verifier_key())
        assert await store.fsck() == size
    finally:
        await db.dispose()


async def test_a_node_started_with_a_key_its_log_never_accepted_is_refused(
    db_url: str, tmp_path: Path
) -> None:
    async with _node(db_url, tmp_path) as node:
        first = node.signer
    # A log key file lost and recreated (or the wrong file named) is a new key.
    with pytest.raises(KeyMismatchError):
        async with _node(db_url, tmp_path, log_key="other.key"):
            pass
    # Nor does it bring a next key in with it.
    with pytest.raises(KeyMismatchError):
        async with _node(db_url, tmp_path, log_key="other.key", log_key_next="log-next.key"):
            pass
    db = Database(db_url)
    try:
        assert (await LogStore.open(db, ORIGIN)).vkeys == (first.verifier_key(),)
    finally:
        await db.dispose()


async def test_a_next_key_holding_the_log_key_itself_is_refused(
    db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "copy.key").write_text(create_key_file(tmp_path / "log.key", ORIGIN).signer_key())
    (tmp_path / "copy.key").chmod(0o600)
    with pytest.raises(ConfigError, match="same key as log_key") as refused:
        async with _node(db_url, tmp_path, log_key_next="copy.key"):
            pass
    assert refused.value.key == "log_key_next"


def test_log_key_next_is_read_relative_to_the_file_and_may_not_be_the_log_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nlog_key = "a.key"\nlog_key_next = "keys/b.key"\n')
    assert load_config(path).log_key_next == tmp_path / "keys" / "b.key"
    path.write_text('[node]\nlog_key = "a.key"\nlog_key_next = "a.key"\n')
    with pytest.raises(ConfigError, match="same file as log_key") as refused:
        load_config(path)
    assert refused.value.key == "log_key_next"
    path.write_text("[node]\n")
    assert load_config(path).log_key_next is None


# -- the network file ------------------------------------------------------------


def _network(tmp_path: Path) -> tuple[Path, str]:
    directory = tmp_path / "net"
    init_network(directory, ["east", "west"], network_name="demo")
    vkey = load_key_file(directory / "east" / "log.key").verifier_key()
    return directory, vkey


def _list_other_keys(directory: Path, vkey: str, other_vkeys: str) -> None:
    path = directory / "network.toml"
    text = path.read_text()
    line = f'vkey = "{vkey}"\n'
    assert text.count(line) == 1
    path.write_text(text.replace(line, f"{line}other_vkeys = {other_vkeys}\n"))


def test_a_member_may_list_other_log_keys_and_is_verified_under_each(tmp_path: Path) -> None:
    directory, vkey = _network(tmp_path)
    following = Signer.generate("east")
    _list_other_keys(directory, vkey, f'["{following.verifier_key()}"]')
    east = load_network(directory / "network.toml").member("east")
    assert east.vkey == vkey
    assert east.vkeys == (vkey, following.verifier_key())
    assert [v.key_id for v in east.verifiers()][1] == following.key_id
    trust = Trust.from_network(directory / "network.toml")
    assert [v.verifier_key() for v in trust.log_keys("east")] == list(east.vkeys)
    assert trust.log_keys("west") == (trust.log("west"),)
    assert trust.vkeys()["east"] == east.vkeys


@pytest.mark.parametrize(
    ("other_vkeys", "reason"),
    [
        ('"east+00000000+AAAA"', "must be a list"),
        ('["not a key"]', r"not name\+keyid\+key"),
        ("[WEST]", "a key of 'west'"),
        ("[EAST]", "lists the key ID"),
        ("[NEXT, NEXT]", "lists the key ID"),
    ],
)
def test_other_log_keys_of_another_name_or_repeated_are_refused(
    tmp_path: Path, other_vkeys: str, reason: str
) -> None:
    directory, vkey = _network(tmp_path)
    west = load_key_file(directory / "west" / "log.key").verifier_key()
    following = Signer.generate("east").verifier_key()
    listed = (
        other_vkeys.replace("WEST", f'"{west}"')
        .replace("EAST", f'"{vkey}"')
        .replace("NEXT", f'"{following}"')
    )
    _list_other_keys(directory, vkey, listed)
    with pytest.raises(ConfigError, match=reason) as refused:
        load_network(directory / "network.toml")
    assert refused.value.key == "exchange[0].other_vkeys"


def test_a_next_key_the_network_file_does_not_list_is_refused_naming_what_to_add(
    tmp_path: Path,
) -> None:
    directory, vkey = _network(tmp_path)
    path = directory / "east" / "kaifang.toml"
    text = path.read_text()
    path.write_text(
        text.replace('log_key = "log.key"\n', 'log_key = "log.key"\nlog_key_next = "next.key"\n')
    )
    following = create_key_file(directory / "east" / "next.key", "east")
    with pytest.raises(ConfigError, match="list its verifier key in other_vkeys") as refused:
        load_federation(load_config(path))
    assert refused.value.key == "log_key_next"
    assert following.verifier_key() in str(refused.value)
    _list_other_keys(directory, vkey, f'["{following.verifier_key()}"]')
    assert load_federation(load_config(path)) is not None
    # Retired: the next key is the log key, the old one still listed.
    path.write_text(text.replace('log_key = "log.key"', 'log_key = "next.key"'))
    assert load_federation(load_config(path)) is not None
