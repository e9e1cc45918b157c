"""Hypothesis strategies for hostile requests: valid-ish messages, mutated fields, mutated bytes.

A fuzzer that only sends random bytes mostly tests the protobuf decoder;
one that only sends well-typed messages never sends what a stub cannot.
These strategies start from *seeds* (requests a real client would send,
naming things the node holds) and then:

- :func:`mutated_message` sets one to three fields anywhere in the message
  (nested messages and repeated fields included) to values of the field's
  wire type chosen to hurt: the type's extremes, empty and oversized
  strings, NUL and non-ASCII characters, ids of the wrong length, enum
  numbers the schema does not name;
- :func:`mutated_bytes` flips, cuts, repeats and splices the serialised
  bytes, and appends fields the schema does not know;
- :func:`payloads` mixes the seeds as they are, both mutations and plain
  random bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

# Integer ranges by protobuf type; the extremes are drawn often, being where
# conversions to SQL integers, dates and sizes break.
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
_DEPTH = 4

_hostile_text = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "x" * 5000,
        "有" * 300,
        "H04L",
        "H04L 9/32",
        "H04L 9/",
        "9" * 40,
        "١٢٣٤٥٦",  # Arabic-Indic digits: str.isdigit() says yes
        "%",
        "_",
        "'; DROP TABLE entries; --",
        "../../etc/passwd",
        "\u202e",
        "🙂",
    ]
)
_hostile_bytes = st.sampled_from(
    [b"", b"\x00", b"\x00" * 32, b"\xff" * 32, b"\x01" * 33, b"x" * 4096]
)


def _int(kind: int) -> st.SearchStrategy[int]:
    low, high = _INT_RANGES[kind]
    edges = sorted({low, high, 0, 1, -1 if low < 0 else 2, 2**31 - 1, 2**31, 2**63 - 1, 2**63})
    return st.sampled_from([e for e in edges if low <= e <= high]) | st.integers(low, high)


def scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    """Values of ``field``'s type, biased towards those that break conversions."""
    kind = field.type
    if kind in _INT_RANGES:
        return _int(kind)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_STRING:
        return _hostile_text | st.text(max_size=60)
    if kind == FieldDescriptor.TYPE_BYTES:
        return _hostile_bytes | st.binary(max_size=80)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    raise AssertionError(f"no strategy for field type {kind}")


def _mutate_in_place(draw: Any, message: Message, depth: int) -> None:
    fields: list[Any] = list(message.DESCRIPTOR.fields)
    if not fields:
        return
    # Mostly a field the seed sets: that is where a seed's meaning is, and
    # where a mutation gets past "this kind of statement needs that field".
    present = [f for f, _ in message.ListFields()]
    if present and draw(st.integers(0, 9)) < 7:
        fields = present
    field: FieldDescriptor = draw(st.sampled_from(fields))
    name = field.name
    is_message = field.type == FieldDescriptor.TYPE_MESSAGE
    if field.is_repeated:
        values = getattr(message, name)
        action = draw(st.sampled_from(["clear", "add", "mutate", "many"]))
        if action == "clear":
            message.ClearField(name)
        elif is_message:
            if action == "mutate" and len(values) and depth < _DEPTH:
                _mutate_in_place(draw, draw(st.sampled_from(list(values))), depth + 1)
            elif action == "many":
                for _ in range(draw(st.integers(2, 60))):
                    values.add()
            else:
                added = values.add()
                if depth < _DEPTH:
                    _mutate_in_place(draw, added, depth + 1)
        elif action == "many":
            values.extend(draw(st.lists(scalar(field), min_size=2, max_size=70)))
        else:
            values.append(draw(scalar(field)))
        return
    if is_message:
        if draw(st.booleans()) and depth < _DEPTH:
            child = getattr(message, name)
            child.SetInParent()
            _mutate_in_place(draw, child, depth + 1)
        else:
            message.ClearField(name)
        return
    setattr(message, name, draw(scalar(field)))


@st.composite
def mutated_message(draw: Any, seed: Message) -> Message:
    """``seed`` (unchanged) with one to three fields anywhere in it set to hostile values."""
    message = type(seed)()
    message.CopyFrom(seed)
    for _ in range(draw(st.integers(1, 3))):
        _mutate_in_place(draw, message, 0)
    return message


@st.composite
def mutated_bytes(draw: Any, data: bytes) -> bytes:
    """``data`` with a byte-level change: flipped, cut, repeated, spliced, or extended."""
    how = draw(st.sampled_from(["flip", "cut", "drop", "insert", "repeat", "unknown_field"]))
    if not data or how == "insert":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    if how == "flip":
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if how == "cut":
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "drop":
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + data[at + draw(st.integers(1, 8)) :]
    if how == "repeat":
        return data * draw(st.integers(2, 4))
    # A field number the schema does not use (wire type varint or length-delimited).
    number = draw(st.integers(16, 2**29 - 1))
    if draw(st.booleans()):
        return data + _varint(number << 3) + _varint(draw(st.integers(0, 2**64 - 1)))
    blob = draw(st.binary(max_size=32))
    return data + _varint(number << 3 | 2) + _varint(len(blob)) + blob


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def payloads(seeds: Sequence[Message]) -> st.SearchStrategy[bytes]:
    """Request bytes: a seed, a mutated seed, seed bytes mutated, or random bytes."""
    seed = st.sampled_from(list(seeds))
    return st.one_of(
        seed.map(lambda m: m.SerializeToString()),
        seed.flatmap(mutated_message).map(lambda m: m.SerializeToString()),
        seed.flatmap(lambda m: mutated_bytes(m.SerializeToString())),
        st.binary(max_size=120),
    )
