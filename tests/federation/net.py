"""Shared pieces of the multi-process network tests: a network, its users, their statements."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from clients.localnet import LocalNetwork
from exchange.sample import Sample, generate
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.keys import load_key_file
from ledger.note import Signer
from tests.exchange import story


def register_of(net: LocalNetwork) -> Signer:
    """The network's register authority (``network init`` created its key)."""
    return load_key_file(net.directory / "register.key")


async def submit(
    net: LocalNetwork, at: str, signed: pb.SignedStatement
) -> api.SubmitStatementResponse:
    """Submit ``signed`` at member ``at``'s client API; return the receipt."""
    async with net.client_channel(at) as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        return await stub.SubmitStatement(api.SubmitStatementRequest(signed=signed), timeout=30)


async def submit_all(
    net: LocalNetwork, at: str, signeds: list[pb.SignedStatement]
) -> list[api.SubmitStatementResponse]:
    """Submit ``signeds`` in one ordered batch at ``at``; every one must be admitted."""
    async with net.client_channel(at) as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        reply = await stub.SubmitStatements(api.SubmitStatementsRequest(signed=signeds), timeout=60)
    refused = [o.status for o in reply.outcomes if not o.HasField("submitted")]
    assert not refused, refused
    return [o.submitted for o in reply.outcomes]


async def seed(net: LocalNetwork, at: str, seed_value: int, patents: int = 2) -> Sample:
    """Register a sample's parties and record its patents at ``at`` (their home)."""
    sample = generate(seed_value, parties=3, patents=patents)
    register = register_of(net)
    statements = [story.registration(p) for p in sample.parties]
    statements += [story.record(p, [sample.parties[0]], register) for p in sample.patents]
    await submit_all(net, at, statements)
    return sample


async def eventually(
    check: Callable[[], Awaitable[bool]], within_s: float = 30.0, what: str = "condition"
) -> None:
    """Wait until ``check`` returns True, polling; fail after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {within_s} s")
        await asyncio.sleep(0.1)


async def offer_visible(net: LocalNetwork, at: str, offer_id: bytes) -> bool:
    """Whether ``at``'s offer search lists the offer."""
    async with net.client_channel(at) as channel:
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        found = await stub.SearchOffers(api.SearchOffersRequest(page_size=500), timeout=10)
    return any(o.offer_id == offer_id for o in found.offers)


async def retried(
    call: Callable[[], Awaitable[api.SubmitStatementResponse]], within_s: float = 30.0
) -> api.SubmitStatementResponse:
    """Make ``call`` again while it fails UNAVAILABLE, as a client honouring RetryInfo does."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.25)


def network_dir(tmp_path: Path) -> Path:
    """Where a test's network lives."""
    return tmp_path / "net"
