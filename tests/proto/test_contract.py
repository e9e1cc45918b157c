"""The protos are the contract: versioned packages, documented fields, _UNSPECIFIED zeros.

Compiles every .proto under proto/ with source info (grpc_tools' protoc) and
checks each message, field, oneof, enum, enum value, service and method for
a leading comment, every enum for a zero value named ``<ENUM>_UNSPECIFIED``,
and every package for a version suffix; and that each RPC has a request and a
response message of its own.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc_tools
import pytest
from google.protobuf import descriptor_pb2

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "proto"
PROTOS = sorted(PROTO_ROOT.rglob("*.proto"))


def _descriptors(tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path / "set.pb"
    include = Path(grpc_tools.__file__).parent / "_proto"
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{include}",
         "--include_source_info", f"--descriptor_set_out={out}",
         *(str(p.relative_to(PROTO_ROOT)) for p in PROTOS)],
        check=True, cwd=PROTO_ROOT,
    )  # fmt: skip
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _documented_paths(
    message: descriptor_pb2.DescriptorProto, path: tuple[int, ...], name: str
) -> Iterator[tuple[tuple[int, ...], str]]:
    yield path, name
    for i, field in enumerate(message.field):
        yield (*path, 2, i), f"{name}.{field.name}"
    for i, oneof in enumerate(message.oneof_decl):
        if not oneof.name.startswith("_"):  # proto3 `optional` makes a synthetic oneof
            yield (*path, 8, i), f"{name}.{oneof.name}"
    for i, nested in enumerate(message.nested_type):
        yield from _documented_paths(nested, (*path, 3, i), f"{name}.{nested.name}")
    for i, enum in enumerate(message.enum_type):
        yield from _enum_paths(enum, (*path, 4, i), f"{name}.{enum.name}")


def _enum_paths(
    enum: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], name: str
) -> Iterator[tuple[tuple[int, ...], str]]:
    yield path, name
    for i, value in enumerate(enum.value):
        yield (*path, 2, i), f"{name}.{value.name}"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[descriptor_pb2.FileDescriptorProto]:
    return list(_descriptors(tmp_path_factory.mktemp("protos")).file)


def test_every_element_has_a_comment(files: list[descriptor_pb2.FileDescriptorProto]) -> None:
    missing: list[str] = []
    for file in files:
        comments = {
            tuple(loc.path): loc.leading_comments.strip() for loc in file.source_code_info.location
        }
        wanted: list[tuple[tuple[int, ...], str]] = []
        for i, message in enumerate(file.message_type):
            wanted += _documented_paths(message, (4, i), message.name)
        for i, enum in enumerate(file.enum_type):
            wanted += _enum_paths(enum, (5, i), enum.name)
        for i, service in enumerate(file.service):
            wanted.append(((6, i), service.name))
            wanted += [
                ((6, i, 2, j), f"{service.name}.{m.name}") for j, m in enumerate(service.method)
            ]
        missing += [f"{file.name}: {name}" for path, name in wanted if not comments.get(path)]
    assert missing == []


def test_enums_start_with_an_unspecified_zero(
    files: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    def enums() -> Iterator[descriptor_pb2.EnumDescriptorProto]:
        def walk(
            message: descriptor_pb2.DescriptorProto,
        ) -> Iterator[descriptor_pb2.EnumDescriptorProto]:
            yield from message.enum_type
            for nested in message.nested_type:
                yield from walk(nested)

        for file in files:
            yield from file.enum_type
            for message in file.message_type:
                yield from walk(message)

    for enum in enums():
        prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper()
        assert enum.value[0].number == 0, enum.name
        assert enum.value[0].name == f"{prefix}_UNSPECIFIED", enum.name
        assert all(v.name.startswith(prefix + "_") for v in enum.value), enum.name


def test_packages_are_versioned_and_match_their_directory(
    files: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    for file in files:
        assert re.fullmatch(r"kaifang\.[a-z]+\.v[0-9]+", file.package), file.name
        assert Path(file.name).parent.as_posix() == file.package.replace(".", "/")


def test_every_rpc_has_its_own_request_and_response(
    files: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    for file in files:
        for service in file.service:
            for method in service.method:
                assert method.input_type.endswith(f".{method.name}Request"), method.name
                assert method.output_type.endswith(f".{method.name}Response"), method.name
