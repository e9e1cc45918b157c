"""Every RPC of ``kaifang.federation.v1.FederationService`` under fuzzed requests, over mutual TLS.

One node for the module: member ``a`` of a two-member network, called as
member ``b`` with ``b``'s certificate. Seeds name what ``a`` holds (its
own log and the replica of ``b``'s), statements to forward, and checkpoints
of ``b``'s log signed with ``b``'s key for ``a`` to witness; they are
mutated field by field and byte by byte, or replaced by random bytes. For
every request: never a server fault, every refusal with its reason, and
nothing written unless the request was one that may write (a statement
sequenced for the first time, a checkpoint cosigned, evidence of a fork
kept), and the node still healthy. A caller that is no member is refused
every RPC before anything is looked at.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.network import (
    TlsIdentity,
    channel_credentials,
    channel_options,
    issue_certificate,
    private_key_pem,
)
from kaifang.exchange.v1 import statements_pb2 as pb
from kaifang.federation.v1 import federation_pb2 as fed
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.merkle import consistency_plan, leaf_hash, root_hash
from ledger.note import Signer
from tests.exchange import story
from tests.hostile.corpus import StatementCorpus, signed_statements, statement_corpus
from tests.hostile.harness import ORIGIN, PEER, Answer, Target, probe, target
from tests.hostile.mutations import payloads

pytestmark = pytest.mark.asyncio(loop_scope="module")

SERVICE = "/kaifang.federation.v1.FederationService"
STREAMS = {"StreamEntries"}
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
METHODS = [
    "GetHeads",
    "StreamEntries",
    "GetInclusionProof",
    "GetConsistencyProof",
    "ForwardStatement",
    "AddCheckpoint",
    "ListForkEvidence",
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    async with target(tmp_path_factory.mktemp("fuzz-federation") / "net") as found:
        yield found


# The made-up log of b that the seeds' checkpoints and proofs describe.
B_LEAVES = [leaf_hash(f"b entry {i}".encode()) for i in range(24)]


def _root(size: int) -> bytes:
    return root_hash(B_LEAVES[:size])


def _b_checkpoint(node: Target, size: int) -> str:
    """A checkpoint of ``b``'s made-up log at ``size``, signed with ``b``'s log key."""
    return sign_checkpoint(Checkpoint(PEER, size, _root(size)), node.peer_key())


def _proof(old: int, new: int) -> list[bytes]:
    """The consistency proof between two sizes of ``b``'s made-up log."""
    plan = consistency_plan(old, new)
    hashes = {
        (level, index): root_hash(B_LEAVES[index << level : (index + 1) << level])
        for level, index in plan.nodes()
    }
    return plan.assemble(hashes)


@st.composite
def _witness_requests(draw: Any, key: Signer) -> bytes:
    """A checkpoint of ``b`` signed with its key: true, forked or absurd, with a proof or not.

    Signed, so that it gets past the signature into the witness's state
    machine: growth, stale old sizes, forks, failing proofs, sizes past any
    log.
    """
    small = st.integers(0, len(B_LEAVES))
    # Mostly sizes of the made-up log, where proofs can be right; now and
    # then one past any log (which, once cosigned, every later growth must
    # start from).
    rare = draw(st.integers(0, 19)) == 0
    huge = st.sampled_from([2**63 - 1, 2**62])
    size = draw(huge if rare else small)
    true_root = size <= len(B_LEAVES) and draw(st.booleans())
    root = _root(size) if true_root else draw(st.binary(min_size=32, max_size=32))
    old = draw(st.integers(0, 2**64 - 1) | huge | small | small | small)
    if old <= size <= len(B_LEAVES) and draw(st.booleans()):
        proof = _proof(old, size) if 0 < old < size else []
    else:
        hashes = st.binary(min_size=32, max_size=32) | st.binary(max_size=40)
        proof = draw(st.lists(hashes, max_size=10))
    note = sign_checkpoint(Checkpoint(PEER, size, root), key)
    request = fed.AddCheckpointRequest(old_size=old, consistency_proof=proof, checkpoint=note)
    return request.SerializeToString()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seeds(node: Target) -> dict[str, list[Any]]:
    size = await node.size()
    m = node.market
    return {
        "GetHeads": [fed.GetHeadsRequest()],
        "StreamEntries": [
            fed.StreamEntriesRequest(origin=ORIGIN),
            fed.StreamEntriesRequest(origin=ORIGIN, start=2, max_batch=3, follow=True),
            fed.StreamEntriesRequest(origin=PEER, follow=True),
        ],
        "GetInclusionProof": [
            fed.GetInclusionProofRequest(origin=ORIGIN, index=1),
            fed.GetInclusionProofRequest(origin=ORIGIN, index=0, tree_size=size),
        ],
        "GetConsistencyProof": [
            fed.GetConsistencyProofRequest(origin=ORIGIN, old_size=1),
            fed.GetConsistencyProofRequest(origin=ORIGIN, old_size=1, new_size=size),
        ],
        "ForwardStatement": [
            fed.ForwardStatementRequest(signed=m.admitted[0]),
            fed.ForwardStatementRequest(signed=story.registration(m.newcomer)),
            fed.ForwardStatementRequest(signed=story.withdrawal(m.offer_id, [m.owner])),
        ],
        "AddCheckpoint": [
            fed.AddCheckpointRequest(old_size=0, checkpoint=_b_checkpoint(node, 0)),
            fed.AddCheckpointRequest(old_size=0, checkpoint=_b_checkpoint(node, 3)),
        ],
        "ListForkEvidence": [
            fed.ListForkEvidenceRequest(),
            fed.ListForkEvidenceRequest(origin=PEER),
        ],
    }


def _may_write(method: str, answer: Answer) -> bool:
    """Whether ``answer`` is one that may have committed something."""
    if method == "ForwardStatement" and answer.code == grpc.StatusCode.OK:
        return not fed.ForwardStatementResponse.FromString(answer.responses[0]).duplicate
    if method == "AddCheckpoint":
        # A cosignature is recorded, and so is evidence against a log caught
        # signing two histories: the one refusal that must write.
        return answer.code == grpc.StatusCode.OK or answer.reason() in (
            "FORK_DETECTED", "INCONSISTENT",
        )  # fmt: skip
    return False


async def _probe(node: Target, channel: grpc.aio.Channel, method: str, payload: bytes) -> Answer:
    return await probe(
        node, channel, f"{SERVICE}/{method}", payload,
        stream=method in STREAMS, may_write=functools.partial(_may_write, method),
    )  # fmt: skip


@pytest.fixture(scope="module")
def statements(node: Target) -> StatementCorpus:
    return statement_corpus(node)


def _requests(
    node: Target, seeds: dict[str, list[Any]], statements: StatementCorpus, method: str
) -> st.SearchStrategy[bytes]:
    generic = payloads(seeds[method])
    if method == "ForwardStatement":
        special = signed_statements(statements).map(
            lambda s: fed.ForwardStatementRequest(signed=s).SerializeToString()
        )
    elif method == "AddCheckpoint":
        special = _witness_requests(node.peer_key())
    else:
        return generic
    # Half and half: ``|`` would give the special requests one branch in five.
    return st.booleans().flatmap(lambda first: special if first else generic)


@pytest.mark.parametrize("method", METHODS)
@FUZZ
@given(data=st.data())
async def test_fuzzed_requests_from_a_member_get_a_client_error(
    node: Target,
    seeds: dict[str, list[Any]],
    statements: StatementCorpus,
    method: str,
    data: st.DataObject,
) -> None:
    payload = data.draw(_requests(node, seeds, statements, method))
    await _probe(node, node.peer, method, payload)


def _outsider(node: Target) -> TlsIdentity:
    """A TLS identity the network's own CA issued to a name the network file does not list."""
    ca = node.directory / "ca"
    ca_key = serialization.load_pem_private_key((ca / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_certificate = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    key, certificate = issue_certificate(ca_key, ca_certificate, "outsider")
    directory = node.directory / "outsider"
    directory.mkdir(exist_ok=True)
    key_path, cert_path = directory / "tls.key", directory / "tls.pem"
    if not key_path.exists():
        key_path.write_bytes(private_key_pem(key))
        key_path.chmod(0o600)
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return TlsIdentity.load(key_path, cert_path)


@pytest.mark.parametrize("method", METHODS)
async def test_a_caller_that_is_no_member_is_refused_every_rpc_and_changes_nothing(
    node: Target, seeds: dict[str, list[Any]], method: str
) -> None:
    # TLS accepts the certificate (the network's CA issued it); membership does not.
    before = await node.digest()
    member = node.network.member(ORIGIN)
    credentials = channel_credentials(node.network, _outsider(node))
    async with grpc.aio.secure_channel(
        member.address, credentials, options=channel_options(member)
    ) as channel:
        for seed in seeds[method]:
            answer = await _probe(node, channel, method, seed.SerializeToString())
            assert answer.code == grpc.StatusCode.UNAUTHENTICATED, answer
            assert answer.reason() == "PEER_REFUSED"
    assert await node.digest() == before


# -- regressions: requests that once got a server fault --------------------------------


async def test_a_forwarded_statement_dated_past_any_calendar_is_an_invalid_argument(
    node: Target,
) -> None:
    m = node.market
    body = pb.LicenseAccepted(
        offer_id=m.offer_id, licensee=m.bank.party_id, terms=story.CNY_20K,
        start_date=pb.Date(year=2024, month=1, day=2**32 - 1),
    )  # fmt: skip
    signed = story.signed(pb.Statement(license_accepted=body), (m.bank.party_id, m.bank))
    payload = fed.ForwardStatementRequest(signed=signed).SerializeToString()
    answer = await _probe(node, node.peer, "ForwardStatement", payload)
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT, answer
    assert answer.metadata()["field"] == "license_accepted.start_date"
