"""The client library: talk to an exchange, and believe nothing unverified.

:class:`Client` is the async client of one exchange endpoint;
:class:`BlockingClient` wraps it for scripts. Every call has a deadline
(:attr:`ClientOptions.deadline_s` unless given). A call refused with
``UNAVAILABLE`` or ``RESOURCE_EXHAUSTED`` is tried again after the delay the
server's ``google.rpc.RetryInfo`` asks for, or else after an exponential
backoff with jitter, up to :attr:`ClientOptions.attempts` attempts — but
only if the call is idempotent by design. Every RPC of the exchange API is:
a statement submitted twice is sequenced once (the second answer is the
first receipt, marked duplicate), and the rest are reads.

What the server says is checked before it is returned: a submission's
receipt must be signed by the origin's log key the :class:`~clients.trust.Trust`
holds and prove an entry holding exactly the statement sent; a history's
checkpoint must satisfy the witness policy and every inclusion proof must
verify. A failed check raises a :class:`~clients.errors.VerificationError`;
a refusal raises the :class:`~clients.errors.ServerError` subclass of its
code, carrying the reason, the field and the legal basis.

Cosignatures of a log are kept by its home exchange. Asked for a witnessed
history of another origin's subject, an exchange answers
``NOT_WITNESSED_HERE``; a client that knows the home's address (from a
network file) then asks the home.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.rpc import status_pb2
from grpc_status import rpc_status

from clients.errors import ServerError, UnavailableError, server_error
from clients.trust import (
    Trust,
    VerifiedHistory,
    VerifiedReceipt,
    verify_history,
    verify_submitted,
)
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb

T = TypeVar("T")

# The codes a retry can cure: the server (or its link, or the home it
# forwards to) was away or busy. Anything else would fail the same way again.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class ClientOptions:
    """How a client calls: deadlines, retries, TLS."""

    # Seconds each attempt of a unary call may take.
    deadline_s: float = 10.0
    # Attempts of a retryable call, the first included.
    attempts: int = 5
    # Backoff without a RetryInfo: first delay, growth, cap (seconds).
    backoff_s: float = 0.2
    backoff_multiplier: float = 2.0
    max_backoff_s: float = 5.0
    # PEM of the CA that issued the exchange's TLS certificate; None: plaintext.
    tls_root: bytes | None = None
    # Name to check the server's certificate against, if not the target's host.
    tls_server_name: str | None = None

    def backoff(self, attempt: int) -> float:
        """The delay before attempt ``attempt + 1`` (full jitter, capped)."""
        ceiling = min(self.max_backoff_s, self.backoff_s * self.backoff_multiplier**attempt)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret


@dataclass(frozen=True)
class Submitted:
    """A statement the exchange sequenced, with its verified receipt."""

    statement_id: bytes
    duplicate: bool  # it had been sequenced before; the receipt is the first one
    receipt: VerifiedReceipt
    text: str  # the receipt as served (C2SP tlog-proof), to keep or hand on

    @property
    def origin(self) -> str:
        """The log that sequenced it."""
        return self.receipt.origin

    @property
    def index(self) -> int:
        """Its entry's index in that log."""
        return self.receipt.index


def open_channel(target: str, options: ClientOptions) -> grpc.aio.Channel:
    """Open a channel to ``target`` (host:port), with TLS if ``options.tls_root`` is set."""
    channel_options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # A node back from a restart is dialled again within a second or two.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if options.tls_root is None:
        return grpc.aio.insecure_channel(target, options=channel_options)
    if options.tls_server_name:
        channel_options.append(("grpc.ssl_target_name_override", options.tls_server_name))
    credentials = grpc.ssl_channel_credentials(root_certificates=options.tls_root)
    return grpc.aio.secure_channel(target, credentials, options=channel_options)


def _error(e: grpc.aio.AioRpcError) -> ServerError:
    try:
        status = rpc_status.from_call(e)  # type: ignore[arg-type]
    except ValueError:  # a status whose details do not match its code
        status = None
    return server_error(e.code(), e.details() or "", status)


class Client:
    """The async client of one exchange endpoint.

    Use it as an async context manager, or call :meth:`close`. ``addresses``
    maps an origin to its exchange's client endpoint (a network file gives
    them), so that a witnessed history can be asked of the subject's home.
    """

    def __init__(
        self,
        target: str,
        trust: Trust,
        options: ClientOptions | None = None,
        *,
        addresses: Mapping[str, str] | None = None,
    ) -> None:
        """Connect to ``target`` (host:port), believing what ``trust`` allows."""
        self.target = target
        self.trust = trust
        self.options = options or ClientOptions()
        self.addresses = dict(addresses or {})
        self._channel = open_channel(target, self.options)
        self._stub = exchange_pb2_grpc.ExchangeServiceStub(self._channel)
        self._homes: dict[str, Client] = {}
        # The origin this endpoint is the home of, where the addresses say.
        self.target_origin = next((o for o, a in self.addresses.items() if a == target), "")

    @classmethod
    def for_network(
        cls,
        network_file: Path,
        member: str | None = None,
        *,
        target: str | None = None,
        options: ClientOptions | None = None,
        min_cosignatures: int | None = None,
        tls: bool = False,
    ) -> Client:
        """A client of a network's ``member`` (or ``target``), trusting the network's keys.

        With ``tls``, the client ports are dialled over TLS trusting the network's CA
        (members configured with ``[client_tls]``, e.g. by ``network init --client-tls``).
        """
        from exchange.network import load_network

        network = load_network(network_file)
        if tls:
            # Members' certificates are issued by the network CA and name
            # 127.0.0.1, localhost and the member.
            options = replace(options or ClientOptions(), tls_root=network.ca_certificate)
        trust = Trust.from_network(network_file, min_cosignatures)
        addresses = {m.name: m.client_address for m in network.members}
        if target is None:
            name = member or network.members[0].name
            target = network.member(name).client_address
        return cls(target, trust, options, addresses=addresses)

    async def close(self) -> None:
        """Close the channel (and those opened to homes)."""
        for home in self._homes.values():
            await home.close()
        await self._channel.close(None)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- calling ----------------------------------------------------------

    async def _call(
        self,
        method: Callable[..., Awaitable[T]],
        request: Any,
        *,
        idempotent: bool = True,
        deadline_s: float | None = None,
    ) -> T:
        """Call ``method`` with deadline and retries; raise the typed error of a refusal."""
        timeout = deadline_s or self.options.deadline_s
        attempt = 0
        while True:
            try:
                return await method(request, timeout=timeout)
            except grpc.aio.AioRpcError as e:
                error = _error(e)
            attempt += 1
            if not idempotent or error.code not in RETRYABLE or attempt >= self.options.attempts:
                raise error
            delay = error.retry_after_s
            await asyncio.sleep(self.options.backoff(attempt - 1) if delay is None else delay)

    # -- statements -------------------------------------------------------

    async def submit(self, signed: pb.SignedStatement) -> Submitted:
        """Submit one signed statement; return its verified receipt.

        Safe to retry (the exchange deduplicates by statement id), so it is.
        Raises the :class:`ServerError` subclass of a refusal, or a
        :class:`VerificationError` if the receipt does not prove the statement.
        """
        response: api.SubmitStatementResponse = await self._call(
            self._stub.SubmitStatement, api.SubmitStatementRequest(signed=signed)
        )
        return self._verified(response, signed.statement)

    async def submit_many(
        self, signed: Sequence[pb.SignedStatement]
    ) -> list[Submitted | ServerError]:
        """Submit statements in order (at most 1,000); one outcome each, refusals as errors."""
        response: api.SubmitStatementsResponse = await self._call(
            self._stub.SubmitStatements, api.SubmitStatementsRequest(signed=signed)
        )
        if len(response.outcomes) != len(signed):
            raise UnavailableError(
                grpc.StatusCode.UNKNOWN,
                f"{len(response.outcomes)} outcomes for {len(signed)} statements",
            )
        outcomes: list[Submitted | ServerError] = []
        for statement, outcome in zip(signed, response.outcomes, strict=True):
            if outcome.HasField("submitted"):
                outcomes.append(self._verified(outcome.submitted, statement.statement))
            else:
                status = status_pb2.Status()
                status.ParseFromString(outcome.status)
                code = _CODES.get(status.code, grpc.StatusCode.UNKNOWN)
                outcomes.append(server_error(code, status.message, status))
        return outcomes

    def _verified(self, response: api.SubmitStatementResponse, statement: bytes) -> Submitted:
        receipt = verify_submitted(self.trust, response, statement)
        return Submitted(response.statement_id, response.duplicate, receipt, response.receipt)

    # -- reads ------------------------------------------------------------

    async def patent(self, application_number: str) -> api.GetPatentResponse:
        """A patent's state as the exchange's views hold it."""
        return await self._call(
            self._stub.GetPatent, api.GetPatentRequest(application_number=application_number)
        )

    async def offer(self, offer_id: bytes) -> api.Offer:
        """One open-licence offer."""
        response: api.GetOfferResponse = await self._call(
            self._stub.GetOffer, api.GetOfferRequest(offer_id=offer_id)
        )
        return response.offer

    async def search_offers(
        self, request: api.SearchOffersRequest | None = None, *, limit: int | None = None
    ) -> list[api.Offer]:
        """Every offer matching ``request``'s filter (all pages, or the first ``limit``)."""
        query = api.SearchOffersRequest()
        if request is not None:
            query.CopyFrom(request)
        offers: list[api.Offer] = []
        while True:
            page: api.SearchOffersResponse = await self._call(self._stub.SearchOffers, query)
            offers.extend(page.offers)
            if not page.next_page_token or (limit is not None and len(offers) >= limit):
                return offers if limit is None else offers[:limit]
            query.page_token = page.next_page_token

    async def licences(
        self, *, application_number: str = "", licensee: str = ""
    ) -> list[api.Licence]:
        """Every licence of a patent or of a licensee (all pages)."""
        query = api.ListLicencesRequest(application_number=application_number, licensee=licensee)
        licences: list[api.Licence] = []
        while True:
            page: api.ListLicencesResponse = await self._call(self._stub.ListLicences, query)
            licences.extend(page.licences)
            if not page.next_page_token:
                return licences
            query.page_token = page.next_page_token

    async def credit_record(self, party_id: str) -> api.GetCreditRecordResponse:
        """A party's credit record."""
        return await self._call(
            self._stub.GetCreditRecord, api.GetCreditRecordRequest(party_id=party_id)
        )

    async def statistics(
        self, from_date: pb.Date | None = None, to_date: pb.Date | None = None
    ) -> api.GetStatisticsResponse:
        """Counts of statements by month, region, IPC section and kind."""
        return await self._call(
            self._stub.GetStatistics, api.GetStatisticsRequest(from_date=from_date, to_date=to_date)
        )

    async def history(
        self,
        *,
        patent: str = "",
        party: str = "",
        checkpoint_size: int = 0,
        witnessed: bool = True,
    ) -> VerifiedHistory:
        """A subject's history, every proof verified against a checkpoint the policy accepts.

        With ``witnessed`` (and a policy of k > 0 witnesses) the exchange is
        asked for a checkpoint cosigned by k witnesses, at the subject's home.
        ``checkpoint_size`` asks for proofs at that signed size instead.
        """
        k = self.trust.min_cosignatures if witnessed and not checkpoint_size else 0
        request = api.GetHistoryRequest(
            application_number=patent,
            party_id=party,
            checkpoint_size=checkpoint_size,
            min_cosignatures=k,
        )
        try:
            response: api.GetHistoryResponse = await self._call(self._stub.GetHistory, request)
        except ServerError as e:
            home = e.metadata.get("home", "")
            if e.reason != "NOT_WITNESSED_HERE" or self.at(home) is self:
                raise
            return await self.at(home).history(
                patent=patent, party=party, checkpoint_size=checkpoint_size, witnessed=witnessed
            )
        verified = verify_history(self.trust, response, witnessed=k > 0)
        if checkpoint_size and verified.witnessed.checkpoint.size != checkpoint_size:
            raise ServerError(
                grpc.StatusCode.UNKNOWN,
                f"asked for proofs at size {checkpoint_size}, "
                f"got size {verified.witnessed.checkpoint.size}",
            )
        return verified

    def at(self, origin: str) -> Client:
        """A client of ``origin``'s own exchange if its address is known, else this one.

        The home of a log holds every checkpoint it signed and their
        cosignatures; a replica holds only some.
        """
        return self._home(origin) if origin in self.addresses else self

    def _home(self, origin: str) -> Client:
        if origin == self.target_origin:
            return self
        if origin not in self._homes:
            self._homes[origin] = Client(
                self.addresses[origin], self.trust, self.options, addresses=self.addresses
            )
        return self._homes[origin]

    async def watch_offers(
        self,
        *,
        ipc_prefixes: Sequence[str] = (),
        keywords: Sequence[str] = (),
        after_cursor: int = 0,
        reconnect: bool = True,
    ) -> AsyncGenerator[api.Offer, None]:
        """Yield matching offers as the exchange admits or replicates them, without end.

        A broken stream is resumed after the last cursor received, so nothing
        is missed or repeated; with ``reconnect`` false it raises instead.
        Refusals of the request itself (a bad filter) always raise.
        """
        cursor = after_cursor
        attempt = 0
        while True:
            request = api.WatchOffersRequest(
                ipc_prefixes=ipc_prefixes, keywords=keywords, after_cursor=cursor
            )
            try:
                async for item in self._stub.WatchOffers(request):
                    attempt = 0
                    cursor = item.offer.cursor
                    yield item.offer
                error: ServerError = UnavailableError(
                    grpc.StatusCode.UNAVAILABLE, "the exchange ended the watch"
                )
            except grpc.aio.AioRpcError as e:
                error = _error(e)
            if not reconnect or error.code not in RETRYABLE:
                raise error
            delay = error.retry_after_s
            await asyncio.sleep(self.options.backoff(attempt) if delay is None else delay)
            attempt = min(attempt + 1, 10)


class BlockingClient:
    """A blocking wrapper of :class:`Client` for scripts: one event loop of its own.

    Not for use inside a running event loop (use :class:`Client` there).
    """

    def __init__(
        self,
        target: str,
        trust: Trust,
        options: ClientOptions | None = None,
        *,
        addresses: Mapping[str, str] | None = None,
    ) -> None:
        """Connect to ``target`` as :class:`Client` does."""
        self._loop = asyncio.new_event_loop()
        self._client = self._run(self._make(target, trust, options, addresses))

    @staticmethod
    async def _make(
        target: str,
        trust: Trust,
        options: ClientOptions | None,
        addresses: Mapping[str, str] | None,
    ) -> Client:
        # grpc.aio binds a channel to the loop running when it is created.
        return Client(target, trust, options, addresses=addresses)

    def _run(self, work: Awaitable[T]) -> T:
        return self._loop.run_until_complete(work)

    @property
    def client(self) -> Client:
        """The async client underneath."""
        return self._client

    def close(self) -> None:
        """Close the channel and the loop."""
        if not self._loop.is_closed():
            self._run(self._client.close())
            self._loop.close()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, signed: pb.SignedStatement) -> Submitted:
        """See :meth:`Client.submit`."""
        return self._run(self._client.submit(signed))

    def submit_many(self, signed: Sequence[pb.SignedStatement]) -> list[Submitted | ServerError]:
        """See :meth:`Client.submit_many`."""
        return self._run(self._client.submit_many(signed))

    def patent(self, application_number: str) -> api.GetPatentResponse:
        """See :meth:`Client.patent`."""
        return self._run(self._client.patent(application_number))

    def offer(self, offer_id: bytes) -> api.Offer:
        """See :meth:`Client.offer`."""
        return self._run(self._client.offer(offer_id))

    def search_offers(
        self, request: api.SearchOffersRequest | None = None, *, limit: int | None = None
    ) -> list[api.Offer]:
        """See :meth:`Client.search_offers`."""
        return self._run(self._client.search_offers(request, limit=limit))

    def licences(self, *, application_number: str = "", licensee: str = "") -> list[api.Licence]:
        """See :meth:`Client.licences`."""
        return self._run(
            self._client.licences(application_number=application_number, licensee=licensee)
        )

    def credit_record(self, party_id: str) -> api.GetCreditRecordResponse:
        """See :meth:`Client.credit_record`."""
        return self._run(self._client.credit_record(party_id))

    def statistics(
        self, from_date: pb.Date | None = None, to_date: pb.Date | None = None
    ) -> api.GetStatisticsResponse:
        """See :meth:`Client.statistics`."""
        return self._run(self._client.statistics(from_date, to_date))

    def history(
        self, *, patent: str = "", party: str = "", checkpoint_size: int = 0, witnessed: bool = True
    ) -> VerifiedHistory:
        """See :meth:`Client.history`."""
        return self._run(
            self._client.history(
                patent=patent, party=party, checkpoint_size=checkpoint_size, witnessed=witnessed
            )
        )

    def watch_offers(
        self,
        *,
        ipc_prefixes: Sequence[str] = (),
        keywords: Sequence[str] = (),
        after_cursor: int = 0,
    ) -> Generator[api.Offer, None, None]:
        """See :meth:`Client.watch_offers` (a generator driving the loop; close() ends it)."""
        stream = self._client.watch_offers(
            ipc_prefixes=ipc_prefixes, keywords=keywords, after_cursor=after_cursor
        )
        try:
            while True:
                yield self._run(anext(stream))
        finally:
            self._run(stream.aclose())


__all__ = [
    "BlockingClient",
    "Client",
    "ClientOptions",
    "Submitted",
    "open_channel",
]
