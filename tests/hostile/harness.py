"""A node under attack: one in-process member of a network, with a little of everything in it.

Shared by the hostile tests. :func:`target` starts member ``a`` of a
two-member network (``b`` is never started: the tests call ``a``'s
federation API as ``b``, over mutual TLS with ``b``'s certificate), its
client API on a free loopback port, and fills it with a market
(:class:`Market`): parties, patents, an offer and its acceptance, a pledge,
roles, a dispute and its mediation, a credit event.

:func:`call_unary` and :func:`call_stream` send bytes exactly as given (no
serializer in between), so that a test can send what no stub would, and
return the status as an :class:`Answer`; :meth:`Target.writes` tells whether
anything at all was committed to the node's database since a mark (SQLite's
``PRAGMA data_version``, which moves on every commit by any other
connection), cheap enough to check after every fuzzed request.
:func:`probe` puts them together: one request, its answer checked
(:func:`check_client_error`), no write unless allowed, the node still healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from sqlalchemy.engine import make_url

from clients.localnet import free_port_block
from exchange.config import load_config
from exchange.network import (
    Network,
    TlsIdentity,
    channel_credentials,
    channel_options,
    init_network,
    load_network,
)
from exchange.sample import SampleParty, generate
from exchange.server import RunningNode, start_node
from exchange.statements import statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.keys import load_key_file
from ledger.note import Signer
from tests.exchange import story

ORIGIN = "a"
PEER = "b"
# Long enough for a loaded two-core machine; a hang still fails the test.
DEADLINE_S = 20.0
# Statuses a node must never answer a client's mistake with: they say the
# server broke (or does not know what happened), not that the request was wrong.
SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


@dataclass(frozen=True)
class Answer:
    """How a call ended: its code, the ``google.rpc.Status`` the node sent, the responses."""

    code: grpc.StatusCode
    details: str
    status: status_pb2.Status | None
    responses: tuple[bytes, ...] = ()
    # A stream still open when the caller stopped reading (a watch, a follow).
    still_open: bool = False

    def reason(self) -> str | None:
        """The ErrorInfo reason of a refusal, if the node sent one."""
        if self.status is None:
            return None
        info = error_details_pb2.ErrorInfo()
        for detail in self.status.details:
            if detail.Unpack(info):
                return info.reason
        return None

    def metadata(self) -> dict[str, str]:
        """The ErrorInfo metadata of a refusal (empty without one)."""
        if self.status is None:
            return {}
        info = error_details_pb2.ErrorInfo()
        for detail in self.status.details:
            if detail.Unpack(info):
                return dict(info.metadata)
        return {}


def _answer(error: grpc.aio.AioRpcError, responses: list[bytes]) -> Answer:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    return Answer(error.code(), error.details() or "", status, tuple(responses))


async def call_unary(channel: grpc.aio.Channel, method: str, payload: bytes) -> Answer:
    """Call unary ``method`` (``/package.Service/Method``) with ``payload`` as the request bytes."""
    rpc = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        response = await rpc(payload, timeout=DEADLINE_S)
    except grpc.aio.AioRpcError as e:
        return _answer(e, [])
    return Answer(grpc.StatusCode.OK, "", None, (bytes(response),))


async def call_stream(
    channel: grpc.aio.Channel,
    method: str,
    payload: bytes,
    *,
    idle_s: float = 0.3,
    most: int = 20,
) -> Answer:
    """Call server-streaming ``method`` with ``payload``; read until it ends, idles or ``most``.

    A stream that sends nothing for ``idle_s`` seconds (a watch with nothing
    new) or has sent ``most`` responses is cancelled and reported still open.
    """
    rpc = channel.unary_stream(method, request_serializer=None, response_deserializer=None)
    call = rpc(payload, timeout=DEADLINE_S)
    responses: list[bytes] = []
    try:
        while len(responses) < most:
            try:
                response = await asyncio.wait_for(call.read(), idle_s)
            except TimeoutError:
                break
            if response is grpc.aio.EOF:  # type: ignore[attr-defined]
                return Answer(grpc.StatusCode.OK, "", None, tuple(responses))
            assert isinstance(response, bytes)
            responses.append(response)
    except grpc.aio.AioRpcError as e:
        return _answer(e, responses)
    finally:
        call.cancel()
    return Answer(grpc.StatusCode.OK, "", None, tuple(responses), still_open=True)


def check_client_error(answer: Answer, what: object) -> None:
    """A refusal of a client's mistake: never a server fault, and it says why.

    Every refusal the node itself makes carries a ``google.rpc.Status`` with
    an ErrorInfo reason. gRPC's own refusal of a message over the size limit
    (RESOURCE_EXHAUSTED) carries none. A call that outlived the test's
    deadline is a failure: the node hung on it.
    """
    assert answer.code not in SERVER_FAULTS, (what, answer.code, answer.details)
    if answer.code == grpc.StatusCode.OK:
        return
    if answer.code == grpc.StatusCode.RESOURCE_EXHAUSTED and answer.status is None:
        return
    assert answer.reason(), ("a refusal without an ErrorInfo reason", what, answer)


@dataclass
class Market:
    """The parties, patents and statements a target node holds."""

    owner: SampleParty
    co_owner: SampleParty
    licensee: SampleParty
    bank: SampleParty
    mediator: SampleParty
    supervisor: SampleParty
    newcomer: SampleParty  # not registered
    offered: pb.PatentRecorded  # the owner's, with an active offer accepted by the licensee
    pledged: pb.PatentRecorded  # the owner's and co-owner's, pledged to the bank, offered
    spare: pb.PatentRecorded  # the owner's, nothing on it
    unrecorded: pb.PatentRecorded
    offer_id: bytes
    acceptance_id: bytes
    pledge_id: bytes
    dispute_id: bytes
    credit_event_id: bytes
    # Every statement the node admitted, in order.
    admitted: list[pb.SignedStatement]

    @property
    def parties(self) -> list[SampleParty]:
        """The registered parties."""
        return [
            self.owner, self.co_owner, self.licensee, self.bank, self.mediator, self.supervisor
        ]  # fmt: skip


@dataclass
class Target:
    """The node under attack and every way in."""

    node: RunningNode
    directory: Path  # the network's directory
    network: Network
    channel: grpc.aio.Channel  # the client API
    peer: grpc.aio.Channel  # the federation API, as member b
    register: Signer
    operator: Signer
    market: Market
    db_path: Path | None  # the SQLite file, None on PostgreSQL
    _watch: sqlite3.Connection | None = None

    @property
    def stub(self) -> exchange_pb2_grpc.ExchangeServiceAsyncStub:
        """The exchange API's stub on the client channel."""
        return exchange_pb2_grpc.ExchangeServiceStub(self.channel)

    def peer_key(self, name: str = PEER) -> Signer:
        """Member ``name``'s log key (to sign checkpoints as it)."""
        return load_key_file(self.directory / name / "log.key")

    async def size(self) -> int:
        """The size of the node's own log at its latest checkpoint."""
        return (await self.node.store.latest_checkpoint()).size

    def mark(self) -> int:
        """A mark to compare :meth:`writes` with (SQLite only)."""
        if self._watch is None:
            assert self.db_path is not None, "commit marks need the SQLite file"
            self._watch = sqlite3.connect(self.db_path)
        (version,) = self._watch.execute("PRAGMA data_version").fetchone()
        return int(version)

    def writes(self, mark: int) -> bool:
        """Whether anything was committed to the node's database since ``mark``."""
        return self.mark() != mark

    async def digest(self) -> dict[str, tuple[int, str]]:
        """Every table of the node's database: row count and hash."""
        return await story.database_digest(self.node.exchange.db)

    async def healthy(self) -> None:
        """The node still answers health checks on the client port: SERVING."""
        stub = health_pb2_grpc.HealthStub(self.channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=DEADLINE_S)
        assert response.status == health_pb2.HealthCheckResponse.SERVING

    def close(self) -> None:
        """Close the commit watcher."""
        if self._watch is not None:
            self._watch.close()


async def probe(
    t: Target,
    channel: grpc.aio.Channel,
    method: str,
    payload: bytes,
    *,
    stream: bool = False,
    may_write: Callable[[Answer], bool] = lambda _: False,
) -> Answer:
    """Send ``payload`` to ``method``; check the answer, that a refusal wrote nothing, and health.

    ``may_write`` says whether an answer is one that may have committed
    something (a statement admitted for the first time); nothing else may.
    """
    mark = t.mark()
    if stream:
        answer = await call_stream(channel, method, payload, idle_s=0.2)
    else:
        answer = await call_unary(channel, method, payload)
    check_client_error(answer, (method, payload))
    if not may_write(answer):
        assert not t.writes(mark), (method, payload, answer.code, "wrote to the database")
    await t.healthy()
    return answer


async def _submit_all(
    stub: exchange_pb2_grpc.ExchangeServiceAsyncStub, *signed: pb.SignedStatement
) -> None:
    response = await stub.SubmitStatements(
        api.SubmitStatementsRequest(signed=signed), timeout=DEADLINE_S
    )
    refused = [o.status for o in response.outcomes if o.WhichOneof("result") != "submitted"]
    assert not refused, refused


async def build_market(
    stub: exchange_pb2_grpc.ExchangeServiceAsyncStub, register: Signer, operator: Signer
) -> Market:
    """Admit a little of everything at the node behind ``stub``; return what it holds."""
    sample = generate(83, parties=7, patents=4)
    owner, co_owner, licensee, bank, mediator, supervisor, newcomer = sample.parties
    offered, pledged, spare, unrecorded = sample.patents
    steps: list[list[pb.SignedStatement]] = []
    steps.append(
        [story.registration(p) for p in (owner, co_owner, licensee, bank, mediator, supervisor)]
    )
    steps.append(
        [
            story.record(offered, [owner], register),
            story.record(pledged, [owner, co_owner], register),
            story.record(spare, [owner], register),
            story.role(mediator, pb.ROLE_MEDIATOR, operator, ORIGIN),
            story.role(supervisor, pb.ROLE_SUPERVISOR, operator, ORIGIN),
        ]
    )
    offer = story.offer(offered.application_number, [owner])
    acceptance = story.acceptance(statement_id(offer.statement), licensee)
    pledge = story.pledge(pledged.application_number, [owner, co_owner], bank)
    steps.append([offer, acceptance, pledge])
    credit = story.credit_event(licensee, supervisor, pb.EntryReference(origin=ORIGIN, index=0))
    dispute = story.dispute(
        offered.application_number, statement_id(acceptance.statement), licensee, [owner]
    )
    # A second offer, on the pledged patent: owners and pledgee declare it.
    pledged_offer = story.offer(pledged.application_number, [owner, co_owner, bank])
    steps.append([credit, dispute, pledged_offer])
    steps.append([story.mediation(statement_id(dispute.statement), mediator)])
    admitted: list[pb.SignedStatement] = []
    for step in steps:
        await _submit_all(stub, *step)
        admitted.extend(step)
    return Market(
        owner, co_owner, licensee, bank, mediator, supervisor, newcomer,
        offered, pledged, spare, unrecorded,
        offer_id=statement_id(offer.statement),
        acceptance_id=statement_id(acceptance.statement),
        pledge_id=statement_id(pledge.statement),
        dispute_id=statement_id(dispute.statement),
        credit_event_id=statement_id(credit.statement),
        admitted=admitted,
    )  # fmt: skip


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


@contextlib.asynccontextmanager
async def target(directory: Path, *, database: str | None = None) -> AsyncIterator[Target]:
    """Start member ``a`` of a new network in ``directory``; yield it with a market in it.

    ``database`` replaces the member's SQLite file (a PostgreSQL URL).
    """
    init_network(directory, [ORIGIN, PEER], base_port=free_port_block(4))
    network = load_network(directory / "network.toml")
    config = load_config(directory / ORIGIN / "kaifang.toml")
    # The client port on a port of its own choosing: one race fewer. The
    # federation port stays the network file's, where members dial it.
    config = dataclasses.replace(config, listen="127.0.0.1:0")
    if database is not None:
        config = dataclasses.replace(config, database=database)
    register = load_key_file(directory / "register.key")
    operator = load_key_file(directory / ORIGIN / "operator.key")
    member = network.member(ORIGIN)
    identity = TlsIdentity.load(directory / PEER / "tls.key", directory / PEER / "tls.pem")
    async with (
        start_node(config) as node,
        grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel,
        grpc.aio.secure_channel(
            member.address,
            channel_credentials(network, identity),
            options=channel_options(member),
        ) as peer,
    ):
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        market = await build_market(stub, register, operator)
        found = Target(
            node, directory, network, channel, peer, register, operator, market,
            _sqlite_file(config.database),
        )  # fmt: skip
        try:
            yield found
        finally:
            found.close()
