"""A member that lost its database gets its own log back, from a tile export or from a peer.

Two real node processes. ``a`` holds a log that ``b`` replicates; ``a`` is
stopped and its database deleted; ``kaifang ledger restore`` brings the log
back (first from the tile export ``a`` made, then from ``b``), and ``a``
starts again with the same log: the network converges on the digest it had,
and ``a`` goes on sequencing after its last entry without a fork. A restore
into a database that already holds the log is refused.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clients.localnet import LocalNetwork
from tests.exchange import story
from tests.federation.net import network_dir, seed, submit

MEMBERS = ("a", "b")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    network = LocalNetwork.create(network_dir(tmp_path), MEMBERS)
    try:
        await network.start_all()
        yield network
    finally:
        await network.close()


async def _kaifang(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clients.cli", *argv, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _sizes(net: LocalNetwork, at: str) -> dict[str, int]:
    return {h.origin: h.tree_size for h in (await net.heads(at)).heads}


async def test_a_lost_log_is_restored_from_its_tiles_and_from_a_peer(
    net: LocalNetwork, tmp_path: Path
) -> None:
    sample = await seed(net, "a", 801, patents=3)
    heads = await net.wait_converged(MEMBERS)
    digest = heads.network_digest
    size = (await _sizes(net, "b"))["a"]
    assert size == 6  # three parties, three patents
    config = str(net.nodes["a"].config)
    database = net.nodes["a"].directory / "kaifang.db"

    # The operator's backup: a tile export of a's log.
    await net.stop("a")
    tiles = tmp_path / "tiles"
    code, _, err = await _kaifang("ledger", "tiles", str(tiles), "--db", str(database),
                                  "--origin", "a")  # fmt: skip
    assert code == 0, err

    # A database that holds the log is not restored over.
    code, _, err = await _kaifang(
        "ledger", "restore", "--config", config, "--from-tiles", str(tiles)
    )
    assert code == 1
    assert "already holds 6 entries" in err

    # The disk is lost; the log comes back from the export.
    for path in database.parent.glob("kaifang.db*"):
        path.unlink()
    code, out, err = await _kaifang(
        "ledger", "restore", "--config", config, "--from-tiles", str(tiles)
    )
    assert code == 0, err
    assert "restored 6 entries of a" in out
    await net.start_all(["a"])
    assert (await net.wait_converged(MEMBERS)).network_digest == digest

    # Lost again; this time the log comes back from b, which replicated it.
    await net.stop("a")
    for path in database.parent.glob("kaifang.db*"):
        path.unlink()
    code, out, err = await _kaifang("ledger", "restore", "--config", config)
    assert code == 0, err
    assert "restored 6 entries of a from peer b" in out
    await net.start_all(["a"])
    assert (await net.wait_converged(MEMBERS)).network_digest == digest

    # a goes on after its last entry; b takes it (no fork) and the views were rebuilt.
    number = sample.patents[0].application_number
    offer = await submit(net, "a", story.offer(number, [sample.parties[0]]))
    assert (offer.origin, offer.index) == ("a", size)
    await net.wait_converged(MEMBERS)
    assert (await _sizes(net, "b"))["a"] == size + 1
    assert not any(h.halted for h in (await net.heads("b")).heads)
