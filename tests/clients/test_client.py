"""The client library against a real node: verified receipts, typed errors, retries.

The node is real (gRPC on a loopback port, SQLite). Where a test needs the
server to lie — a tampered proof, a forged receipt — an in-test gRPC server
sits between the client and the real node and alters the real answers: a
fake at the seam, while every other test talks to the node itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from clients.client import BlockingClient, Client, ClientOptions
from clients.errors import (
    CheckpointVerificationError,
    InvalidRequestError,
    NotFoundError,
    ReceiptVerificationError,
    RuleRefusedError,
    SignatureRequiredError,
    UnavailableError,
    VerificationError,
    WitnessPolicyError,
)
from clients.trust import Trust
from exchange import rules
from exchange.config import NodeConfig, load_config
from exchange.network import NETWORK_FILE, init_network
from exchange.sample import generate
from exchange.server import RunningNode, start_node
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.cosignature import CosignatureSigner
from ledger.keys import load_key_file
from ledger.note import Signer
from ledger.receipt import parse_receipt
from tests.conftest import ORIGIN
from tests.exchange import story

SAMPLE = generate(61, parties=6, patents=3)
OWNER, LICENSEE, BANK, OTHER = SAMPLE.parties[:4]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp_path: Path, port: int = 0) -> NodeConfig:
    return NodeConfig(
        origin=ORIGIN,
        listen=f"127.0.0.1:{port}",
        database=f"sqlite+aiosqlite:///{tmp_path / 'node.db'}",
        log_key=tmp_path / "log.key",
    )


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    async with start_node(_config(tmp_path)) as running:
        yield running


def _trust(node: RunningNode) -> Trust:
    return Trust.from_keys([node.signer.verifier_key()])


@pytest.fixture
async def client(node: RunningNode) -> AsyncIterator[Client]:
    async with Client(f"127.0.0.1:{node.port}", _trust(node)) as c:
        yield c


async def _story(client: Client, tmp_path: Path) -> tuple[str, bytes]:
    """Register the parties, record a patent, publish an offer; return number and offer id."""
    for party in SAMPLE.parties:
        await client.submit(story.registration(party))
    register = load_key_file(tmp_path / "register.key")
    number = SAMPLE.patents[0].application_number
    await client.submit(story.record(SAMPLE.patents[0], [OWNER], register))
    offer = await client.submit(story.offer(number, [OWNER]))
    return number, offer.statement_id


async def test_a_submission_returns_a_receipt_verified_against_the_log_key(
    client: Client, node: RunningNode, tmp_path: Path
) -> None:
    number, offer_id = await _story(client, tmp_path)
    accepted = story.acceptance(offer_id, LICENSEE)
    submitted = await client.submit(accepted)
    assert (submitted.origin, submitted.duplicate) == (ORIGIN, False)
    assert submitted.receipt.entry.statement == accepted.statement
    assert submitted.receipt.checkpoint.size == submitted.index + 1
    # The same bytes again: the first receipt, marked duplicate.
    again = await client.submit(accepted)
    assert (again.duplicate, again.index) == (True, submitted.index)
    state = await client.patent(number)
    assert state.licence_count == 1
    assert [lic.licensee for lic in await client.licences(application_number=number)] == [
        LICENSEE.party_id
    ]
    assert [o.offer_id for o in await client.search_offers()] == [offer_id]


async def test_refusals_become_typed_errors_with_reason_field_and_legal_basis(
    client: Client, tmp_path: Path
) -> None:
    number, offer_id = await _story(client, tmp_path)
    unconsented = story.pledge(number, [OWNER], BANK)
    del unconsented.signatures[-1]  # the bank's
    with pytest.raises(SignatureRequiredError) as missing:
        await client.submit(unconsented)
    assert missing.value.missing == [BANK.party_id]
    assert missing.value.legal_basis == rules.CIVIL_444
    assert missing.value.exit_code == 7
    await client.submit(story.withdrawal(offer_id, [OWNER]))
    with pytest.raises(RuleRefusedError) as refused:
        await client.submit(story.acceptance(offer_id, LICENSEE))
    assert refused.value.reason == "OFFER_NOT_ACTIVE"
    assert refused.value.legal_basis == rules.ART_50
    assert refused.value.field == "license_accepted.offer_id"
    assert refused.value.legal_basis in str(refused.value)
    with pytest.raises(InvalidRequestError) as invalid:
        await client.submit(pb.SignedStatement(statement=b"\xff\x00"))
    assert invalid.value.field == "statement"
    with pytest.raises(NotFoundError):
        await client.patent("202310999999.4")


async def test_a_receipt_under_another_key_of_the_same_name_is_refused(
    node: RunningNode, tmp_path: Path
) -> None:
    impostor = Signer.generate(ORIGIN)
    async with Client(f"127.0.0.1:{node.port}", Trust.from_keys([impostor.verifier_key()])) as c:
        with pytest.raises(CheckpointVerificationError):
            await c.submit(story.registration(OWNER))
    async with Client(f"127.0.0.1:{node.port}", Trust()) as c:  # no key for the origin
        with pytest.raises(CheckpointVerificationError, match="no verifier key"):
            await c.submit(story.registration(BANK))


class Tamperer(exchange_pb2_grpc.ExchangeServiceServicer):
    """An ExchangeService in front of the real node that alters one kind of answer."""

    def __init__(self, upstream: exchange_pb2_grpc.ExchangeServiceAsyncStub, how: str) -> None:
        self.upstream = upstream
        self.how = how

    async def SubmitStatement(
        self, request: api.SubmitStatementRequest, context: Any
    ) -> api.SubmitStatementResponse:
        response: api.SubmitStatementResponse = await self.upstream.SubmitStatement(request)
        receipt = parse_receipt(response.receipt)
        if self.how == "proof" and receipt.proof:
            proof = list(receipt.proof)
            proof[0] = bytes([proof[0][0] ^ 1]) + proof[0][1:]
            receipt = type(receipt)(
                receipt.index, tuple(proof), receipt.checkpoint_note, receipt.extra
            )
        elif self.how == "other-entry":
            # A true receipt, but of an earlier entry: it does not prove this statement.
            receipt = parse_receipt((await self.upstream.SubmitStatement(self.first)).receipt)
        response.receipt = receipt.format()
        return response

    first: api.SubmitStatementRequest

    async def GetHistory(
        self, request: api.GetHistoryRequest, context: Any
    ) -> api.GetHistoryResponse:
        response: api.GetHistoryResponse = await self.upstream.GetHistory(request)
        if self.how == "history":
            entry = response.entries[-1]
            entry.entry = entry.entry[:-1] + bytes([entry.entry[-1] ^ 1])
        return response


@contextlib.asynccontextmanager
async def _in_front(node: RunningNode, how: str) -> AsyncIterator[tuple[int, Tamperer]]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{node.port}")
    tamperer = Tamperer(exchange_pb2_grpc.ExchangeServiceStub(channel), how)  # type: ignore[abstract]
    server = grpc.aio.server()
    exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(tamperer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port, tamperer
    finally:
        await server.stop(None)
        await channel.close(None)


@pytest.mark.parametrize("how", ["proof", "other-entry"])
async def test_a_tampered_receipt_makes_the_call_raise(
    node: RunningNode, client: Client, how: str
) -> None:
    first = story.registration(OWNER)
    await client.submit(first)
    async with _in_front(node, how) as (port, tamperer):
        tamperer.first = api.SubmitStatementRequest(signed=first)
        async with Client(f"127.0.0.1:{port}", _trust(node)) as lied_to:
            with pytest.raises(ReceiptVerificationError):
                await lied_to.submit(story.registration(BANK))


async def test_a_tampered_history_entry_makes_the_call_raise(
    node: RunningNode, client: Client, tmp_path: Path
) -> None:
    number, _ = await _story(client, tmp_path)
    honest = await client.history(patent=number)
    assert [e.entry.statement for e in honest.entries][-1]
    async with (
        _in_front(node, "history") as (port, _),
        Client(f"127.0.0.1:{port}", _trust(node)) as lied_to,
    ):
        with pytest.raises(VerificationError, match="inclusion proof"):
            await lied_to.history(patent=number)


async def test_a_history_is_served_with_cosignatures_and_checked_against_the_policy(
    node: RunningNode, client: Client, tmp_path: Path
) -> None:
    number, _ = await _story(client, tmp_path)
    witness = CosignatureSigner.generate("witness.example")
    policy = Trust.from_keys(
        [node.signer.verifier_key()], [witness.verifier().verifier_key()], min_cosignatures=1
    )
    async with Client(
        f"127.0.0.1:{node.port}", policy, ClientOptions(attempts=2, backoff_s=0.05)
    ) as strict:
        # No witness has cosigned anything: the home says so, and the call gives up.
        with pytest.raises(UnavailableError) as waiting:
            await strict.history(patent=number)
        assert waiting.value.reason == "NOT_YET_WITNESSED"
        assert waiting.value.retry_after_s == 1.0
        # The witness cosigns the latest checkpoint (as exchange.federation stores it).
        latest = await node.store.latest_checkpoint()
        body = latest.note.split("\n\n")[0] + "\n"
        line = witness.cosign(body, int(time.time())).line().rstrip("\n") + "\n"
        await _store_cosignature(node, latest.size, witness.verifier().verifier_key(), line)
        history = await strict.history(patent=number)
        assert history.witnessed.witnesses == ("witness.example",)
        assert history.witnessed.checkpoint.size == latest.size
        assert len(history.entries) == 2  # the record and the offer
        # Proofs at an earlier signed size, as an exporter asks for them.
        earlier = await strict.history(patent=number, checkpoint_size=latest.size - 1)
        assert len(earlier.entries) == 1


async def _store_cosignature(node: RunningNode, size: int, witness: str, line: str) -> None:
    from sqlalchemy import insert

    from ledger.models import Cosignature

    log_id = node.store.log_id
    values = {"log_id": log_id, "size": size, "witness": witness, "line": line}
    await node.exchange.db.write(lambda c: c.execute(insert(Cosignature).values(**values)))


async def test_a_witness_policy_that_is_not_met_raises(node: RunningNode, tmp_path: Path) -> None:
    unknown = CosignatureSigner.generate("unheard.example")
    policy = Trust.from_keys(
        [node.signer.verifier_key()], [unknown.verifier().verifier_key()], min_cosignatures=1
    )
    async with Client(f"127.0.0.1:{node.port}", _trust(node)) as plain:
        number, _ = await _story(plain, tmp_path)
        history = await plain.history(patent=number)
    from clients.trust import verify_checkpoint

    with pytest.raises(WitnessPolicyError, match="requires 1 of 1"):
        verify_checkpoint(policy, history.note, ORIGIN)


async def test_a_call_is_retried_while_the_node_restarts(tmp_path: Path) -> None:
    port = _free_port()
    config = _config(tmp_path, port)
    async with start_node(config) as running:
        trust = _trust(running)
    restarted = asyncio.Event()

    async def restart_later() -> None:
        await asyncio.sleep(1.0)
        async with start_node(config):
            restarted.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(restart_later())
    try:
        options = ClientOptions(attempts=20, backoff_s=0.2, max_backoff_s=0.5)
        async with Client(f"127.0.0.1:{port}", trust, options) as c:
            started = time.monotonic()
            submitted = await c.submit(story.registration(OWNER))
            assert restarted.is_set()
            assert time.monotonic() - started >= 0.9
            assert submitted.index == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Busy(exchange_pb2_grpc.ExchangeServiceServicer):
    """An ExchangeService that answers UNAVAILABLE with a RetryInfo once, then forwards."""

    def __init__(
        self, upstream: exchange_pb2_grpc.ExchangeServiceAsyncStub, delay_s: float
    ) -> None:
        self.upstream = upstream
        self.delay_s = delay_s
        self.calls: list[float] = []

    async def GetPatent(self, request: api.GetPatentRequest, context: Any) -> api.GetPatentResponse:
        self.calls.append(time.monotonic())
        if len(self.calls) == 1:
            delay = duration_pb2.Duration()
            delay.FromMilliseconds(round(self.delay_s * 1000))
            status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="busy")
            status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
            await context.abort_with_status(rpc_status.to_status(status))
        response: api.GetPatentResponse = await self.upstream.GetPatent(request)
        return response


async def test_the_servers_retry_info_sets_the_delay(
    node: RunningNode, client: Client, tmp_path: Path
) -> None:
    number, _ = await _story(client, tmp_path)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{node.port}")
    busy = Busy(exchange_pb2_grpc.ExchangeServiceStub(channel), 0.6)  # type: ignore[abstract]
    server = grpc.aio.server()
    exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(busy, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        # The client's own backoff would wait 10 ms; the server asked for 600.
        options = ClientOptions(backoff_s=0.01, max_backoff_s=0.01)
        async with Client(f"127.0.0.1:{port}", _trust(node), options) as c:
            state = await c.patent(number)
        assert state.application_number == number
        assert len(busy.calls) == 2
        assert busy.calls[1] - busy.calls[0] >= 0.55
    finally:
        await server.stop(None)
        await channel.close(None)


async def test_a_refusal_is_not_retried(node: RunningNode) -> None:
    async with Client(f"127.0.0.1:{node.port}", _trust(node)) as c:
        started = time.monotonic()
        with pytest.raises(InvalidRequestError):
            await c.patent("not a number")
        assert time.monotonic() - started < 0.5


async def test_watch_resumes_after_the_node_restarts(tmp_path: Path) -> None:
    port = _free_port()
    config = _config(tmp_path, port)
    options = ClientOptions(backoff_s=0.1, max_backoff_s=0.3)
    async with start_node(config) as running:
        trust = _trust(running)
        watcher = Client(f"127.0.0.1:{port}", trust, options)
        async with Client(f"127.0.0.1:{port}", trust, options) as c:
            number, first = await _story(c, tmp_path)
        watch = watcher.watch_offers()
        seen = [(await anext(watch)).offer_id]
        pending = asyncio.ensure_future(anext(watch))
        await asyncio.sleep(0.2)
    # The node stopped under the watch; it waits, then resumes after the last cursor.
    try:
        async with start_node(config):
            async with Client(f"127.0.0.1:{port}", trust, options) as c:
                await c.submit(story.withdrawal(first, [OWNER]))
                second = await c.submit(story.offer(number, [OWNER]))
            offer = await asyncio.wait_for(pending, 20)
    finally:
        await watch.aclose()
        await watcher.close()
    assert seen == [first]
    assert offer.offer_id == second.statement_id  # nothing repeated, nothing missed


async def test_a_client_of_a_network_member_speaks_tls_trusting_the_network_ca(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "net"
    init_network(directory, ["solo"], client_tls=True)
    config = load_config(directory / "solo" / "kaifang.toml")
    assert config.federation is not None
    # Port 0 instead of the network's fixed ports, which another test may hold.
    config = dataclasses.replace(
        config,
        listen="127.0.0.1:0",
        federation=dataclasses.replace(config.federation, listen="127.0.0.1:0"),
    )
    async with start_node(config) as running:
        target = f"127.0.0.1:{running.port}"
        network_file = directory / NETWORK_FILE
        async with Client.for_network(network_file, target=target, tls=True) as secure:
            submitted = await secure.submit(story.registration(OWNER))
            assert submitted.origin == "solo"
        options = ClientOptions(attempts=1, deadline_s=2)
        async with Client.for_network(network_file, target=target, options=options) as plain:
            with pytest.raises(UnavailableError):
                await plain.submit(story.registration(BANK))


def test_the_blocking_client_serves_scripts(tmp_path: Path) -> None:
    """A script without an event loop: the node runs in a thread of its own."""
    import threading

    ready, done = threading.Event(), threading.Event()
    started: list[RunningNode] = []

    async def serve() -> None:
        async with start_node(_config(tmp_path)) as running:
            started.append(running)
            ready.set()
            await asyncio.to_thread(done.wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        assert ready.wait(30)
        running = started[0]
        with BlockingClient(f"127.0.0.1:{running.port}", _trust(running)) as c:
            for party in SAMPLE.parties:
                c.submit(story.registration(party))
            register = load_key_file(tmp_path / "register.key")
            number = SAMPLE.patents[0].application_number
            c.submit(story.record(SAMPLE.patents[0], [OWNER], register))
            offer = c.submit(story.offer(number, [OWNER]))
            assert c.patent(number).active_offer_id == offer.statement_id
            assert [o.offer_id for o in c.search_offers()] == [offer.statement_id]
            watched = c.watch_offers()
            assert next(watched).offer_id == offer.statement_id
            watched.close()
            history = c.history(patent=number)
            assert [e.index for e in history.entries] == [offer.index - 1, offer.index]
            with pytest.raises(RuleRefusedError):
                c.submit(story.offer(number, [OWNER]))  # an active offer already
    finally:
        done.set()
        thread.join(30)
