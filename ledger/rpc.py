"""gRPC plumbing shared by the node's services: status details and request decoding.

- :func:`build_status` makes a ``google.rpc.Status`` with an ``ErrorInfo``
  (stable reason, domain, metadata) and any further details, its message
  clipped to :data:`MAX_DETAIL_CHARS`.
- :func:`register_service` registers a servicer so that it receives raw
  request bytes: gRPC's generated registration decodes before the servicer
  runs and answers UNKNOWN for bytes that are not a valid message, where a
  client mistake deserves INVALID_ARGUMENT. It also turns every exception a
  method raises into a status through the service's ``abort``.
- :class:`StreamLimiter` counts a service's open streams per caller and
  refuses one over its caps with :class:`TooManyStreamsError`, which
  :func:`too_many_streams_status` answers RESOURCE_EXHAUSTED; :func:`caller_host`
  names a caller by its address without the port.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

Abort = Callable[[Any, Exception], Awaitable[None]]
"""Ends a call with the status for an exception (it raises, as grpc's abort does)."""

# Characters kept of a status's message and of a field violation's
# description. Refusals quote the offending value, which a client chooses: the
# status travels in trailing metadata, and a client refuses trailers over 8 KiB
# (gRPC's default), turning the refusal into a bare RESOURCE_EXHAUSTED that
# says nothing. The message is sent twice (grpc-message, percent-encoded, up
# to 9 bytes a character; and in the details, base64), so 200 characters keep
# the worst case near 5 KiB. Field names and ErrorInfo metadata are codes the
# node writes (field paths, reasons, party ids that passed validation), kept
# whole so that clients can match them.
MAX_DETAIL_CHARS = 200


def clip(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """``text``, cut to ``limit`` characters with an ellipsis if longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_status(
    domain: str,
    code: grpc.StatusCode,
    reason: str,
    message: str,
    extra: list[Message] | None = None,
    metadata: dict[str, str] | None = None,
) -> status_pb2.Status:
    """Return a ``google.rpc.Status`` whose first detail is an ``ErrorInfo``.

    The message is clipped (:func:`clip`).
    """
    info = error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata)
    details = []
    for detail in [info, *(extra or [])]:
        packed = any_pb2.Any()
        packed.Pack(detail)
        details.append(packed)
    return status_pb2.Status(
        code=getattr(code_pb2, code.name), message=clip(message), details=details
    )


def field_violation(field: str, description: str) -> error_details_pb2.BadRequest:
    """A ``BadRequest`` detail naming one field (the description clipped, as :func:`clip` does)."""
    violation = error_details_pb2.BadRequest.FieldViolation(
        field=field, description=clip(description)
    )
    return error_details_pb2.BadRequest(field_violations=[violation])


async def abort_with(context: Any, status: status_pb2.Status) -> None:
    """End the call with ``status`` (raises)."""
    # grpc-stubs does not declare the aio context's abort_with_status, hence Any.
    await context.abort_with_status(rpc_status.to_status(status))


def register_service(
    servicer: object,
    server: grpc.aio.Server,
    module: ModuleType,
    service_name: str,
    abort: Abort,
    invalid: Callable[[str, str], Exception],
) -> None:
    """Register ``servicer``'s methods for ``service_name`` of the generated ``module``.

    Undecodable requests are answered through ``abort`` with the exception
    ``invalid("request", reason)``.
    """
    service = module.DESCRIPTOR.services_by_name[service_name]
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    for method in service.methods:
        request_type = getattr(module, method.input_type.name)
        response_type = getattr(module, method.output_type.name)
        impl = getattr(servicer, method.name)

        def decode(data: bytes, request_type: Any = request_type) -> Any:
            try:
                return request_type.FromString(data)
            except DecodeError as e:
                raise invalid("request", f"not a valid {request_type.DESCRIPTOR.full_name}") from e

        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                _stream(impl, decode, abort), response_serializer=response_type.SerializeToString
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _unary(impl, decode, abort), response_serializer=response_type.SerializeToString
            )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )


def _unary(impl: Any, decode: Callable[[bytes], Any], abort: Abort) -> Any:
    async def handler(data: bytes, context: Any) -> Any:
        try:
            return await impl(decode(data), context)
        except Exception as e:  # every failure gets a status; none leaks its text
            await abort(context, e)
            raise  # unreachable: abort raises

    return handler


def _stream(impl: Any, decode: Callable[[bytes], Any], abort: Abort) -> Any:
    async def handler(data: bytes, context: Any) -> AsyncIterator[Any]:
        try:
            # Closed as soon as this handler ends, however it ends (a client
            # gone mid-stream included), so that the method's cleanup (a
            # stream slot given back) runs now, not when it is collected.
            async with contextlib.aclosing(impl(decode(data), context)) as responses:
                async for response in responses:
                    yield response
        except Exception as e:  # every failure gets a status; none leaks its text
            await abort(context, e)

    return handler


# -- streams per caller -------------------------------------------------------


class TooManyStreamsError(Exception):
    """A caller has as many streams of a kind open as it may (RESOURCE_EXHAUSTED)."""

    def __init__(self, what: str, caller: str, limit: int, *, in_all: bool = False) -> None:
        """Say which streams, whose, and the cap (``in_all``: the cap over all callers)."""
        whose = "all callers" if in_all else repr(caller)
        super().__init__(
            f"{whose} already hold {limit} open {what}, the most allowed; "
            "close one (or wait for one to end) and try again"
        )
        self.what = what
        self.caller = caller
        self.limit = limit
        self.in_all = in_all


# A refused stream is retried no sooner: the streams that fill a cap are
# long-lived (watches, follows), so an immediate retry would only be refused.
STREAM_RETRY_S = 5


def too_many_streams_status(domain: str, error: TooManyStreamsError) -> status_pb2.Status:
    """RESOURCE_EXHAUSTED, with a ``QuotaFailure`` naming the caller and a ``RetryInfo``."""
    violation = error_details_pb2.QuotaFailure.Violation(
        subject=f"{error.what} of {'all callers' if error.in_all else error.caller}",
        description=f"at most {error.limit} open at once",
    )
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=STREAM_RETRY_S))
    return build_status(
        domain, grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_STREAMS", str(error),
        [error_details_pb2.QuotaFailure(violations=[violation]), retry],
        {"limit": str(error.limit), "streams": error.what},
    )  # fmt: skip


class StreamLimiter:
    """Open streams of one kind, counted per caller, capped per caller and in all.

    Used from the event loop only (no lock): :meth:`hold` around a stream's
    life takes a slot or raises :class:`TooManyStreamsError`, and gives it
    back when the stream ends, however it ends.
    """

    def __init__(self, what: str, per_caller: int, total: int | None = None) -> None:
        """Allow ``per_caller`` open ``what`` (e.g. "WatchOffers streams") per caller.

        ``total`` caps them over all callers as well (None: no such cap).
        Requires ``per_caller`` >= 1.
        """
        if per_caller < 1:
            raise ValueError(f"per_caller must be at least 1, not {per_caller}")
        self.what = what
        self.per_caller = per_caller
        self.total = total
        self._open: dict[str, int] = {}
        self._all = 0

    def open(self, caller: str | None = None) -> int:
        """How many are open: ``caller``'s, or everyone's."""
        return self._all if caller is None else self._open.get(caller, 0)

    def acquire(self, caller: str) -> None:
        """Take a slot for ``caller``; raise :class:`TooManyStreamsError` over a cap."""
        held = self._open.get(caller, 0)
        if held >= self.per_caller:
            raise TooManyStreamsError(self.what, caller, self.per_caller)
        if self.total is not None and self._all >= self.total:
            raise TooManyStreamsError(self.what, caller, self.total, in_all=True)
        self._open[caller] = held + 1
        self._all += 1

    def release(self, caller: str) -> None:
        """Give back a slot :meth:`acquire` took for ``caller``."""
        held = self._open[caller] - 1
        if held:
            self._open[caller] = held
        else:
            del self._open[caller]  # no key left behind per caller ever seen
        self._all -= 1

    @contextlib.contextmanager
    def hold(self, caller: str) -> Iterator[None]:
        """Hold a slot for ``caller`` for the ``with`` block."""
        self.acquire(caller)
        try:
            yield
        finally:
            self.release(caller)


def caller_host(peer: str) -> str:
    """The caller of a servicer context's ``peer()``, without its port.

    ``ipv4:203.0.113.7:51234`` is ``203.0.113.7``, ``ipv6:[2001:db8::1]:51234``
    is ``2001:db8::1``; anything else (a Unix socket) is kept whole. Clients
    behind one NAT or proxy share an address, and so share its caps.
    """
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = rest.rpartition(":")[0] or rest
        return host.removeprefix("[").removesuffix("]")
    return peer
