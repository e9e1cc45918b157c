"""Restoring a node's own log after its database is lost: from any peer, or from a tile export.

A node's log lives on in two places besides its database: every member of
its network replicates it, and ``kaifang ledger tiles`` exports it as C2SP
tlog-tiles. Either is enough to bring it back, and neither has to be
trusted: every entry restored is checked against a checkpoint signed with
the log's own key, exactly as a replica checks a peer's batches
(:meth:`ledger.store.LogStore.replicate`), so a peer or an export directory
that altered, dropped or reordered anything restores nothing.

Restore into an empty database, before the node is started again: a node
that started on an empty database has begun a new log, and a new log's
first entries would fork from the one its peers hold. Restore from the
largest copy there is (:func:`restore_from_peers` asks every member and
takes the one holding most): entries the node sequenced but nobody else
received are gone, and the next statement will take their index. The views
are rebuilt from the restored log when the node starts.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from exchange.config import ConfigError, NodeConfig
from exchange.network import Network, TlsIdentity, channel_credentials, channel_options
from kaifang.federation.v1 import federation_pb2 as fed
from kaifang.federation.v1 import federation_pb2_grpc as fed_grpc
from ledger.checkpoint import Checkpoint, open_checkpoint, own_signatures
from ledger.db import Database
from ledger.merkle import NodeId, consistency_plan, fold_right, leaf_hash, node_hash, subtrees
from ledger.note import Verifier
from ledger.store import LogStore, ReplicaBatch
from ledger.tiles import bundles_for_size, decode_bundle, entries_path

log = logging.getLogger(__name__)

# Entries per restored transaction: a few MB of SQL at most.
BATCH_ENTRIES = 2000
# Seconds a peer may take to answer GetHeads, and to send each batch.
HEADS_TIMEOUT_S = 10.0
BATCH_TIMEOUT_S = 30.0


class RestoreError(Exception):
    """The log cannot be restored: the database is not empty, no source holds it, or a
    source's copy does not verify."""


@dataclass(frozen=True)
class Restored:
    """What was restored, and from where."""

    origin: str
    size: int  # entries restored; the log's size now
    source: str  # "peer NAME" or "tiles DIR"


async def _empty_log(db: Database, origin: str, vkeys: Sequence[str]) -> LogStore:
    """The log ``origin`` in ``db``, accepting ``vkeys``; refused unless it holds nothing."""
    await db.migrate()
    store = await LogStore.create(db, origin, vkeys[0])
    for vkey in vkeys[1:]:  # a rotated log: its earlier checkpoints are by other keys
        await store.accept_key(vkey)
    held = await store.size()
    if held:
        raise RestoreError(
            f"the database already holds {held} entries of {origin}: restore into an empty one"
        )
    return store


# -- from a peer ----------------------------------------------------------------


async def restore_from_peers(
    config: NodeConfig,
    network: Network,
    identity: TlsIdentity,
    *,
    peer: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Restored:
    """Fetch ``config.origin``'s log from ``peer`` (default: the member holding most).

    ``progress(done, total)`` is called after each batch. Raises
    :class:`RestoreError` if the database is not empty or no member holds the
    log, and :class:`~ledger.errors.LedgerError` if a batch does not verify.
    """
    member = network.member(config.origin)
    verifiers = member.verifiers()
    db = Database(config.database)
    channels: dict[str, grpc.aio.Channel] = {}
    try:
        store = await _empty_log(db, config.origin, member.vkeys)

        def stub(name: str) -> fed_grpc.FederationServiceAsyncStub:
            if name not in channels:
                other = network.member(name)
                channels[name] = grpc.aio.secure_channel(
                    other.address,
                    channel_credentials(network, identity),
                    options=channel_options(other),
                )
            return fed_grpc.FederationServiceStub(channels[name])

        names = [peer] if peer else [m.name for m in network.members if m.name != member.name]
        source, size = await _largest_copy(names, config.origin, stub)
        if size == 0:
            raise RestoreError(f"no member holds any entry of {config.origin}")
        request = fed.StreamEntriesRequest(origin=config.origin, start=0, follow=False)
        call = stub(source).StreamEntries(request)
        while True:
            # A live but silent source must not hang the restore.
            try:
                response = await asyncio.wait_for(call.read(), BATCH_TIMEOUT_S)
            except TimeoutError:
                call.cancel()
                raise RestoreError(
                    f"{source} sent nothing for {BATCH_TIMEOUT_S:.0f} s; try --from-peer another"
                ) from None
            if response is grpc.aio.EOF:  # type: ignore[attr-defined]  # (missing from the stubs)
                break
            assert isinstance(response, fed.StreamEntriesResponse)
            if response.origin != config.origin:
                raise RestoreError(f"{source} sent entries of {response.origin!r}")
            checkpoint = open_checkpoint(response.checkpoint, verifiers)
            batch = ReplicaBatch(
                response.start,
                list(response.entries),
                checkpoint,
                own_signatures(response.checkpoint, verifiers),
                list(response.consistency_proof),
            )
            await store.replicate([batch], lambda _conn, _rows: None)
            if progress is not None:
                progress(response.start + len(response.entries), size)
        restored = await store.size()
        if restored < size:
            raise RestoreError(f"{source} sent {restored} of the {size} entries it holds")
        log.info("log restored from a peer", extra={"origin": config.origin, "peer": source,
                                                    "size": restored})  # fmt: skip
        return Restored(config.origin, restored, f"peer {source}")
    finally:
        for channel in channels.values():
            await channel.close(None)
        await db.dispose()


async def _largest_copy(
    names: Sequence[str],
    origin: str,
    stub: Callable[[str], fed_grpc.FederationServiceAsyncStub],
) -> tuple[str, int]:
    """The member (of ``names``) holding most of ``origin``'s log, and how much."""
    best, best_size, reasons = "", 0, []
    for name in names:
        try:
            heads = await stub(name).GetHeads(fed.GetHeadsRequest(), timeout=HEADS_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            reasons.append(f"{name}: {e.code().name}")
            continue
        for head in heads.heads:
            if head.origin == origin and not head.halted and head.tree_size > best_size:
                best, best_size = name, head.tree_size
    if not best and reasons:
        raise RestoreError(f"no member answered: {'; '.join(reasons)}")
    return best, best_size


# -- from a tile export -------------------------------------------------------------


class _Levels:
    """Every perfect subtree hash of a tree, level by level (for proofs while restoring).

    About 2 hashes per entry: 64 MB for a million entries.
    """

    def __init__(self, leaves: list[bytes]) -> None:
        self.levels = [leaves]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append(
                [node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )

    def node(self, node: NodeId) -> bytes:
        level, index = node
        return self.levels[level][index]

    def root(self) -> bytes:
        """The RFC 6962 root: the perfect subtrees of the whole range, folded from the right."""
        return fold_right([self.node(n) for n in subtrees(0, len(self.levels[0]))])

    def consistency(self, old: int, new: int) -> list[bytes]:
        plan = consistency_plan(old, new)
        return plan.assemble({n: self.node(n) for n in plan.nodes()})


def _bundles(directory: Path, size: int) -> Iterator[list[bytes]]:
    for bundle in bundles_for_size(size):
        path = directory / entries_path(bundle.index, bundle.width)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise RestoreError(f"the export lacks {path}: {e}") from e
        yield decode_bundle(data, bundle.width)


async def restore_from_tiles(
    config: NodeConfig,
    vkeys: Sequence[str],
    directory: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Restored:
    """Load ``config.origin``'s log from the tile export in ``directory``.

    The export's ``checkpoint`` must be signed by one of the log's keys ``vkeys``
    (the first is the key the log was created with), and
    its entries must hash to that checkpoint's root; each batch is then
    stored with a consistency proof to it. Raises :class:`RestoreError` or
    :class:`~ledger.errors.LedgerError` naming what does not verify.
    """
    verifiers = [Verifier.from_vkey(v) for v in vkeys]
    try:
        note = (directory / "checkpoint").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RestoreError(f"{directory} holds no readable checkpoint: {e}") from e
    checkpoint: Checkpoint = open_checkpoint(note, verifiers, origin=config.origin)
    size = checkpoint.size
    leaves: list[bytes] = []
    for entries in _bundles(directory, size):
        leaves.extend(leaf_hash(e) for e in entries)
    if len(leaves) != size:
        raise RestoreError(f"{directory} holds {len(leaves)} entries, its checkpoint {size}")
    levels = _Levels(leaves) if leaves else None
    if levels is not None and not hmac.compare_digest(levels.root(), checkpoint.root_hash):
        raise RestoreError(f"the entries in {directory} do not hash to the checkpoint's root")
    db = Database(config.database)
    try:
        store = await _empty_log(db, config.origin, vkeys)
        own = own_signatures(note, verifiers)
        start = 0
        for entries in _bundles(directory, size):
            for i in range(0, len(entries), BATCH_ENTRIES):
                chunk = entries[i : i + BATCH_ENTRIES]
                end = start + len(chunk)
                proof = levels.consistency(end, size) if levels is not None else []
                batch = ReplicaBatch(start, chunk, checkpoint, own, proof)
                await store.replicate([batch], lambda _conn, _rows: None)
                start = end
                if progress is not None:
                    progress(start, size)
        return Restored(config.origin, await store.size(), f"tiles {directory}")
    finally:
        await db.dispose()


def load_member(config: NodeConfig) -> tuple[Network, TlsIdentity]:
    """The network and TLS identity of a member's configuration; ConfigError without one."""
    from exchange.network import load_federation

    membership = load_federation(config)
    if membership is None:
        raise ConfigError(
            f"{config.origin}: restoring from a peer needs the node's [federation] table"
        )
    return membership


__all__ = [
    "RestoreError",
    "Restored",
    "load_member",
    "restore_from_peers",
    "restore_from_tiles",
]
