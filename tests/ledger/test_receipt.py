"""Tests of ledger.receipt: C2SP tlog-proof@v1 receipts over a real Merkle tree."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import merkle
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import CosignatureSigner
from ledger.errors import CheckpointError, ProofError, ReceiptError, SignatureError
from ledger.note import Signer, add_signatures, sign_note
from ledger.receipt import MAX_PROOF_HASHES, Receipt, parse_receipt, verify_receipt

ORIGIN = "example.com/log"
LOG = Signer.generate(ORIGIN)


def entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def audit_path(index: int, leaf_hashes: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n]), written from the RFC's recursion as an
    independent reference for ledger.merkle."""
    n = len(leaf_hashes)
    if n <= 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if index < k:
        return [*audit_path(index, leaf_hashes[:k]), merkle.root_hash(leaf_hashes[k:])]
    return [*audit_path(index - k, leaf_hashes[k:]), merkle.root_hash(leaf_hashes[:k])]


def make_receipt(
    index: int, size: int, *, signer: Signer = LOG, extra: bool = True
) -> tuple[Receipt, Checkpoint]:
    data = entries(size)
    hashes = [merkle.leaf_hash(d) for d in data]
    cp = Checkpoint(signer.name, size, merkle.root_hash(hashes))
    receipt = Receipt(
        index,
        tuple(audit_path(index, hashes)),
        sign_checkpoint(cp, signer),
        data[index] if extra else None,
    )
    return receipt, cp


# Round trips.


def test_receipt_round_trips_and_verifies_for_every_leaf_of_small_trees() -> None:
    for size in range(1, 18):
        for index in range(size):
            receipt, cp = make_receipt(index, size)
            text = receipt.format()
            assert parse_receipt(text) == receipt
            assert verify_receipt(text, LOG.verifier()) == cp


@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_any_leaf_receipt_verifies(size_index: tuple[int, int]) -> None:
    size, index = size_index
    receipt, cp = make_receipt(index, size)
    assert verify_receipt(parse_receipt(receipt.format()), LOG.verifier()) == cp


def test_receipt_format_follows_spec_layout() -> None:
    receipt, _ = make_receipt(2, 5)
    lines = receipt.format().split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "extra " + base64.b64encode(b"entry 2").decode()
    assert lines[2] == "index 2"
    assert [base64.b64decode(x) for x in lines[3:6]] == list(receipt.proof)
    assert lines[6] == ""
    assert "\n".join(lines[7:]) == receipt.checkpoint_note


def test_receipt_without_extra_omits_the_line_and_verifies_with_given_leaf() -> None:
    receipt, cp = make_receipt(3, 6, extra=False)
    text = receipt.format()
    assert "\nextra " not in text
    assert parse_receipt(text).extra is None
    assert verify_receipt(text, LOG.verifier(), leaf=b"entry 3") == cp


def test_published_spec_proof_section_parses_and_reformats() -> None:
    # The proof section of the C2SP tlog-proof spec example (c2sp.org/tlog-proof);
    # its checkpoint signatures are elided ("[...]") there, so ours stands in.
    head = (
        "c2sp.org/tlog-proof@v1\n"
        "extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n"
        "index 73894\n"
        "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n"
        "B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n"
        "EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n"
        "RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n"
        "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n"
    )
    log = Signer.generate("example.com/fancylog")
    root = base64.b64decode("sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=")
    note = sign_checkpoint(Checkpoint("example.com/fancylog", 109482, root), log)
    receipt = parse_receipt(head + "\n" + note)
    assert receipt.index == 73894
    assert receipt.extra is not None
    assert receipt.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert len(receipt.proof) == 5
    assert receipt.checkpoint_note == note
    assert receipt.format() == head + "\n" + note
    # An illustration, not a real proof: five hashes cannot reach index 73894
    # of 109482 leaves.
    with pytest.raises(ReceiptError):
        verify_receipt(receipt, log.verifier())


def test_receipt_of_empty_entry_round_trips_and_verifies() -> None:
    # Entries are opaque and may be empty: extra b"" is present, unlike None.
    hashes = [merkle.leaf_hash(b""), merkle.leaf_hash(b"x")]
    cp = Checkpoint(ORIGIN, 2, merkle.root_hash(hashes))
    receipt = Receipt(0, (hashes[1],), sign_checkpoint(cp, LOG), b"")
    text = receipt.format()
    assert "\nextra \nindex 0\n" in text
    assert parse_receipt(text) == receipt
    assert verify_receipt(text, LOG.verifier()) == cp


def test_receipt_with_cosigned_checkpoint_verifies() -> None:
    receipt, cp = make_receipt(1, 4)
    witness = CosignatureSigner.generate("witness.example/w1")
    cosigned = add_signatures(receipt.checkpoint_note, [witness.cosign(cp.body(), 1_700_000_000)])
    again = Receipt(receipt.index, receipt.proof, cosigned, receipt.extra)
    assert verify_receipt(again.format(), LOG.verifier()) == cp


# Mutated receipts.


def test_receipt_with_wrong_index_is_rejected() -> None:
    receipt, _ = make_receipt(2, 7)
    moved = Receipt(3, receipt.proof, receipt.checkpoint_note, receipt.extra)
    with pytest.raises(ReceiptError) as info:
        verify_receipt(moved, LOG.verifier())
    assert isinstance(info.value.__cause__, ProofError)


def test_receipt_with_index_beyond_tree_is_rejected() -> None:
    receipt, _ = make_receipt(2, 7)
    with pytest.raises(ReceiptError):
        verify_receipt(
            Receipt(7, receipt.proof, receipt.checkpoint_note, receipt.extra), LOG.verifier()
        )


def test_receipt_with_wrong_proof_hash_is_rejected() -> None:
    receipt, _ = make_receipt(5, 13)
    for i in range(len(receipt.proof)):
        proof = list(receipt.proof)
        proof[i] = hashlib.sha256(proof[i]).digest()
        bad = Receipt(receipt.index, tuple(proof), receipt.checkpoint_note, receipt.extra)
        with pytest.raises(ReceiptError):
            verify_receipt(bad.format(), LOG.verifier())


def test_receipt_with_truncated_proof_is_rejected() -> None:
    receipt, _ = make_receipt(5, 13)
    bad = Receipt(receipt.index, receipt.proof[:-1], receipt.checkpoint_note, receipt.extra)
    with pytest.raises(ReceiptError):
        verify_receipt(bad, LOG.verifier())


def test_receipt_with_extended_proof_is_rejected() -> None:
    receipt, _ = make_receipt(5, 13)
    extended = (*receipt.proof, merkle.EMPTY_ROOT)
    bad = Receipt(receipt.index, extended, receipt.checkpoint_note, receipt.extra)
    with pytest.raises(ReceiptError):
        verify_receipt(bad, LOG.verifier())


def test_receipt_with_reordered_proof_is_rejected() -> None:
    receipt, _ = make_receipt(5, 13)
    bad = Receipt(receipt.index, receipt.proof[::-1], receipt.checkpoint_note, receipt.extra)
    with pytest.raises(ReceiptError):
        verify_receipt(bad, LOG.verifier())


def test_receipt_with_wrong_extra_is_rejected() -> None:
    receipt, _ = make_receipt(5, 13)
    bad = Receipt(receipt.index, receipt.proof, receipt.checkpoint_note, b"entry 6")
    with pytest.raises(ReceiptError):
        verify_receipt(bad, LOG.verifier())


def test_receipt_for_other_leaf_than_given_is_rejected() -> None:
    receipt, _ = make_receipt(5, 13, extra=False)
    with pytest.raises(ReceiptError):
        verify_receipt(receipt, LOG.verifier(), leaf=b"entry 6")


def test_given_leaf_disagreeing_with_extra_is_rejected() -> None:
    receipt, _ = make_receipt(5, 13)
    with pytest.raises(ReceiptError, match="extra"):
        verify_receipt(receipt, LOG.verifier(), leaf=b"entry 6")


def test_receipt_naming_no_leaf_is_rejected() -> None:
    receipt, _ = make_receipt(5, 13, extra=False)
    with pytest.raises(ReceiptError):
        verify_receipt(receipt, LOG.verifier())


def test_receipt_with_checkpoint_signed_by_another_key_is_rejected() -> None:
    impostor = Signer.generate(ORIGIN)
    receipt, _ = make_receipt(5, 13, signer=impostor)
    with pytest.raises(SignatureError):
        verify_receipt(receipt.format(), LOG.verifier())


def test_receipt_with_checkpoint_of_another_origin_is_rejected() -> None:
    receipt, cp = make_receipt(5, 13)
    other = sign_note(Checkpoint("example.com/other", cp.size, cp.root_hash).body(), [LOG])
    bad = Receipt(receipt.index, receipt.proof, other, receipt.extra)
    with pytest.raises(CheckpointError):
        verify_receipt(bad, LOG.verifier())


def test_receipt_with_tampered_checkpoint_size_is_rejected() -> None:
    receipt, cp = make_receipt(5, 13)
    text = receipt.format().replace(f"\n{cp.size}\n", f"\n{cp.size + 1}\n")
    with pytest.raises(SignatureError):
        verify_receipt(text, LOG.verifier())


# Malformed text.

GOOD = make_receipt(1, 3)[0]
GOOD_TEXT = GOOD.format()
GOOD_HEAD, _sep, GOOD_NOTE = GOOD_TEXT.partition("\n\n")
GOOD_LINES = GOOD_HEAD.split("\n")  # header, extra, index, 2 hashes


def with_lines(lines: list[str]) -> str:
    return "\n".join(lines) + "\n\n" + GOOD_NOTE


H31 = base64.b64encode(b"\x00" * 31).decode()
MALFORMED: list[tuple[str, str | bytes]] = [
    ("wrong header", with_lines(["c2sp.org/tlog-proof@v2", *GOOD_LINES[1:]])),
    ("no header", with_lines(GOOD_LINES[1:])),
    ("missing index", with_lines([GOOD_LINES[0], GOOD_LINES[1], *GOOD_LINES[3:]])),
    ("index before extra", with_lines([GOOD_LINES[0], GOOD_LINES[2], GOOD_LINES[1]])),
    ("leading zero index", with_lines([*GOOD_LINES[:2], "index 01", *GOOD_LINES[3:]])),
    ("negative index", with_lines([*GOOD_LINES[:2], "index -1", *GOOD_LINES[3:]])),
    ("empty index", with_lines([*GOOD_LINES[:2], "index ", *GOOD_LINES[3:]])),
    ("index without space", with_lines([*GOOD_LINES[:2], "index1", *GOOD_LINES[3:]])),
    ("index over 2^63-1", with_lines([*GOOD_LINES[:2], f"index {2**63}", *GOOD_LINES[3:]])),
    ("extra without space", with_lines([GOOD_LINES[0], "extra", *GOOD_LINES[2:]])),
    ("bad extra base64", with_lines([GOOD_LINES[0], "extra !!", *GOOD_LINES[2:]])),
    ("two extra lines", with_lines([GOOD_LINES[0], GOOD_LINES[1], *GOOD_LINES[1:]])),
    ("bad proof base64", with_lines([*GOOD_LINES[:3], "not base64!", GOOD_LINES[4]])),
    ("short proof hash", with_lines([*GOOD_LINES[:3], H31, GOOD_LINES[4]])),
    ("proof line with space", with_lines([*GOOD_LINES[:3], " " + GOOD_LINES[3], GOOD_LINES[4]])),
    ("too many proof lines", with_lines([*GOOD_LINES[:3], *[GOOD_LINES[3]] * 64])),
    ("no empty line", GOOD_HEAD + "\n" + GOOD_NOTE),
    ("no checkpoint", GOOD_HEAD + "\n\n"),
    ("unsigned checkpoint", GOOD_HEAD + "\n\n" + GOOD_NOTE.partition("\n\n")[0] + "\n"),
    ("checkpoint not a checkpoint", GOOD_HEAD + "\n\n" + sign_note("hello\n", [LOG])),
    ("invalid UTF-8", GOOD_TEXT.encode() + b"\xff"),
    ("CRLF line ends", GOOD_TEXT.replace("\n", "\r\n", 3)),
]


@pytest.mark.parametrize(("case", "text"), MALFORMED, ids=[c for c, _ in MALFORMED])
def test_malformed_receipt_is_rejected(case: str, text: str | bytes) -> None:
    with pytest.raises(ReceiptError):
        parse_receipt(text)


def test_good_receipt_text_parses() -> None:
    # Guards the cases above: they differ from a receipt that parses.
    assert parse_receipt(with_lines(GOOD_LINES)) == GOOD
    assert parse_receipt(GOOD_TEXT.encode()) == GOOD


def test_malformed_extra_error_is_chained() -> None:
    with pytest.raises(ReceiptError) as info:
        parse_receipt(with_lines([GOOD_LINES[0], "extra !!", *GOOD_LINES[2:]]))
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize(
    ("index", "proof", "extra"),
    [
        (-1, (), b"x"),
        (2**63, (), b"x"),
        (0, (b"\x00" * 31,), b"x"),
        (0, (b"\x00" * 32,) * (MAX_PROOF_HASHES + 1), b"x"),
    ],
)
def test_invalid_receipt_cannot_be_built(
    index: int, proof: tuple[bytes, ...], extra: bytes
) -> None:
    with pytest.raises(ReceiptError):
        Receipt(index, proof, GOOD_NOTE, extra)


def test_receipt_with_malformed_note_cannot_be_built() -> None:
    with pytest.raises(ReceiptError):
        Receipt(0, (), "not a note\n", None)
