"""The node's logs: one JSON object a line for machines, plain lines for people.

``configure_logging("json")`` makes every record one line of JSON::

    {"ts": "2026-11-27T12:07:39.123Z", "level": "INFO", "logger": "exchange.server",
     "msg": "serving", "port": 50051}

``ts`` is UTC with milliseconds, ``msg`` the formatted message, and every
field passed with ``extra=`` follows as a field of its own (a field that
would shadow ts, level, logger or msg gets a trailing underscore). An
exception adds ``exc``, its traceback. The text format writes the same
fields as ``key=value`` after the message. ``"auto"`` picks text when the
stream is a terminal and JSON otherwise (a service manager, a container, a
pipe), which is where logs are collected and parsed.

Key material never reaches a log: the node logs only verifier (public) keys,
and a ``bytes`` value in a record is written as its length, never its
contents, so that a key passed by mistake is not written out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any, TextIO

# The attributes every LogRecord has; anything else on a record came from extra=.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_CORE = ("ts", "level", "logger", "msg")


def _value(value: Any) -> Any:
    """A JSON-ready form of an extra field's value."""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    return str(value)


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields of ``record``: the core four, then its extras, then any exception."""
    ts = dt.datetime.fromtimestamp(record.created, dt.UTC)
    fields: dict[str, Any] = {
        "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
        "level": record.levelname,
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[f"{key}_" if key in _CORE else key] = _value(value)
    if record.exc_info:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    if record.stack_info:
        fields["stack"] = record.stack_info
    return fields


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (non-ASCII kept as is: names are Chinese)."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON object on one line."""
        return json.dumps(record_fields(record), ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """Formats a record as ``ts LEVEL logger message key=value …`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line (plus a traceback, if any)."""
        fields = record_fields(record)
        line = " ".join(str(fields.pop(k)) for k in _CORE)
        exc = fields.pop("exc", None)
        stack = fields.pop("stack", None)
        if fields:
            line += " " + " ".join(
                f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in fields.items()
            )
        return "\n".join(part for part in (line, exc, stack) if part)


def resolve_format(log_format: str, stream: TextIO) -> str:
    """``json`` or ``text``: ``auto`` is text on a terminal and JSON otherwise."""
    if log_format == "auto":
        return "text" if stream.isatty() else "json"
    if log_format not in ("json", "text"):
        raise ValueError(f"unknown log format {log_format!r}")
    return log_format


def configure_logging(
    log_format: str = "auto", level: str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record of the process to ``stream`` (stderr) in ``log_format``.

    Replaces the root logger's handlers, so that calling it again reconfigures
    rather than duplicates. Returns the handler installed.
    """
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out)
    formatter = JsonFormatter() if resolve_format(log_format, out) == "json" else TextFormatter()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
