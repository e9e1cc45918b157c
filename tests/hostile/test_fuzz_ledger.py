"""Every RPC of ``kaifang.ledger.v1.LedgerService`` under fuzzed requests.

One node for the module, holding a market (so its own log has entries and
several signed sizes) and the empty replica of the other member's log.
Requests start from seeds naming real origins, indices, sizes and leaf
hashes, and are mutated field by field and byte by byte, or are random
bytes. For every one: never a server fault, every refusal with its reason,
nothing written, and the node still healthy; and after all of them every
table of the database is as it was.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kaifang.ledger.v1 import ledger_pb2 as lg
from ledger.merkle import leaf_hash
from tests.hostile.harness import ORIGIN, PEER, Target, probe, target
from tests.hostile.mutations import payloads

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVICE = "/kaifang.ledger.v1.LedgerService"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    async with target(tmp_path_factory.mktemp("fuzz-ledger") / "net") as found:
        yield found


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seeds(node: Target) -> dict[str, list[Any]]:
    size = await node.size()
    first = await node.node.store.entry(0)
    return {
        "GetCheckpoint": [
            lg.GetCheckpointRequest(),
            lg.GetCheckpointRequest(origin=ORIGIN, tree_size=size),
            lg.GetCheckpointRequest(origin=PEER),
        ],
        "GetEntries": [
            lg.GetEntriesRequest(),
            lg.GetEntriesRequest(origin=ORIGIN, start=1, end=size, batch_size=2),
            lg.GetEntriesRequest(origin=PEER),
        ],
        "GetInclusionProof": [
            lg.GetInclusionProofRequest(index=1, tree_size=size),
            lg.GetInclusionProofRequest(origin=ORIGIN, leaf_hash=leaf_hash(first)),
        ],
        "GetConsistencyProof": [
            lg.GetConsistencyProofRequest(old_size=1, new_size=size),
            lg.GetConsistencyProofRequest(origin=ORIGIN, old_size=0),
        ],
        "GetReceipt": [
            lg.GetReceiptRequest(index=0),
            lg.GetReceiptRequest(origin=ORIGIN, index=size - 1, tree_size=size),
        ],
    }


METHODS = ["GetCheckpoint", "GetEntries", "GetInclusionProof", "GetConsistencyProof", "GetReceipt"]


@pytest.mark.parametrize("method", METHODS)
@FUZZ
@given(data=st.data())
async def test_fuzzed_requests_get_a_client_error_and_write_nothing(
    node: Target, seeds: dict[str, list[Any]], method: str, data: st.DataObject
) -> None:
    payload = data.draw(payloads(seeds[method]))
    await probe(node, node.channel, f"{SERVICE}/{method}", payload, stream=method == "GetEntries")


async def test_the_fuzzed_requests_left_every_table_as_it_was(
    node: Target, seeds: dict[str, list[Any]]
) -> None:
    before = await node.digest()
    for method in METHODS:
        for seed in seeds[method]:
            answer = await probe(
                node, node.channel, f"{SERVICE}/{method}", seed.SerializeToString(),
                stream=method == "GetEntries",
            )  # fmt: skip
            assert answer.reason() != "INTERNAL"
    assert await node.digest() == before
