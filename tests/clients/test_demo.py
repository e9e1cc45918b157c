"""``make demo`` end to end: the tour runs as a user runs it, shows each step's facts, cleans up.

The tour is run as its own process (``python -m clients.demo``), exactly as
``make demo`` runs it, with real ``kaifang node`` processes; its output is
checked for what each step must show, and afterwards nothing may still
listen on the exchanges' ports.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from clients import demo
from exchange.network import NETWORK_FILE, load_network

ROOT = Path(__file__).resolve().parents[2]


def _after(text: str, marker: str) -> str:
    """The text from ``marker`` to the next command or heading."""
    start = text.index(marker)
    rest = text[start + len(marker) :]
    ends = [i for i in (rest.find("\n$ "), rest.find("\n=== ")) if i >= 0]
    return rest[: min(ends)] if ends else rest


def test_the_demo_tours_the_network_and_stops_every_node(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "clients.demo", "--dir", str(directory)],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, (out, done.stderr)
    network = load_network(directory / NETWORK_FILE)
    east, west, north = (network.member(n).client_address for n in ("east", "west", "north"))

    # The parties registered at three different exchanges.
    for origin in ("east", "west", "north"):
        assert f"sequenced by {origin} at index 0; receipt verified" in out

    # The offer was published at east and found by a search at west.
    published = _after(out, "--evaluation-report CNIPA-EVAL-2026-0417")
    offer_id = re.search(r"recorded as statement ([0-9a-f]{64})", published)
    assert offer_id is not None, published
    assert "sequenced by east" in published
    searches = re.findall(rf"\$ kaifang offer search .* --server {re.escape(west)}\n", out)
    assert searches
    assert offer_id.group(1) in _after(out, searches[-1])
    assert "found at west" in out

    # Accepted at west; the receipt is east's.
    accept = re.search(rf"\$ kaifang license accept {offer_id.group(1)} .* --server (\S+)\n", out)
    assert accept is not None
    assert accept.group(1) == west
    accepted = _after(out, accept.group(0))
    assert "acceptance of the open licence" in accepted
    assert "sequenced by east at index" in accepted
    assert "receipt verified against east's key" in accepted

    # The transfer without the bank is refused (exit 7, the reason and the law), then registered.
    refused = _after(
        out, f"$ kaifang draft submit transfer.json --network network.toml --server {east}"
    )
    assert "(exit status 7)" in refused
    assert "SIGNATURE_MISSING" in refused
    assert "Civil Code Art. 444" in refused
    registered = out.index("transfer registered: recorded as statement")
    assert registered > out.index("(exit status 7)")
    assert "sequenced by east" in out[registered:]

    # Disputed and mediated (the mediation submitted at north), and a credit event recorded.
    assert re.search(rf"\$ kaifang dispute mediate .* --server {re.escape(north)}\n", out)
    assert "mediation of the dispute: recorded as statement" in out
    assert re.search(r"--evidence east:\d+ ", out)
    assert ": 1 outstanding" in out

    # The bundle exported at north verifies offline with every log's pinned key.
    verified = _after(out, "$ kaifang audit verify bundle.json --network network.toml")
    assert "bundle of patent" in verified
    assert ": verified" in verified
    for origin in ("east", "west", "north"):
        assert re.search(
            rf"log {origin}: checkpoint size \d+ signed \(pinned key\), cosigned by", verified
        )
    assert (directory / "bundle.json").is_file()

    # All three converged, then stopped.
    status = _after(out, "$ kaifang network status --config east/kaifang.toml --wait 30")
    assert "converged: yes" in status
    assert "stopped the exchanges: east exited 0, west exited 0, north exited 0" in out
    assert "demo finished in" in out
    for address in (east, west, north):
        host, port = address.rsplit(":", 1)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, int(port)), timeout=5).close()


def test_the_demo_refuses_a_directory_that_is_not_a_previous_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keep = tmp_path / "notes.txt"
    keep.write_text("not a demo")
    assert demo.main(["--dir", str(tmp_path)]) == 1
    assert keep.read_text() == "not a demo"
    assert "is not a previous demo" in capsys.readouterr().err
