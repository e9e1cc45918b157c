"""Audit bundles: built from a real node's histories, verified offline, and every forgery caught.

A real node on port 0 (SQLite) records a patent's story: registrations, the
register's record, an offer, an acceptance, a pledge, a dispute and its
mediation (the mediator's role granted by the operator). The bundle is built
from the node's own ``GetHistory`` answers for the patent and for each
party that signed, then altered one way at a time: each alteration must
fail verification with a :class:`BundleError` naming what failed.

A log that admits a bad signature cannot be had from an honest node, so the
signature tests re-log the node's entries, one of them altered, in an
in-memory RFC 6962 tree under a new log key (:func:`relog`): the proofs then
hold, and only the signature check stands between the bundle and belief.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.audit import (
    ATTESTED,
    FORMAT,
    OPERATOR_KEY,
    PARTY_KEY,
    REGISTER_KEY,
    build_bundle,
    dumps,
    load,
    report,
    signing_parties,
    timeline,
    verify_bundle,
)
from clients.errors import BundleError
from exchange.config import NodeConfig
from exchange.sample import SampleParty, generate
from exchange.server import start_node
from exchange.statements import statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import exchange_pb2_grpc
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger import merkle
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import CosignatureSigner
from ledger.db import sqlite_url
from ledger.keys import load_key_file
from ledger.note import NoteSignature, Signer, add_signatures, parse_note
from tests.conftest import ORIGIN
from tests.exchange import story


@dataclass(frozen=True)
class World:
    """What the node recorded, and what a mediator and the tests need of it."""

    number: str
    histories: tuple[api.GetHistoryResponse, ...]  # the patent's first, then each signer's
    vkey: str
    leaves: tuple[bytes, ...]  # the node's whole log
    register_key: bytes
    operator_key: bytes
    owner: SampleParty
    licensee: SampleParty
    bank: SampleParty
    mediator: SampleParty

    def bundle(self, witnesses: tuple[str, ...] = ()) -> dict[str, Any]:
        """A fresh honest bundle of the patent (a new dict each time: tests alter it)."""
        return build_bundle(
            ("patent", self.number), self.histories, {ORIGIN: self.vkey}, list(witnesses)
        )


async def _record_story(tmp: Path) -> World:
    config = NodeConfig(
        origin=ORIGIN,
        listen="127.0.0.1:0",
        database=sqlite_url(tmp / "ledger.db"),
        log_key=tmp / "log.key",
    )
    async with (
        start_node(config) as node,
        grpc.aio.insecure_channel(f"127.0.0.1:{node.port}") as channel,
    ):
        stub = exchange_pb2_grpc.ExchangeServiceStub(channel)
        sample = generate(77, parties=5, patents=1)
        owner, licensee, bank, mediator = sample.parties[:4]  # the fifth signs nothing
        register = load_key_file(tmp / "register.key")
        operator = load_key_file(tmp / "operator.key")

        async def admit(signed: pb.SignedStatement) -> bytes:
            response = await stub.SubmitStatement(api.SubmitStatementRequest(signed=signed))
            assert not response.duplicate
            return response.statement_id

        for party in sample.parties:
            await admit(story.registration(party))
        await admit(story.role(mediator, pb.ROLE_MEDIATOR, operator, ORIGIN))
        # The licensee replaces its key (signed by the old and the new) and
        # accepts with the new one: the bundle must prove that key too.
        rotated = SampleParty(Ed25519PrivateKey.generate(), licensee.registration)
        new_key = rotated.key.public_key().public_bytes_raw()
        rotation = pb.PartyKeyRotated(party_id=licensee.party_id, new_public_key=new_key)
        await admit(
            story.signed(
                pb.Statement(party_key_rotated=rotation),
                (licensee.party_id, licensee),
                (licensee.party_id, rotated),
            )
        )
        number = sample.patents[0].application_number
        await admit(story.record(sample.patents[0], [owner], register))
        offer_id = await admit(story.offer(number, [owner], months=36))
        licence_id = await admit(story.acceptance(offer_id, rotated))
        await admit(story.pledge(number, [owner], bank, amount_minor=100_000_000))
        dispute_id = await admit(story.dispute(number, licence_id, rotated, [owner]))
        await admit(story.mediation(dispute_id, mediator))

        patent = await stub.GetHistory(api.GetHistoryRequest(application_number=number))
        histories = [patent]
        for party_id in sorted(signing_parties(patent)):
            histories.append(await stub.GetHistory(api.GetHistoryRequest(party_id=party_id)))
        size = (await node.store.latest_checkpoint()).size
        leaves = tuple([await node.store.entry(i) for i in range(size)])
        return World(
            number, tuple(histories), node.signer.verifier_key(), leaves,
            register.public_key, operator.public_key, owner, licensee, bank, mediator,
        )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """One node's story, recorded once for the module (the tests only read it)."""
    return asyncio.run(_record_story(tmp_path_factory.mktemp("audit")))


def _leaf(bundle: dict[str, Any], i: int) -> pb.LogEntry:
    return _entry(bundle["entries"][i])


def _position(bundle: dict[str, Any], kind: str) -> int:
    """The position in the bundle of the first entry whose statement is of ``kind``."""
    for i in range(len(bundle["entries"])):
        statement = pb.Statement.FromString(_leaf(bundle, i).statement)
        if statement.WhichOneof("body") == kind:
            return i
    raise AssertionError(f"no {kind} entry in the bundle")


def _fails(bundle: dict[str, Any], what: str, *words: str, **options: Any) -> BundleError:
    with pytest.raises(BundleError) as failed:
        verify_bundle(bundle, **options)
    assert failed.value.what == what, str(failed.value)
    for word in words:
        assert word in str(failed.value)
    return failed.value


def relog(
    world: World, bundle: dict[str, Any], alter: Callable[[int, pb.LogEntry], None]
) -> dict[str, Any]:
    """``bundle`` with the node's log rebuilt in memory, each entry first passed to ``alter``.

    The log is re-signed by a new key of the same origin, and every entry
    of the bundle gets its leaf and a proof from the new tree, so that
    inclusion holds and only what ``alter`` did can fail.
    """
    leaves = []
    for index, data in enumerate(world.leaves):
        entry = pb.LogEntry.FromString(data)
        alter(index, entry)
        leaves.append(entry.SerializeToString())
    nodes: dict[tuple[int, int], bytes] = {
        (0, i): merkle.leaf_hash(x) for i, x in enumerate(leaves)
    }
    level = 1
    while (len(leaves) >> level) > 0:
        for i in range(len(leaves) >> level):
            left, right = nodes[(level - 1, 2 * i)], nodes[(level - 1, 2 * i + 1)]
            nodes[(level, i)] = merkle.node_hash(left, right)
        level += 1
    size = len(leaves)
    root = merkle.root_hash([nodes[(0, i)] for i in range(size)])
    signer = Signer.generate(ORIGIN)
    altered = copy.deepcopy(bundle)
    altered["logs"][ORIGIN] = {
        "vkey": signer.verifier_key(),
        "checkpoint": sign_checkpoint(Checkpoint(ORIGIN, size, root), signer),
    }
    for item in altered["entries"]:
        index = item["index"]
        proof = merkle.inclusion_plan(index, size).assemble(nodes)
        item["leaf"] = base64.b64encode(leaves[index]).decode()
        item["proof"] = [base64.b64encode(h).decode() for h in proof]
    return altered


# -- the honest bundle ----------------------------------------------------------


def test_a_bundle_from_a_real_node_verifies_with_every_party_signature_checked(
    world: World,
) -> None:
    bundle = world.bundle()
    assert bundle["format"] == FORMAT
    assert set(bundle) == {"format", "subject", "logs", "witnesses", "entries"}
    assert bundle["subject"] == {"patent": world.number}
    verified = verify_bundle(bundle)
    kinds = [e.kind for e in verified.subject_entries]
    assert kinds == [
        "patent_recorded", "offer_published", "license_accepted", "pledge_registered",
        "dispute_filed", "mediation_recorded",
    ]  # fmt: skip
    # Only the signing parties' registrations are kept from their histories:
    # not the mediator's role, nor the bystander who signed nothing.
    keys = [e for e in verified.entries if not e.about_subject]
    registered = {
        e.statement.party_registered.party_id for e in keys if e.kind == "party_registered"
    }
    parties = (world.owner, world.licensee, world.bank, world.mediator)
    assert registered == {p.party_id for p in parties}
    # The licensee's rotation is kept: it accepted with the new key.
    rotations = [e.statement.party_key_rotated for e in keys if e.kind == "party_key_rotated"]
    assert [r.party_id for r in rotations] == [world.licensee.party_id]
    accepted = next(e for e in verified.subject_entries if e.kind == "license_accepted")
    new_key = hashlib.sha256(rotations[0].new_public_key).digest()
    assert accepted.entry.signatures[0].key_fingerprint == new_key
    checks = [s for e in verified.entries for s in e.signatures]
    assert {s.how for s in checks if s.signer != "register"} == {PARTY_KEY}
    assert [s.how for s in checks if s.signer == "register"] == [ATTESTED]
    assert verified.counts.signatures_attested == 1
    assert verified.counts.signatures_verified == len(checks) - 1
    log = verified.logs[ORIGIN]
    assert log.checkpoint.size == len(world.leaves)
    assert (log.cosigned_by, log.pinned, verified.min_cosignatures) == ((), False, 0)


def test_the_bundle_survives_dumps_and_load_byte_for_byte(world: World) -> None:
    data = dumps(world.bundle())
    loaded = load(data)
    assert dumps(loaded) == data
    assert json.loads(data) == world.bundle()
    assert verify_bundle(loaded).counts == verify_bundle(world.bundle()).counts


def test_the_register_and_operator_keys_when_given_verify_their_signatures(
    world: World,
) -> None:
    bundle = world.bundle()
    verified = verify_bundle(
        bundle, register_key=world.register_key, operator_keys={ORIGIN: world.operator_key}
    )
    register = [s for e in verified.entries for s in e.signatures if s.signer == "register"]
    assert [s.how for s in register] == [REGISTER_KEY]
    assert verified.counts.signatures_attested == 0
    other = Signer.generate("register").public_key
    _fails(
        bundle, f"entries[{_position(bundle, 'patent_recorded')}].leaf.signatures[0]",
        "register", "another key", register_key=other,
    )  # fmt: skip


def test_a_pinned_key_that_matches_is_reported_as_pinned(world: World) -> None:
    verified = verify_bundle(world.bundle(), pinned_vkeys={ORIGIN: world.vkey})
    assert verified.logs[ORIGIN].pinned


def test_progress_is_reported_up_to_the_number_of_entries(world: World) -> None:
    seen: list[int] = []
    bundle = world.bundle()
    verify_bundle(bundle, progress=seen.append)
    assert seen[-1] == len(bundle["entries"])


def test_signing_parties_are_the_party_signers_not_the_register(world: World) -> None:
    expected = {w.party_id for w in (world.owner, world.licensee, world.bank, world.mediator)}
    assert signing_parties(world.histories[0]) == expected


def test_histories_of_one_log_at_two_checkpoints_cannot_be_bundled(world: World) -> None:
    other = api.GetHistoryResponse()
    other.CopyFrom(world.histories[1])
    smaller = Checkpoint(ORIGIN, 1, merkle.leaf_hash(world.leaves[0]))
    other.checkpoint = sign_checkpoint(smaller, Signer.generate(ORIGIN))
    with pytest.raises(ValueError, match="different checkpoints"):
        build_bundle(
            ("patent", world.number), [world.histories[0], other], {ORIGIN: world.vkey}, []
        )


def test_a_bundle_needs_a_verifier_key_for_every_log(world: World) -> None:
    with pytest.raises(ValueError, match="no verifier key"):
        build_bundle(("patent", world.number), world.histories, {}, [])


# -- each alteration fails, naming what failed ----------------------------------


def test_a_flipped_byte_of_a_leaf_fails_its_inclusion_proof(world: World) -> None:
    bundle = world.bundle()
    leaf = bytearray(base64.b64decode(bundle["entries"][2]["leaf"]))
    leaf[len(leaf) // 2] ^= 1
    bundle["entries"][2]["leaf"] = base64.b64encode(leaf).decode()
    _fails(bundle, "entries[2].proof", "not in the checkpoint")


def test_an_altered_proof_hash_fails(world: World) -> None:
    bundle = world.bundle()
    proof = bundle["entries"][1]["proof"]
    proof[0] = base64.b64encode(bytes(32)).decode()
    _fails(bundle, "entries[1].proof")


def test_a_proof_hash_of_the_wrong_length_fails(world: World) -> None:
    bundle = world.bundle()
    bundle["entries"][1]["proof"][0] = base64.b64encode(bytes(31)).decode()
    _fails(bundle, "entries[1].proof", "31 bytes")


def test_an_edited_checkpoint_size_fails_the_log_signature(world: World) -> None:
    bundle = world.bundle()
    note = bundle["logs"][ORIGIN]["checkpoint"]
    size = len(world.leaves)
    bundle["logs"][ORIGIN]["checkpoint"] = note.replace(f"\n{size}\n", f"\n{size + 1}\n", 1)
    _fails(bundle, f"logs.{ORIGIN}.checkpoint", "does not verify")


def test_a_middle_entry_removed_from_the_chain_is_named_as_the_gap(world: World) -> None:
    bundle = world.bundle()
    removed = bundle["entries"].pop(_position(bundle, "license_accepted"))
    after = bundle["entries"][_position(bundle, "pledge_registered")]["index"]
    error = _fails(
        bundle, "chain", f"chain of patent {world.number}",
        f"entry {after} names previous entry {removed['index']} of origin {ORIGIN}",
        "which the bundle does not hold",
    )  # fmt: skip
    assert str(error).startswith("chain: ")


def test_the_first_entry_removed_from_the_chain_is_named_as_the_gap(world: World) -> None:
    bundle = world.bundle()
    removed = bundle["entries"].pop(_position(bundle, "patent_recorded"))
    _fails(bundle, "chain", f"names previous entry {removed['index']}", "does not hold")


def test_a_log_key_of_the_same_name_but_another_key_fails(world: World) -> None:
    bundle = world.bundle()
    bundle["logs"][ORIGIN]["vkey"] = Signer.generate(ORIGIN).verifier_key()
    _fails(bundle, f"logs.{ORIGIN}.checkpoint", "no signature by a known key")


def test_a_log_key_named_for_another_origin_fails(world: World) -> None:
    bundle = world.bundle()
    bundle["logs"][ORIGIN]["vkey"] = Signer.generate("elsewhere.example/log").verifier_key()
    _fails(bundle, f"logs.{ORIGIN}.vkey", "elsewhere.example/log")


def test_a_log_key_other_than_the_pinned_one_fails(world: World) -> None:
    pinned = {ORIGIN: Signer.generate(ORIGIN).verifier_key()}
    _fails(world.bundle(), f"logs.{ORIGIN}.vkey", "pinned", pinned_vkeys=pinned)
    _fails(world.bundle(), f"logs.{ORIGIN}.vkey", "no key is pinned", pinned_vkeys={})


def _cosigned(world: World, witness: CosignatureSigner) -> dict[str, Any]:
    bundle = world.bundle(witnesses=(witness.verifier_key(),))
    note = bundle["logs"][ORIGIN]["checkpoint"]
    cosignature = witness.cosign(parse_note(note).text, 1_700_000_000)
    bundle["logs"][ORIGIN]["checkpoint"] = add_signatures(note, [cosignature])
    return bundle


def test_a_checkpoint_cosigned_by_the_listed_witness_meets_the_one_of_n_policy(
    world: World,
) -> None:
    witness = CosignatureSigner.generate("witness.example/w1")
    verified = verify_bundle(_cosigned(world, witness))
    assert verified.min_cosignatures == 1
    assert verified.logs[ORIGIN].cosigned_by == ("witness.example/w1",)
    assert verify_bundle(_cosigned(world, witness), pinned_witnesses=[witness.verifier_key()])


def test_a_removed_cosignature_fails_the_one_of_n_policy(world: World) -> None:
    witness = CosignatureSigner.generate("witness.example/w1")
    bundle = _cosigned(world, witness)
    note = bundle["logs"][ORIGIN]["checkpoint"]
    bundle["logs"][ORIGIN]["checkpoint"] = "".join(
        line for line in note.splitlines(keepends=True) if "witness.example/w1" not in line
    )
    _fails(bundle, "witnesses", "cosigned by 0", "requires 1 of 1")
    # With the policy lowered to 0 by the caller, the log's signature suffices.
    assert verify_bundle(bundle, min_cosignatures=0).logs[ORIGIN].cosigned_by == ()


def test_a_forged_cosignature_by_a_listed_witness_fails(world: World) -> None:
    bundle = _cosigned(world, CosignatureSigner.generate("witness.example/w1"))
    note = bundle["logs"][ORIGIN]["checkpoint"]
    line = next(s for s in parse_note(note).signatures if s.name == "witness.example/w1")
    forged = NoteSignature(
        line.name, line.key_id, line.signature[:-1] + bytes([line.signature[-1] ^ 1])
    )
    bundle["logs"][ORIGIN]["checkpoint"] = add_signatures(note, [forged])
    _fails(bundle, f"logs.{ORIGIN}.checkpoint", "does not verify")


def test_a_witness_not_pinned_by_the_caller_fails(world: World) -> None:
    bundle = _cosigned(world, CosignatureSigner.generate("witness.example/w1"))
    mine = CosignatureSigner.generate("witness.example/mine").verifier_key()
    _fails(bundle, "witnesses[0]", "not a pinned witness", pinned_witnesses=[mine])


def test_a_policy_above_the_listed_witnesses_fails(world: World) -> None:
    _fails(world.bundle(), "witnesses", "requires 2", min_cosignatures=2)


def test_a_changed_party_signature_fails_even_when_the_log_admitted_it(world: World) -> None:
    bundle = world.bundle()
    at = _position(bundle, "offer_published")
    target = bundle["entries"][at]["index"]

    def flip(index: int, entry: pb.LogEntry) -> None:
        if index == target:
            signature = bytearray(entry.signatures[0].signature)
            signature[0] ^= 1
            entry.signatures[0].signature = bytes(signature)

    assert verify_bundle(relog(world, bundle, lambda i, e: None))  # the re-logged bundle holds
    _fails(
        relog(world, bundle, flip), f"entries[{at}].leaf.signatures[0]",
        f"signature by {world.owner.party_id} does not verify",
    )  # fmt: skip


def test_a_signature_naming_a_key_the_party_never_had_fails(world: World) -> None:
    bundle = world.bundle()
    at = _position(bundle, "license_accepted")
    target = bundle["entries"][at]["index"]

    def other_key(index: int, entry: pb.LogEntry) -> None:
        if index == target:
            entry.signatures[0].key_fingerprint = bytes(32)

    _fails(relog(world, bundle, other_key), f"entries[{at}].leaf.signatures[0]", "names a key")


def _registers(item: dict[str, Any], party: str) -> bool:
    statement = pb.Statement.FromString(_entry(item).statement)
    return statement.party_registered.party_id == party


def _entry(item: dict[str, Any]) -> pb.LogEntry:
    return pb.LogEntry.FromString(base64.b64decode(item["leaf"]))


def test_a_signature_by_a_party_whose_registration_is_missing_fails(world: World) -> None:
    # The licensee's key rotation stays in the bundle: without the
    # registration it hangs from, it proves no key.
    bundle = world.bundle()
    licensee = world.licensee.party_id
    bundle["entries"] = [e for e in bundle["entries"] if not _registers(e, licensee)]
    _fails(
        bundle, f"entries[{_position(bundle, 'license_accepted')}].leaf.signatures[0]",
        f"signature by party {licensee}: the bundle holds no registration of {licensee}",
    )  # fmt: skip


def test_a_signature_by_a_rotated_key_whose_rotation_is_missing_fails(world: World) -> None:
    bundle = world.bundle()
    at = _position(bundle, "party_key_rotated")
    del bundle["entries"][at]
    _fails(
        bundle, f"entries[{_position(bundle, 'license_accepted')}].leaf.signatures[0]",
        f"signature by party {world.licensee.party_id} names a key the bundle does not prove",
    )  # fmt: skip


def test_a_key_rotation_signed_only_by_the_new_key_fails(world: World) -> None:
    bundle = world.bundle()
    at = _position(bundle, "party_key_rotated")
    target = bundle["entries"][at]["index"]

    def drop_old_signature(index: int, entry: pb.LogEntry) -> None:
        if index == target:
            del entry.signatures[0]

    assert (
        _entry(bundle["entries"][at]).signatures[0].key_fingerprint
        == hashlib.sha256(world.licensee.registration.public_key).digest()
    )
    _fails(relog(world, bundle, drop_old_signature), f"entries[{at}].leaf", "not signed by a key")


def test_a_registration_whose_key_is_not_its_party_ids_fails(world: World) -> None:
    bundle = world.bundle()
    at = _position(bundle, "party_registered")
    target = bundle["entries"][at]["index"]

    def swap_key(index: int, entry: pb.LogEntry) -> None:
        if index == target:
            statement = pb.Statement.FromString(entry.statement)
            statement.party_registered.public_key = world.bank.registration.public_key
            entry.statement = statement.SerializeToString()

    if _leaf(bundle, at).signatures[0].signer == world.bank.party_id:
        pytest.fail("the first registration must not be the bank's for this test")
    _fails(relog(world, bundle, swap_key), f"entries[{at}].leaf", "whose party id is")


def _statement(item: api.HistoryEntry) -> pb.Statement:
    return pb.Statement.FromString(pb.LogEntry.FromString(item.entry).statement)


def test_an_entry_neither_about_the_subject_nor_a_key_fails(world: World) -> None:
    bundle = world.bundle()
    grant = next(
        e for h in world.histories for e in h.entries if _statement(e).HasField("role_granted")
    )
    bundle["entries"].append(
        {
            "origin": ORIGIN,
            "index": grant.index,
            "leaf": base64.b64encode(grant.entry).decode(),
            "proof": [base64.b64encode(h).decode() for h in grant.proof],
        }
    )
    _fails(bundle, f"entries[{len(bundle['entries']) - 1}]", "role_granted", "neither")


def test_a_party_bundle_checks_the_operators_signature_when_given_its_key(
    world: World,
) -> None:
    mediator = world.mediator.party_id
    history = next(h for h in world.histories[1:] if signing_parties(h) == {mediator})
    kinds = [_statement(e).WhichOneof("body") for e in history.entries]
    assert kinds == ["party_registered", "role_granted"]
    bundle = build_bundle(("party", mediator), [history], {ORIGIN: world.vkey}, [])
    verified = verify_bundle(load(dumps(bundle)))
    assert [e.kind for e in verified.subject_entries] == kinds
    assert verified.subject_entries[1].signatures[0].how == ATTESTED
    checked = verify_bundle(bundle, operator_keys={ORIGIN: world.operator_key})
    assert checked.subject_entries[1].signatures[0].how == OPERATOR_KEY
    assert "role granted: " in "\n".join(report(checked))
    wrong = {ORIGIN: Signer.generate("operator").public_key}
    _fails(bundle, "entries[1].leaf.signatures[0]", "another key", operator_keys=wrong)


def test_an_entry_given_twice_fails(world: World) -> None:
    bundle = world.bundle()
    bundle["entries"].append(copy.deepcopy(bundle["entries"][0]))
    _fails(bundle, f"entries[{len(bundle['entries']) - 1}]", "is also entries[0]")


def test_an_entry_of_a_log_the_bundle_does_not_hold_fails(world: World) -> None:
    bundle = world.bundle()
    bundle["entries"][0]["origin"] = "elsewhere.example/log"
    _fails(bundle, "entries[0].origin", "elsewhere.example/log")


# -- shape ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alter", "what"),
    [
        (lambda b: b.update(format="kaifang-audit-bundle/v2"), "format"),
        (lambda b: b.pop("witnesses"), "bundle"),
        (lambda b: b.update(extra=1), "bundle"),
        (lambda b: b.update(subject={"trademark": "x"}), "subject"),
        (lambda b: b.update(subject={"party": "ABC"}), "subject.party"),
        (lambda b: b["entries"][0].update(index="3"), "entries[0].index"),
        (lambda b: b["entries"][0].update(index=True), "entries[0].index"),
        (lambda b: b["entries"][0].update(index=-1), "entries[0].index"),
        (lambda b: b["entries"][0].pop("proof"), "entries[0]"),
        (lambda b: b["entries"][0].update(leaf="not base64!"), "entries[0].leaf"),
        (lambda b: b["entries"][1]["proof"].__setitem__(0, "a"), "entries[1].proof[0]"),
        (lambda b: b["logs"][ORIGIN].update(vkey=7), f"logs.{ORIGIN}.vkey"),
        (lambda b: b.update(witnesses=["not a key"]), "witnesses[0]"),
    ],
)
def test_a_malformed_bundle_is_refused_by_load_and_verify(
    world: World, alter: Callable[[dict[str, Any]], object], what: str
) -> None:
    bundle = world.bundle()
    alter(bundle)
    if what != "witnesses[0]":  # a key that does not parse is found by verification
        with pytest.raises(BundleError) as failed:
            load(dumps(bundle))
        assert failed.value.what == what, str(failed.value)
    _fails(bundle, what)


def test_bytes_that_are_not_json_are_refused(world: World) -> None:
    with pytest.raises(BundleError) as failed:
        load(b"\xff{")
    assert failed.value.what == "bundle"


# -- the report ---------------------------------------------------------------------


def test_the_report_tells_the_story_with_parties_amounts_and_checks(world: World) -> None:
    verified = verify_bundle(world.bundle())
    rows = timeline(verified)
    assert [r.kind for r in rows] == [e.kind for e in verified.subject_entries]
    text = "\n".join(report(verified))
    owner, licensee = world.owner.registration, world.licensee.registration
    bank, mediator = world.bank.registration, world.mediator.registration
    assert f"patent recorded: {world.number}" in text
    assert f"owned by {owner.name} ({owner.party_id})" in text
    assert "offer published: lump sum 20,000.00 CNY, 36 months" in text
    assert f"licence accepted by {licensee.name} ({licensee.party_id}) (start " in text
    assert "paid 20,000.00 CNY" in text
    assert f"pledge registered: pledgee {bank.name} ({bank.party_id}), secures " in text
    assert "secures 1,000,000.00 CNY until " in text
    assert f"dispute filed by {licensee.name} ({licensee.party_id})" in text
    assert f"mediation: agreement (mediator {mediator.name} ({mediator.party_id})" in text
    assert f"{bank.name} ({bank.party_id}) (verified, party key)" in text
    assert "register (attested by the log, not verified)" in text
    assert "attested by the log that admitted them" in text
    assert "UTC+8" in rows[0].line()
    accepted = next(e for e in verified.subject_entries if e.kind == "license_accepted")
    offer = next(e for e in verified.subject_entries if e.kind == "offer_published")
    assert accepted.statement.license_accepted.offer_id == statement_id(offer.entry.statement)
    assert f"offer {ORIGIN}#{offer.index}" in text
    for row in rows:
        assert f"{ORIGIN}#" in row.place


def test_the_audit_module_loads_no_database_layer() -> None:
    # Checked in a fresh interpreter: this one has loaded everything already.
    code = "import sys, clients.audit; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
