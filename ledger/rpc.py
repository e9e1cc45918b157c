"""gRPC plumbing shared by the node's services: status details and request decoding.

- :func:`build_status` makes a ``google.rpc.Status`` with an ``ErrorInfo``
  (stable reason, domain, metadata) and any further details, its message
  clipped to :data:`MAX_DETAIL_CHARS`.
- :func:`register_service` registers a servicer so that it receives raw
  request bytes: gRPC's generated registration decodes before the servicer
  runs and answers UNKNOWN for bytes that are not a valid message, where a
  client mistake deserves INVALID_ARGUMENT. It also turns every exception a
  method raises into a status through the service's ``abort``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import any_pb2
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
            async for response in impl(decode(data), context):
                yield response
        except Exception as e:  # every failure gets a status; none leaks its text
            await abort(context, e)

    return handler
