"""A node restarted at a size its witnesses already cosigned collects cosignatures without error.

Found by the chaos run, since fixed: which size each witness last cosigned
is kept in memory only, so a node back from a restart asks every witness
again from size 0; a witness that had cosigned the current checkpoint
answers with its size, the node asks again from there and gets the same
cosignature back. It used to insert it a second time into ``cosignatures``,
whose key is (log, size, witness): the insert failed, and every round
logged "collecting cosignatures failed" at ERROR until the log grew.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clients.localnet import LocalNetwork
from tests.faults.chaos import logged_errors
from tests.federation.net import eventually, network_dir, seed

# Cosigning rounds run every second or so: several fit in this.
ROUNDS_S = 5.0


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[LocalNetwork]:
    network = LocalNetwork.create(network_dir(tmp_path), ["a", "b"])
    try:
        await network.start_all()
        yield network
    finally:
        await network.close()


async def test_a_restarted_node_collects_cosignatures_without_error(pair: LocalNetwork) -> None:
    await seed(pair, "a", 701)

    async def cosigned_by_b() -> bool:
        heads = await pair.heads("a")
        own = next(h for h in heads.heads if h.origin == "a")
        return own.tree_size > 0 and "\n— b " in own.checkpoint

    await eventually(cosigned_by_b, what="b's cosignature on a's checkpoint")
    assert await pair.stop("a") == 0
    pair.start("a")
    await pair.wait_ready("a")
    await asyncio.sleep(ROUNDS_S)
    assert await cosigned_by_b()
    assert logged_errors(pair) == []
