"""Federation: one node's part in the network of exchanges (DESIGN.md §5).

A node replicates every other member's log, serves every log it holds to
its peers, forwards statements to their subjects' homes, witnesses its
peers' checkpoints and keeps evidence of any origin caught signing two
histories. This module is the I/O shell of all that; the checks it relies
on are pure and live in the ledger (Merkle proofs, signed notes,
cosignatures).

**Replication.** For each peer a loop polls the peer's heads
(:data:`HEADS_INTERVAL_S`). For every origin the peer holds further than
this node, and that no stream is already fetching, it opens a *follow*
stream of that origin's entries from this node's cursor (the replica's
size). Each batch carries a checkpoint signed by the origin and, when the
batch ends before it, a consistency proof: the batch is accepted only if the
tree held so far, extended by the batch, is the tree the origin signed
(:meth:`ledger.store.LogStore.replicate`), so any peer can relay any origin
and an altered, dropped or reordered entry is refused with nothing written.
The entries, the replica's checkpoint and the views they change commit in
one transaction; the replica's size is the durable cursor.

**Forks.** A checkpoint of an origin is compared with the one this node
holds at the same size, wherever it comes from (a peer's heads, a stream,
a witnessing request). Two different roots for one size, or an origin's own
consistency proof that fails between two of its signed checkpoints, are
stored as evidence; the origin is then *halted*: nothing more of it is
applied or cosigned, the ``kaifang_fork_evidence_total`` metric counts it
and an error is logged.

**Log keys.** A member's log may have several keys (``vkey`` and
``other_vkeys`` in the network file: a key being rotated in, or retired):
a checkpoint of an origin is accepted, for a batch, a head, a witnessing
request or fork evidence, when any of its keys signed it, and a bad
signature by any of them rejects it. Fork checks compare roots at one size,
never signatures: a checkpoint signed again by another key of its log is the
same checkpoint. Replicas store the origin's signatures by all of its keys,
so that readers who know only one of them can check what a replica serves.

**Witnessing.** After each change of its own log a node asks every member to
cosign its latest checkpoint (C2SP tlog-witness semantics, over gRPC);
cosignatures are stored and served with the checkpoint in the heads.

**Routing.** :meth:`Federation.route` is the exchange's router: it forwards a
statement to its home and returns the home's receipt, or raises
:class:`~exchange.errors.HomeUnavailableError` (the client retries) or
:class:`~exchange.errors.ForwardedError` (the home's refusal, verbatim).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.sql import Executable

from exchange import metrics
from exchange.errors import (
    ForwardedError,
    HomeUnavailableError,
    InvalidFieldError,
    WitnessRefusedError,
)
from exchange.network import (
    Member,
    Network,
    NetworkError,
    TlsIdentity,
    channel_credentials,
    channel_options,
)
from exchange.node import Exchange, Submitted, apply_rows
from exchange.queries import cosignature_lines
from kaifang.exchange.v1 import statements_pb2 as pb
from kaifang.federation.v1 import federation_pb2 as fed
from kaifang.federation.v1 import federation_pb2_grpc as fed_grpc
from ledger.checkpoint import Checkpoint, open_checkpoint, own_signatures
from ledger.cosignature import CosignatureSigner
from ledger.errors import (
    KeyMismatchError,
    LedgerError,
    ProofError,
    ReplicaGapError,
    SizeNotSignedError,
)
from ledger.merkle import EMPTY_ROOT, verify_consistency
from ledger.models import Cosignature, ForkEvidence, Log, Witnessed
from ledger.note import parse_note
from ledger.store import LogStore, ReplicaBatch, SignedCheckpoint, utc_now

log = logging.getLogger(__name__)

# How often each peer's heads are polled: the bound on how long a stalled or
# broken stream goes unnoticed, and how often forks are looked for.
HEADS_INTERVAL_S = 1.0
# A peer's fork evidence is read every this many polls of its heads (and at
# once when one of its heads says it halted an origin).
EVIDENCE_EVERY = 5
# Least time between two rounds of asking the witnesses to cosign (seconds).
COSIGN_INTERVAL_S = 0.5
# Entries per streamed batch unless the caller asks for fewer: a catching-up
# node applies a batch per transaction, so larger batches share commits.
STREAM_BATCH = 2000
# Bytes of entries a catching-up node gathers from consecutive batches into
# one transaction.
GATHER_BYTES = 2 << 20
# Bytes of entries per streamed batch, well under the 4 MiB message limit
# (entries may be up to 64 KiB each).
STREAM_BATCH_BYTES = 2 << 20
# A follow stream with nothing to send re-checks this often (seconds).
FOLLOW_POLL_S = 5.0
# Deadline of a forwarded statement, and of a heads or witnessing call.
FORWARD_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 5.0
# What an unreachable home's RetryInfo tells the client to wait.
RETRY_AFTER_S = 1.0
# After a peer served a batch that failed its proof, it is not asked for that
# origin again for this long (seconds).
PENALTY_S = 5.0
# A stream that has delivered nothing for this long while another peer holds
# more of its origin is given up (a stalled or deliberately slow source must
# not hold an origin back), and its source penalised.
STALL_S = 5.0
SAME_SIZE = "SAME_SIZE_DIFFERENT_ROOT"
INCONSISTENT = "INCONSISTENT"


def network_digest(heads: Iterable[tuple[str, int, bytes]]) -> bytes:
    """SHA-256 over the lines ``"<origin> <size> <hex root>\\n"`` of the heads, sorted by origin.

    Two nodes are converged exactly when their digests are equal.
    """
    digest = hashlib.sha256()
    for origin, size, root in sorted(heads):
        digest.update(f"{origin} {size} {root.hex()}\n".encode())
    return digest.digest()


@dataclass(frozen=True)
class Head:
    """The latest checkpoint this node holds of one origin."""

    origin: str
    checkpoint: SignedCheckpoint
    # The note with the cosignatures collected for it (own log) or received.
    note: str
    halted: bool
    held: int


@dataclass
class PeerState:
    """What this node keeps about a peer between polls."""

    # Origins whose batches from this peer failed their proof, until when.
    penalised: dict[str, float] = field(default_factory=dict)
    # Polls since this peer's fork evidence was last read.
    polls: int = 0


class Federation:
    """This node's side of the network: replication, routing, witnessing, fork evidence."""

    def __init__(
        self,
        exchange: Exchange,
        network: Network,
        identity: TlsIdentity,
        witness: CosignatureSigner,
        *,
        peers: Sequence[str] | None = None,
        dial: Mapping[str, str] | None = None,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        """Federate ``exchange`` (whose origin must be a member of ``network``).

        ``dial`` maps a member to the address to dial it at instead of the
        network file's (``[federation] dial``).
        """
        self.exchange = exchange
        self.db = exchange.db
        self.network = network
        self.name = exchange.origin
        self.member = network.member(self.name)
        self.witness = witness
        self._identity = identity
        self._dial = dict(dial or {})
        self._clock = clock
        others = [m.name for m in network.members if m.name != self.name]
        self.peers = list(peers) if peers is not None else others
        # Origin -> the verifiers of every key of its log (network file order).
        self.verifiers = {m.name: m.verifiers() for m in network.members}
        self.halted: set[str] = set()
        self.peer_state: dict[str, PeerState] = {p: PeerState() for p in self.peers}
        self._channels: dict[str, grpc.aio.Channel] = {}
        # origin -> (peer, task) of the stream fetching it.
        self._streams: dict[str, tuple[str, asyncio.Task[None]]] = {}
        # origin -> (entries held, when that size was first seen): stream progress.
        self._progress: dict[str, tuple[int, float]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # Per witness, the size of this node's log it last cosigned.
        self._witnessed: dict[str, int] = {}

    # -- life cycle -------------------------------------------------------

    async def start_replicas(self) -> None:
        """Create the replicas of the members' logs and load the evidence held.

        A replica accepts the keys the network file lists for its origin
        (so that ``fsck`` checks its checkpoints against them); a listed key
        it did not know yet (a member rotating its key) is added. Raises
        :class:`~ledger.errors.KeyMismatchError` if the network file lists
        none of the keys a replica already accepts: that is another log, or
        a network file that dropped the key that signed what the replica
        holds.
        """
        for member in self.network.members:
            if member.name == self.name:
                continue
            store = await LogStore.create(self.db, member.name, member.vkey)
            if not set(member.vkeys) & set(store.vkeys):
                raise KeyMismatchError(
                    f"the replica of {member.name} holds checkpoints signed by "
                    f"{', '.join(store.vkeys)}; the network file lists none of them "
                    f"({', '.join(member.vkeys)}): keep a retired key in other_vkeys"
                )
            for vkey in member.vkeys:
                if await store.accept_key(vkey, clock=self._clock):
                    log.info("replica of %s accepts a new log key", member.name,
                             extra={"origin": member.name, "vkey": vkey})  # fmt: skip
        query = select(ForkEvidence.origin).distinct()
        self.halted = set(await self.db.read(lambda c: list(c.execute(query).scalars())))
        for origin in sorted(self.halted):
            log.error("origin %s is halted: this node holds fork evidence against it", origin,
                      extra={"origin": origin})  # fmt: skip

    async def start(self) -> None:
        """Start polling the peers and collecting cosignatures."""
        for peer in self.peers:
            self._tasks.append(asyncio.create_task(self._peer_loop(peer), name=f"peer {peer}"))
        self._tasks.append(asyncio.create_task(self._cosign_loop(), name="cosign"))

    async def stop(self) -> None:
        """Stop every loop and stream and close the channels."""
        tasks = self._tasks + [task for _, task in self._streams.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._streams.clear()
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()

    def _stub(self, name: str) -> fed_grpc.FederationServiceAsyncStub:
        channel = self._channels.get(name)
        if channel is None:
            member = self.network.member(name)
            channel = self._channels[name] = grpc.aio.secure_channel(
                self._dial.get(name, member.address),
                channel_credentials(self.network, self._identity),
                options=channel_options(member),
            )
        # The stub's __new__ is typed to return the async stub for an aio channel.
        return fed_grpc.FederationServiceStub(channel)

    # -- serving ----------------------------------------------------------

    async def heads(self) -> list[Head]:
        """The latest checkpoint of every origin held, own log's with its cosignatures."""
        origins = await self.db.read(lambda c: list(c.execute(select(Log.origin)).scalars()))
        heads = []
        for origin in sorted(origins):
            store = await self.exchange.log(origin)
            try:
                latest = await store.latest_checkpoint()
            except SizeNotSignedError:
                continue  # a replica that has received nothing yet
            note = latest.note
            if origin == self.name:
                note += "".join(await self._cosignatures(store, latest.size))
            held = await store.size()
            heads.append(Head(origin, latest, note, origin in self.halted, held))
        return heads

    async def _cosignatures(self, store: LogStore, size: int) -> list[str]:
        return await self.db.read(lambda c: cosignature_lines(c, store.log_id, size))

    async def batches(
        self, origin: str, start: int, *, follow: bool, max_batch: int
    ) -> AsyncIterator[fed.StreamEntriesResponse]:
        """Yield ``origin``'s entries from ``start``, each batch with the checkpoint proving it.

        A batch ends at a size the log holds a signed checkpoint at when one
        falls within ``max_batch`` entries (the receiver can then store it and
        serve proofs at it); otherwise it carries the latest checkpoint and a
        consistency proof from its end. With ``follow``, waits for more.
        """
        store = await self.exchange.log(origin)
        limit = max_batch or STREAM_BATCH
        first = True
        while not self.exchange.stopping:
            grown = self.exchange.log_grown(origin)
            try:
                latest = await store.latest_checkpoint()
            except SizeNotSignedError:
                latest = None
            if latest is not None and start < latest.size:
                high = min(start + limit, latest.size)
                entries: list[bytes] = []
                async for rows in store.entries(start, high, batch=high - start):
                    entries.extend(data for _, data in rows)
                entries = _within_bytes(entries, STREAM_BATCH_BYTES)
                signed = await store.signed_sizes(start + 1, start + len(entries))
                end = signed[-1] if signed else start + len(entries)
                del entries[end - start :]
                proof: list[bytes] = []
                if signed:
                    checkpoint = await store.checkpoint(end)
                else:
                    proof, checkpoint = await store.consistency_proof(
                        end, latest.size, old_signed=False
                    )
                yield fed.StreamEntriesResponse(
                    origin=origin, start=start, entries=entries,
                    checkpoint=checkpoint.note, consistency_proof=proof, more=end < latest.size,
                )  # fmt: skip
                start = end
                continue
            if latest is not None and start == latest.size and first:
                # Nothing new, but the caller may lack the checkpoint at the
                # size it holds (a new replica of an empty log): send it.
                yield fed.StreamEntriesResponse(origin=origin, start=start, checkpoint=latest.note)
            first = False
            if not follow or self.exchange.stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(grown.wait(), FOLLOW_POLL_S)

    async def forward_in(self, signed: pb.SignedStatement) -> Submitted:
        """Sequence a statement a peer forwarded: this node must be its subject's home."""
        return await self.exchange.submit(signed, route=False)

    async def cosign(self, caller: Member, old_size: int, proof: Sequence[bytes], note: str) -> str:
        """Witness ``caller``'s checkpoint ``note``; return the cosignature line.

        C2SP tlog-witness: the checkpoint must be signed by the caller's log
        key and name the caller as origin; ``old_size`` must be the size last
        cosigned for it (else ``OLD_SIZE_MISMATCH``); it must extend that one
        (same size: same root, else ``FORK_DETECTED``; larger: the proof must
        verify, else ``INCONSISTENT``). The state is checked and replaced in
        one transaction, so concurrent requests cannot both succeed.
        """
        try:
            checkpoint = open_checkpoint(note, self.verifiers[caller.name])
        except LedgerError as e:
            raise InvalidFieldError("checkpoint", str(e)) from e
        if caller.name in self.halted:
            raise WitnessRefusedError(
                "ORIGIN_HALTED", f"this node holds fork evidence against {caller.name}", 0
            )
        if checkpoint.size < old_size:
            raise InvalidFieldError(
                "old_size", f"{old_size} is above the checkpoint's size {checkpoint.size}"
            )
        now = self._clock()
        stripped = own_signatures(note, self.verifiers[caller.name])

        def decide(conn: Connection) -> tuple[str | None, WitnessRefusedError | None]:
            row = conn.execute(
                select(Witnessed.size, Witnessed.root_hash, Witnessed.note).where(
                    Witnessed.origin == caller.name
                )
            ).first()
            size, root, held_note = (0, EMPTY_ROOT, "") if row is None else (
                int(row[0]), bytes(row[1]), row[2]
            )  # fmt: skip
            if old_size != size:
                return None, WitnessRefusedError(
                    "OLD_SIZE_MISMATCH", f"this witness last cosigned size {size}", size
                )
            if checkpoint.size == size and row is not None:
                if not hmac.compare_digest(checkpoint.root_hash, root):
                    self._store_evidence(conn, caller.name, SAME_SIZE, held_note, stripped, b"",
                                         caller.name, now)  # fmt: skip
                    return SAME_SIZE, WitnessRefusedError(
                        "FORK_DETECTED",
                        f"{caller.name} signed two roots for size {size}; evidence kept", size,
                    )  # fmt: skip
            else:
                try:
                    verify_consistency(size, checkpoint.size, proof, root, checkpoint.root_hash)
                except ProofError as e:
                    if row is None:
                        raise InvalidFieldError("consistency_proof", str(e)) from e
                    self._store_evidence(conn, caller.name, INCONSISTENT, held_note, stripped,
                                         b"".join(proof), caller.name, now)  # fmt: skip
                    return INCONSISTENT, WitnessRefusedError(
                        "INCONSISTENT",
                        f"{caller.name}'s proof from size {size} to {checkpoint.size} fails: {e}",
                        size,
                    )  # fmt: skip
            values = {"size": checkpoint.size, "root_hash": checkpoint.root_hash,
                      "note": stripped, "cosigned_at": now}  # fmt: skip
            if row is None:
                conn.execute(insert(Witnessed).values(origin=caller.name, **values))
            else:
                conn.execute(
                    update(Witnessed)
                    .where(Witnessed.origin == caller.name, Witnessed.size == size)
                    .values(**values)
                )
            return None, None

        kind, refusal = await self.db.write(decide)
        if kind is not None:
            await self._halt(caller.name, kind, caller.name)
        if refusal is not None:
            raise refusal
        body = parse_note(stripped).text
        return self.witness.cosign(body, int(now.timestamp())).line()

    async def evidence(self, origin: str = "") -> list[fed.ForkEvidence]:
        """The fork evidence held, oldest first (against ``origin`` only, if given)."""
        query = select(ForkEvidence).order_by(ForkEvidence.id)
        if origin:
            query = query.where(ForkEvidence.origin == origin)

        def read(conn: Connection) -> list[fed.ForkEvidence]:
            found = []
            for row in conn.execute(query):
                proof = bytes(row.proof)
                found.append(
                    fed.ForkEvidence(
                        origin=row.origin, kind=row.kind, checkpoint_a=row.checkpoint_a,
                        checkpoint_b=row.checkpoint_b,
                        proof=[proof[i : i + 32] for i in range(0, len(proof), 32)],
                        source=row.source,
                        detected_at=row.detected_at.astimezone(dt.UTC).isoformat(),
                    )
                )  # fmt: skip
            return found

        return await self.db.scan(read)

    # -- routing ----------------------------------------------------------

    async def route(self, home: str, signed: pb.SignedStatement) -> Submitted:
        """Forward ``signed`` to ``home`` and return the home's receipt."""
        try:
            self.network.member(home)
        except NetworkError as e:
            raise HomeUnavailableError(home, "not a member of the network", RETRY_AFTER_S) from e
        request = fed.ForwardStatementRequest(signed=signed)
        try:
            response = await self._stub(home).ForwardStatement(request, timeout=FORWARD_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise HomeUnavailableError(home, e.code().name, RETRY_AFTER_S) from e
            raise ForwardedError(home, _status_of(e)) from e
        return Submitted(
            response.statement_id, response.origin, response.index, response.receipt,
            response.duplicate,
        )  # fmt: skip

    # -- replication ------------------------------------------------------

    async def _peer_loop(self, peer: str) -> None:
        state = self.peer_state[peer]
        while True:
            try:
                await self._poll(peer, state)
            except grpc.aio.AioRpcError as e:
                # A peer that is down is normal in a network: said at debug level.
                log.debug("peer %s: %s", peer, e.code().name, extra={"peer": peer})
            except Exception:
                log.exception("polling peer %s failed", peer, extra={"peer": peer})
            # A little jitter, so that peers do not poll in lockstep.
            await asyncio.sleep(HEADS_INTERVAL_S * (0.75 + random.random() / 2))  # noqa: S311

    async def _poll(self, peer: str, state: PeerState) -> None:
        response = await self._stub(peer).GetHeads(fed.GetHeadsRequest(), timeout=CALL_TIMEOUT_S)
        state.polls += 1
        if state.polls % EVIDENCE_EVERY == 1 or any(
            h.halted and h.origin not in self.halted for h in response.heads
        ):
            await self._adopt_evidence(peer)
        for head in response.heads:
            origin = head.origin
            if origin == self.name or origin not in self.verifiers or origin in self.halted:
                continue
            try:
                checkpoint = open_checkpoint(head.checkpoint, self.verifiers[origin])
            except LedgerError:
                log.warning("peer %s served a head of %s not signed by its key", peer, origin,
                            extra={"peer": peer, "origin": origin})  # fmt: skip
                continue
            if await self._check_fork(origin, checkpoint, head.checkpoint, peer):
                continue
            store = await self.exchange.log(origin)
            held = await store.size()
            current = self._streams.get(origin)
            now = time.monotonic()
            if (
                current is not None and peer == origin and current[0] != origin
                and state.penalised.get(origin, 0.0) <= now
            ):  # fmt: skip
                # Straight from the origin beats through a relay: one hop less.
                current[1].cancel()
                del self._streams[origin]
            elif checkpoint.size <= held:
                self._progress[origin] = (held, now)  # not behind: nothing is owed
            elif current is not None and current[0] != peer:
                self._give_up_if_stalled(origin, current, held, now)
            if origin in self._streams or checkpoint.size < held:
                continue
            if checkpoint.size == held and await _has_checkpoint(store, held):
                continue
            if state.penalised.get(origin, 0.0) > time.monotonic():
                continue
            task = asyncio.create_task(self._follow(peer, origin), name=f"follow {origin}@{peer}")
            self._streams[origin] = (peer, task)

    def _give_up_if_stalled(
        self, origin: str, current: tuple[str, asyncio.Task[None]], held: int, now: float
    ) -> None:
        """Cancel ``origin``'s stream if this node has been behind ``held`` for STALL_S.

        The clock starts when the node was last seen not behind, or last grew.
        """
        seen = self._progress.get(origin)
        if seen is None or seen[0] != held:
            self._progress[origin] = (held, now)
            return
        if now - seen[1] < STALL_S:
            return
        source, task = current
        task.cancel()
        del self._streams[origin]
        del self._progress[origin]
        self.peer_state[source].penalised[origin] = now + PENALTY_S
        log.warning("stream of %s from %s delivered nothing for %.0f s; asking another peer",
                    origin, source, now - seen[1],
                    extra={"origin": origin, "peer": source})  # fmt: skip

    async def _adopt_evidence(self, peer: str) -> None:
        """Take the peer's fork evidence of the same-size kind, which proves itself.

        Two checkpoints of one size with different roots, both signed by the
        origin, need no trust in whoever relays them: each is checked here,
        and an origin so proven is halted on this node too, even if every
        source showed it only one of the two histories.
        """
        found = await self._stub(peer).ListForkEvidence(
            fed.ListForkEvidenceRequest(), timeout=CALL_TIMEOUT_S
        )
        for evidence in found.evidence:
            origin = evidence.origin
            if origin in self.halted or origin not in self.verifiers or evidence.kind != SAME_SIZE:
                continue
            try:
                a = open_checkpoint(evidence.checkpoint_a, self.verifiers[origin])
                b = open_checkpoint(evidence.checkpoint_b, self.verifiers[origin])
            except LedgerError:
                log.warning("peer %s holds fork evidence against %s that does not verify", peer,
                            origin, extra={"peer": peer, "origin": origin})  # fmt: skip
                continue
            if a.size != b.size or hmac.compare_digest(a.root_hash, b.root_hash):
                continue
            store = functools.partial(
                self._store_evidence, origin=origin, kind=SAME_SIZE, a=evidence.checkpoint_a,
                b=evidence.checkpoint_b, proof=b"", source=peer, now=self._clock(),
            )  # fmt: skip
            await self.db.write(store)
            await self._halt(origin, SAME_SIZE, peer)

    async def _check_fork(
        self, origin: str, checkpoint: Checkpoint, note: str, source: str
    ) -> bool:
        """Keep evidence and halt ``origin`` if this node holds another root at the same size."""
        store = await self.exchange.log(origin)
        try:
            held = await store.checkpoint(checkpoint.size)
        except SizeNotSignedError:
            return False
        if hmac.compare_digest(held.root_hash, checkpoint.root_hash):
            return False
        now = self._clock()
        stripped = own_signatures(note, self.verifiers[origin])
        await self.db.write(
            lambda c: self._store_evidence(c, origin, SAME_SIZE, held.note, stripped, b"",
                                           source, now)
        )  # fmt: skip
        await self._halt(origin, SAME_SIZE, source)
        return True

    def _store_evidence(
        self, conn: Connection, origin: str, kind: str, a: str, b: str, proof: bytes,
        source: str, now: dt.datetime,
    ) -> None:  # fmt: skip
        conn.execute(
            insert(ForkEvidence).values(
                origin=origin, kind=kind, checkpoint_a=a, checkpoint_b=b, proof=proof,
                source=source, detected_at=now,
            )
        )  # fmt: skip

    async def _halt(self, origin: str, kind: str, source: str) -> None:
        metrics.FORK_EVIDENCE.labels(origin).inc()
        if origin in self.halted:
            return
        self.halted.add(origin)
        log.error(
            "FORK: %s signed two checkpoints that cannot both be true (%s, from %s); "
            "evidence kept, the origin is no longer applied", origin, kind, source,
            extra={"origin": origin, "kind": kind, "source": source},
        )  # fmt: skip
        stream = self._streams.pop(origin, None)
        if stream is not None:
            stream[1].cancel()

    async def _follow(self, peer: str, origin: str) -> None:
        """Fetch ``origin``'s log from ``peer`` and keep following it, until it fails."""
        try:
            store = await self.exchange.log(origin)
            start = await store.size()
            request = fed.StreamEntriesRequest(origin=origin, start=start, follow=True)
            call = self._stub(peer).StreamEntries(request)
            gathered: list[ReplicaBatch] = []
            size = 0
            async for batch in call:
                if origin in self.halted:
                    return
                gathered.append(await self._check_batch(peer, store, batch))
                size += sum(map(len, batch.entries))
                # While catching up, batches share a transaction (and its
                # commit); once caught up, each is applied as it comes.
                if batch.more and size < GATHER_BYTES:
                    continue
                await self._accept(store, gathered)
                gathered, size = [], 0
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                log.info("stream of %s from %s ended: %s", origin, peer, e.code().name,
                         extra={"origin": origin, "peer": peer})  # fmt: skip
        except (ProofError, _BadBatch) as e:
            self.peer_state[peer].penalised[origin] = time.monotonic() + PENALTY_S
            metrics.REPLICATION_REFUSED.labels(origin, peer).inc()
            log.warning("refused a batch of %s from %s: %s", origin, peer, e,
                        extra={"origin": origin, "peer": peer})  # fmt: skip
        except (ReplicaGapError, _Halted):
            pass  # another stream wrote first, or the origin forked: the next poll decides
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("replicating %s from %s failed", origin, peer,
                          extra={"origin": origin, "peer": peer})  # fmt: skip
        finally:
            current = self._streams.get(origin)
            if current is not None and current[1] is asyncio.current_task():
                del self._streams[origin]

    async def _check_batch(
        self, peer: str, store: LogStore, batch: fed.StreamEntriesResponse
    ) -> ReplicaBatch:
        """Check a batch's origin and checkpoint signature, and look for a fork."""
        origin = store.origin
        if batch.origin != origin:
            raise _BadBatch(f"batch is of {batch.origin!r}, not {origin!r}")
        try:
            checkpoint = open_checkpoint(batch.checkpoint, self.verifiers[origin])
        except LedgerError as e:
            raise _BadBatch(f"checkpoint: {e}") from e
        end = batch.start + len(batch.entries)
        if checkpoint.size < end:
            raise _BadBatch(f"checkpoint size {checkpoint.size} is below the batch end {end}")
        if await self._check_fork(origin, checkpoint, batch.checkpoint, peer):
            raise _Halted(origin)
        note = own_signatures(batch.checkpoint, self.verifiers[origin])
        return ReplicaBatch(
            batch.start, list(batch.entries), checkpoint, note, list(batch.consistency_proof)
        )

    async def _accept(self, store: LogStore, batches: list[ReplicaBatch]) -> None:
        """Append checked batches to the replica and apply them to the views, in one transaction."""
        origin = store.origin
        skipped = await store.replicate(batches, lambda conn, rows: apply_rows(origin, rows, conn))
        if skipped:
            log.warning("%d entries of %s not applied to the views", skipped, origin,
                        extra={"origin": origin})  # fmt: skip
        count = sum(len(b.entries) for b in batches)
        metrics.REPLICATED.labels(origin).inc(count)
        metrics.LEDGER_SIZE.labels(origin).set(batches[-1].start + len(batches[-1].entries))
        if count:
            await self.exchange.views_changed(origin)

    # -- witnessing -------------------------------------------------------

    async def _cosign_loop(self) -> None:
        """Ask every member to cosign this node's latest checkpoint whenever it changes."""
        store = self.exchange.store
        while not self.exchange.stopping:
            grown = self.exchange.log_grown(self.name)
            try:
                latest = await store.latest_checkpoint()
                await asyncio.gather(
                    *(self._ask_witness(m, store, latest) for m in self.network.members
                      if m.name != self.name)
                )  # fmt: skip
            except Exception:
                log.exception("collecting cosignatures failed")
            # Cosignatures show that no split view was shown; one round a
            # second says so as well as one per batch, at a fraction of the calls.
            await asyncio.sleep(COSIGN_INTERVAL_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(grown.wait(), HEADS_INTERVAL_S)

    async def _ask_witness(self, member: Member, store: LogStore, latest: SignedCheckpoint) -> None:
        name = member.name
        if self._witnessed.get(name) == latest.size:
            return
        old = self._witnessed.get(name, 0)
        for _ in range(2):
            proof, _ = await store.consistency_proof(old, latest.size) if old else ([], latest)
            request = fed.AddCheckpointRequest(
                old_size=old, consistency_proof=proof, checkpoint=latest.note
            )
            try:
                response = await self._stub(name).AddCheckpoint(request, timeout=CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as e:
                info = _error_info(e)
                if info is not None and info.reason == "OLD_SIZE_MISMATCH":
                    witnessed = int(info.metadata.get("witnessed_size", "0"))
                    if witnessed <= latest.size:
                        old = witnessed
                        continue
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    log.warning("witness %s refused checkpoint %d: %s", name, latest.size,
                                e.details(), extra={"witness": name})  # fmt: skip
                return
            # A node that restarted asks again for sizes already cosigned: the
            # witness answers again, and the stored cosignature stands.
            row = self.db.insert_ignore(
                Cosignature,
                {"log_id": store.log_id, "size": latest.size,
                 "witness": response.witness_vkey, "line": response.cosignature},
                ["log_id", "size", "witness"],
            )  # fmt: skip
            await self.db.write(functools.partial(_execute, row))
            self._witnessed[name] = latest.size
            return


def _within_bytes(entries: list[bytes], limit: int) -> list[bytes]:
    """The longest prefix of ``entries`` (at least one) whose sizes add up to at most ``limit``."""
    total = 0
    for i, entry in enumerate(entries):
        total += len(entry)
        if total > limit and i > 0:
            return entries[:i]
    return entries


async def _has_checkpoint(store: LogStore, size: int) -> bool:
    try:
        await store.checkpoint(size)
    except SizeNotSignedError:
        return False
    return True


def _execute(statement: Executable, conn: Connection) -> None:
    conn.execute(statement)


class _Halted(Exception):
    """The origin being replicated was found to fork."""


class _BadBatch(Exception):
    """A peer sent a batch that is malformed or not proven by the origin's signature."""


def _status_of(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The ``google.rpc.Status`` of a failed call, details included when the server sent them."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is not None:
        return status
    return status_pb2.Status(code=error.code().value[0], message=error.details() or "")


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo | None:
    for detail in _status_of(error).details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None
