"""``kaifang network status``: the report from members' heads, and the command on real nodes.

The report is checked first from hand-built GetHeads answers (nodes that
agree, one that lags, one that does not answer, witnesses read from a really
cosigned checkpoint). Then the command runs as its own process against a
network of real node processes: with one member down it exits 4 and names
it; once that member is up and caught up it exits 0.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clients.cli import main
from clients.localnet import LocalNetwork
from clients.netstatus import (
    DIGEST_PREFIX,
    EXIT_CONVERGED,
    EXIT_DIVERGED,
    EXIT_UNREACHABLE,
    Holding,
    Unreachable,
    build_report,
    cosigners,
    render_text,
)
from exchange.federation import network_digest
from exchange.network import Member
from kaifang.federation.v1 import federation_pb2 as fed
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import CosignatureSigner
from ledger.note import Signer, add_signatures
from tests.federation.net import network_dir, seed

REPO = Path(__file__).resolve().parents[2]
ROOT = {size: bytes([size]) * 32 for size in range(16)}


def _member(name: str, port: int) -> Member:
    return Member(
        name, f"127.0.0.1:{port}", f"127.0.0.1:{port - 1}", f"{name}+00000000+AA", b"", b""
    )


MEMBERS = [_member(n, 7401 + 2 * i) for i, n in enumerate(("east", "west", "south", "north"))]
EAST_LOG = Signer.generate("east")


def _note(origin: str, size: int, *witnesses: str) -> str:
    signer = EAST_LOG if origin == "east" else Signer.generate(origin)
    checkpoint = Checkpoint(origin, size, ROOT[size])
    note = sign_checkpoint(checkpoint, signer)
    cosignatures = [
        CosignatureSigner.generate(w).cosign(checkpoint.body(), 1_700_000_000) for w in witnesses
    ]
    return add_signatures(note, cosignatures) if cosignatures else note


def _answer(
    node: str, sizes: dict[str, int], *, held: dict[str, int] | None = None, halted: str = ""
) -> fed.GetHeadsResponse:
    heads = []
    for origin, size in sorted(sizes.items()):
        # The origin serves its own head with the cosignatures it collected.
        witnesses = ("north", "west") if origin == node == "east" else ()
        heads.append(
            fed.Head(
                origin=origin, tree_size=size, root_hash=ROOT[size],
                checkpoint=_note(origin, size, *witnesses), halted=origin == halted,
                entries_held=(held or {}).get(origin, size),
            )
        )  # fmt: skip
    digest = network_digest((h.origin, h.tree_size, h.root_hash) for h in heads)
    return fed.GetHeadsResponse(node=node, heads=heads, network_digest=digest)


AGREED = {"east": 5, "west": 3, "south": 2}


def test_two_agree_one_lags_one_is_silent() -> None:
    answers: dict[str, fed.GetHeadsResponse | Unreachable] = {
        "east": _answer("east", AGREED),
        "west": _answer("west", AGREED),
        # Behind on east by two entries, and has no checkpoint of west yet.
        "south": _answer("south", {"east": 3, "south": 2}, held={"east": 4}),
        "north": Unreachable("UNAVAILABLE", "connection refused"),
    }
    report = build_report(MEMBERS, answers, {"east": 0, "west": 1, "south": 0}, network="demo")

    nodes = {n.name: n for n in report.nodes}
    assert [n.name for n in report.nodes] == ["east", "west", "south", "north"]
    assert nodes["east"].digest == nodes["west"].digest != nodes["south"].digest
    assert nodes["north"].digest is None
    assert not nodes["north"].reachable
    assert nodes["north"].error == Unreachable("UNAVAILABLE", "connection refused")
    assert (nodes["west"].fork_evidence, nodes["north"].fork_evidence) == (1, None)

    origins = {o.origin: o for o in report.origins}
    assert [o.origin for o in report.origins] == ["east", "west", "south", "north"]
    east = origins["east"]
    assert east.max_size == 5
    assert east.holdings == {
        "east": Holding(5, 5, 0),
        "west": Holding(5, 5, 0),
        "south": Holding(3, 4, 1),  # four held, three of them signed
        "north": None,
    }
    assert origins["west"].holdings["south"] == Holding(None, 0, 3)
    assert origins["north"].max_size == 0  # nobody holds the silent member's log
    assert east.witnesses == ("north", "west")
    assert origins["west"].witnesses == ()
    assert origins["north"].witnesses is None
    assert origins["north"].witnesses_unknown == "north did not answer"

    assert not report.converged
    assert report.digest is None  # the answering nodes disagree
    assert report.exit_code == EXIT_UNREACHABLE

    text = render_text(report)
    assert "NO (UNAVAILABLE)" in text
    assert "3 (held 4) lag 1" in text
    assert "witnesses of east: 2 (north, west)" in text
    assert text.endswith("converged: NO (no answer from north)\n")

    as_json = report.to_json()
    assert json.loads(json.dumps(as_json)) == as_json
    assert as_json["converged"] is False
    assert as_json["exit_code"] == EXIT_UNREACHABLE
    assert as_json["origins"][0]["nodes"]["south"] == {"tree_size": 3, "entries_held": 4, "lag": 1}
    assert as_json["origins"][0]["nodes"]["north"] is None
    assert as_json["nodes"][3]["error"] == {"code": "UNAVAILABLE", "message": "connection refused"}


def test_every_member_answering_is_converged_only_with_one_digest() -> None:
    members = MEMBERS[:3]
    agreed = {m.name: _answer(m.name, AGREED) for m in members}
    report = build_report(members, dict(agreed))
    assert report.converged
    assert report.exit_code == EXIT_CONVERGED
    digest = agreed["east"].network_digest
    assert report.digest == digest
    assert render_text(report).endswith(f"converged: yes (digest {digest.hex()})\n")
    assert report.to_json()["digest"] == digest.hex()

    lagging: dict[str, fed.GetHeadsResponse | Unreachable] = dict(agreed)
    lagging["south"] = _answer("south", {**AGREED, "west": 1}, halted="west")
    report = build_report(members, lagging)
    assert not report.converged
    assert report.exit_code == EXIT_DIVERGED
    assert report.nodes[2].halted == ("west",)
    assert render_text(report).endswith("converged: NO (the digests differ)\n")


def test_every_member_must_have_an_answer_or_an_error() -> None:
    with pytest.raises(ValueError, match="north"):
        build_report(MEMBERS, {m.name: _answer(m.name, AGREED) for m in MEMBERS[:3]})


def test_cosigners_are_the_signature_lines_after_the_origins() -> None:
    assert cosigners(_note("east", 4, "west", "north")) == ("west", "north")
    assert cosigners(_note("east", 4)) == ()


def test_a_configuration_without_a_network_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "kaifang.toml"
    config.write_text('[node]\norigin = "east"\n')
    assert main(["network", "status", "--config", str(config)]) == 1
    assert "no [federation] table" in capsys.readouterr().err
    assert main(["network", "status", "--config", str(tmp_path / "missing.toml")]) == 1
    assert "cannot read" in capsys.readouterr().err


# -- the command against real nodes --------------------------------------------

NAMES = ("east", "west", "north")


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    network = LocalNetwork.create(network_dir(tmp_path), NAMES)
    try:
        await network.start_all(NAMES[:2])
        yield network
    finally:
        await network.close()


async def _status(net: LocalNetwork, *flags: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clients.cli", "network", "status",
        "--config", str(net.nodes["east"].config), *flags,
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    # Whatever the status, the command says nothing on stderr but gRPC's noise.
    assert b"kaifang: error" not in err, err.decode()
    return process.returncode, out.decode()


async def test_status_names_the_silent_member_then_sees_the_network_converge(
    net: LocalNetwork,
) -> None:
    await net.wait_converged(NAMES[:2])
    await seed(net, "east", 601)
    await net.wait_converged(NAMES[:2])

    code, out = await _status(net, "--json")
    assert code == EXIT_UNREACHABLE
    report: dict[str, Any] = json.loads(out)
    assert report["exit_code"] == EXIT_UNREACHABLE
    assert report["converged"] is False
    nodes = {n["name"]: n for n in report["nodes"]}
    digest = (await net.heads("east")).network_digest.hex()
    assert (await net.heads("west")).network_digest.hex() == digest
    for name in ("east", "west"):
        assert nodes[name]["reachable"] is True
        assert nodes[name]["digest"] == digest
        assert nodes[name]["halted"] == []
        assert nodes[name]["fork_evidence"] == 0
    assert nodes["north"]["reachable"] is False
    assert nodes["north"]["error"]["code"] == "UNAVAILABLE"
    assert report["digest"] == digest  # the nodes that answered agree
    origins = {o["origin"]: o for o in report["origins"]}
    east = origins["east"]
    assert east["max_size"] > 0
    assert east["nodes"]["west"]["lag"] == 0
    assert east["nodes"]["north"] is None
    assert set(east["witnesses"]) <= {"west", "north"}

    code, out = await _status(net)
    assert code == EXIT_UNREACHABLE
    assert digest[:DIGEST_PREFIX] in out
    for name in NAMES:
        assert name in out
    assert "converged: NO" in out

    # north starts empty and catches up while `--wait` asks again and again.
    await net.start_all(["north"])
    code, out = await _status(net, "--json", "--wait", "45")
    report = json.loads(out)
    assert code == EXIT_CONVERGED
    assert report["converged"] is True
    assert all(n["reachable"] for n in report["nodes"])
    assert report["digest"] == (await net.heads("north")).network_digest.hex()
