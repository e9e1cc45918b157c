"""No private key ever reaches a log, at DEBUG, through a whole story between two members.

Two members of a network run in this process, logging at DEBUG through
the node's own JSON formatter (extras included, as an operator's log
collector would see them) and writing whatever else they write to the
process's stderr (gRPC's own logs). The story: parties register, a patent
is recorded, offered, accepted, pledged; a party rotates its key; a
statement is refused; the other member replicates the log and witnesses it.
Then every secret the network holds is looked for in everything written:
the log keys, the operators', the witnesses' and the register's keys, the
network CA's and the members' TLS keys, and every party's private keys
(the rotated-out ones included), each as hex and as base64 (padded or not,
standard or URL-safe), and as any 20-character stretch of those, so that a
key cut short is found too. A key file that does not parse is reported
without its contents, its exception chain included.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.localnet import free_port_block
from exchange.config import NodeConfig, load_config
from exchange.logs import JsonFormatter
from exchange.network import init_network
from exchange.sample import generate
from exchange.server import start_node
from exchange.statements import sign, statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from kaifang.ledger.v1 import ledger_pb2 as lg
from kaifang.ledger.v1 import ledger_pb2_grpc as lg_grpc
from ledger.errors import KeyFileError
from ledger.keys import create_key_file, load_key_file
from tests.exchange import story

# The shortest stretch of an encoded secret looked for: 20 hex digits are 80
# bits, 20 base64 characters 120; no public value shares one by chance.
WINDOW = 20
WITHIN_S = 60.0


def _encodings(secret: bytes) -> list[str]:
    b64 = base64.b64encode(secret).decode()
    url = base64.urlsafe_b64encode(secret).decode()
    return [secret.hex(), secret.hex().upper(), b64, b64.rstrip("="), url, url.rstrip("=")]


def _needles(secret: bytes) -> Iterator[str]:
    for encoded in _encodings(secret):
        for i in range(max(1, len(encoded) - WINDOW + 1)):
            yield encoded[i : i + WINDOW]


def _signer_seed(path: Path) -> bytes:
    """The seed in a C2SP signer key file (``PRIVATE+KEY+name+keyid+base64(alg || seed)``)."""
    text = path.read_text(encoding="ascii").strip()
    # The name holds no "+", the base64 may.
    return base64.b64decode(text.split("+", 4)[4])[1:]


def _secrets(directory: Path, party_keys: list[Ed25519PrivateKey]) -> dict[str, list[str]]:
    """Every secret of the network in ``directory``: what to look for, by where it is from."""
    found: dict[str, list[str]] = {}
    for path in sorted(directory.rglob("*.key")):
        name = str(path.relative_to(directory))
        text = path.read_text(encoding="ascii")
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            scalar = key.private_numbers().private_value.to_bytes(32, "big")
            body = [line for line in text.splitlines() if not line.startswith("-----")]
            found[name] = [*body, "".join(body), *_needles(scalar)]
        else:
            found[name] = [text.strip(), *_needles(_signer_seed(path))]
    for i, party in enumerate(party_keys):
        found[f"party key {i}"] = list(_needles(party.private_bytes_raw()))
    return found


async def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + WITHIN_S
    while not await check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {WITHIN_S} s")
        await asyncio.sleep(0.2)


def _config(directory: Path, name: str) -> NodeConfig:
    config = load_config(directory / name / "kaifang.toml")
    return dataclasses.replace(config, listen="127.0.0.1:0", log_level="DEBUG")


async def test_no_private_key_reaches_the_logs_of_a_story_between_two_members(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    directory = tmp_path / "net"
    init_network(directory, ["a", "b"], base_port=free_port_block(4))
    register = load_key_file(directory / "register.key")
    operator = load_key_file(directory / "a" / "operator.key")
    sample = generate(113, parties=3, patents=2)
    owner, licensee, bank = sample.parties
    party_keys = [p.key for p in sample.parties]
    async with (
        start_node(_config(directory, "a")) as a,
        start_node(_config(directory, "b")) as b,
        grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as b_channel,
    ):
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)

        async def admit(*signed: pb.SignedStatement) -> None:
            reply = await stub.SubmitStatements(api.SubmitStatementsRequest(signed=signed))
            assert all(o.WhichOneof("result") == "submitted" for o in reply.outcomes), reply

        patent = sample.patents[0]
        await admit(*(story.registration(p) for p in sample.parties))
        await admit(
            story.record(patent, [owner], register),
            story.role(bank, pb.ROLE_SUPERVISOR, operator, "a"),
        )
        offer = story.offer(patent.application_number, [owner])
        await admit(offer)
        await admit(story.acceptance(statement_id(offer.statement), licensee))
        await admit(story.pledge(patent.application_number, [owner], bank))
        # The licensee rotates its key: old and new key both sign.
        new = Ed25519PrivateKey.generate()
        party_keys.append(new)
        rotation = pb.PartyKeyRotated(
            party_id=licensee.party_id, new_public_key=new.public_key().public_bytes_raw()
        )
        rotated = story.signed(
            pb.Statement(party_key_rotated=rotation), (licensee.party_id, licensee)
        )
        rotated.signatures.append(sign(rotated.statement, licensee.party_id, new))
        await admit(rotated)
        # A refusal: the rotated-out key signs nothing more.
        stale = story.acceptance(statement_id(offer.statement), licensee)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SubmitStatement(api.SubmitStatementRequest(signed=stale))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        size = (await a.store.latest_checkpoint()).size

        async def replicated() -> bool:
            b_ledger = lg_grpc.LedgerServiceStub(b_channel)
            try:
                head = await b_ledger.GetCheckpoint(lg.GetCheckpointRequest(origin="a"))
            except grpc.aio.AioRpcError:
                return False
            return head.tree_size >= size

        async def witnessed() -> bool:
            request = api.GetHistoryRequest(party_id=owner.party_id, min_cosignatures=1)
            try:
                await stub.GetHistory(request)
            except grpc.aio.AioRpcError:
                return False
            return True

        await _until(replicated, "b replicating a's log")
        await _until(witnessed, "b cosigning a's checkpoint")
    formatter = JsonFormatter()
    written = "\n".join(formatter.format(r) for r in caplog.records)
    captured = capfd.readouterr()
    everything = "\n".join([written, captured.out, captured.err])
    assert len(caplog.records) > 20, "the story logged next to nothing: is DEBUG on?"
    for source, needles in _secrets(directory, party_keys).items():
        leaked = [n for n in needles if n in everything]
        assert not leaked, f"{source} appears in the logs: {leaked[:3]}"


def test_a_key_file_that_does_not_parse_is_reported_without_its_contents(tmp_path: Path) -> None:
    good = tmp_path / "good.key"
    create_key_file(good, "a")
    text = good.read_text(encoding="ascii").strip()
    for broken in (text[:-3] + "!!!", text.replace("+", "-", 1), text + "=", text[:-10]):
        bad = tmp_path / "bad.key"
        bad.unlink(missing_ok=True)
        bad.write_text(broken + "\n", encoding="ascii")
        bad.chmod(0o600)
        with pytest.raises(KeyFileError) as refused:
            load_key_file(bad)
        report = "".join(traceback.format_exception(refused.value))
        seed = _signer_seed(good)
        for needle in [broken, *_needles(seed)]:
            assert needle not in report, report


def test_the_search_finds_a_key_cut_short_in_any_encoding() -> None:
    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    needles = set(_needles(seed))
    for encoded in _encodings(seed):
        line = f'{{"msg": "oops", "key": "{encoded[3:27]}…"}}'
        assert any(n in line for n in needles), encoded
    public = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    assert not any(n in public.decode() for n in needles)
