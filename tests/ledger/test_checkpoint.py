"""Tests of ledger.checkpoint: C2SP tlog-checkpoint bodies and signed checkpoints."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    open_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from ledger.cosignature import CosignatureSigner
from ledger.errors import CheckpointError, NoteFormatError, SignatureError
from ledger.merkle import EMPTY_ROOT
from ledger.note import Note, Signer, add_signatures, parse_note, sign_note

# The example checkpoint of the C2SP tlog-checkpoint spec (c2sp.org/tlog-checkpoint).
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_NOTE = (
    SPEC_BODY + "\n— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoR"
    "De4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)
ORIGIN = "example.com/log"
ROOT = hashlib.sha256(b"root").digest()
ROOT64 = base64.b64encode(ROOT).decode()
# 32 bytes leave 2 unused bits in the last base64 character; setting one
# decodes to the same bytes under a lenient decoder.
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
NON_CANONICAL64 = ROOT64[:-2] + _ALPHABET[_ALPHABET.index(ROOT64[-2]) ^ 1] + "="
URLSAFE64 = base64.urlsafe_b64encode(bytes(range(200, 232))).decode()


def test_published_spec_checkpoint_parses() -> None:
    cp = parse_checkpoint(SPEC_BODY)
    assert cp.origin == "example.com/behind-the-sofa"
    assert cp.size == 20852163
    assert cp.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.extensions == ()
    assert cp.body() == SPEC_BODY


def test_published_spec_checkpoint_note_signed_by_unknown_key_is_rejected() -> None:
    # The spec's log key is not published: under our key it must not verify.
    assert parse_note(SPEC_NOTE).text == SPEC_BODY
    verifier = Signer.generate("example.com/behind-the-sofa").verifier()
    with pytest.raises(SignatureError):
        open_checkpoint(SPEC_NOTE, verifier)


def test_checkpoint_with_extensions_round_trips() -> None:
    body = f"{ORIGIN}\n5\n{ROOT64}\nextension one\nextension two\n"
    cp = parse_checkpoint(body)
    assert cp.extensions == ("extension one", "extension two")
    assert cp.body() == body


def test_empty_tree_checkpoint_round_trips() -> None:
    cp = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    assert parse_checkpoint(cp.body()) == cp


def test_origin_with_spaces_and_plus_is_accepted() -> None:
    # Only a SHOULD in the spec, and clients MUST NOT assume the URL form.
    cp = parse_checkpoint(f"my log + friends\n1\n{ROOT64}\n")
    assert cp.origin == "my log + friends"


@given(
    origin=st.text(st.characters(codec="utf-8", min_codepoint=0x20), min_size=1),
    size=st.integers(0, MAX_TREE_SIZE),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        st.text(st.characters(codec="utf-8", min_codepoint=0x20), min_size=1), max_size=3
    ),
)
def test_any_checkpoint_round_trips_through_body(
    origin: str, size: int, root: bytes, extensions: list[str]
) -> None:
    cp = Checkpoint(origin, size, root, tuple(extensions))
    assert parse_checkpoint(cp.body()) == cp


STRICT_CASES = [
    ("no final newline", f"{ORIGIN}\n5\n{ROOT64}"),
    ("two lines", f"{ORIGIN}\n5\n"),
    ("empty origin", f"\n5\n{ROOT64}\n"),
    ("leading zero size", f"{ORIGIN}\n05\n{ROOT64}\n"),
    ("double zero size", f"{ORIGIN}\n00\n{ROOT64}\n"),
    ("negative size", f"{ORIGIN}\n-1\n{ROOT64}\n"),
    ("plus sign size", f"{ORIGIN}\n+5\n{ROOT64}\n"),
    ("underscore size", f"{ORIGIN}\n1_000\n{ROOT64}\n"),
    ("space in size", f"{ORIGIN}\n 5\n{ROOT64}\n"),
    ("non-ASCII digit size", f"{ORIGIN}\n\u0665\n{ROOT64}\n"),
    ("hex size", f"{ORIGIN}\n0x5\n{ROOT64}\n"),
    ("empty size", f"{ORIGIN}\n\n{ROOT64}\n"),
    ("size over 2^63-1", f"{ORIGIN}\n{2**63}\n{ROOT64}\n"),
    ("short root", f"{ORIGIN}\n5\n{base64.b64encode(ROOT[:31]).decode()}\n"),
    ("long root", f"{ORIGIN}\n5\n{base64.b64encode(ROOT + b'x').decode()}\n"),
    ("unpadded root", f"{ORIGIN}\n5\n{ROOT64.rstrip('=')}\n"),
    ("url-safe root", f"{ORIGIN}\n5\n{URLSAFE64}\n"),
    ("non-canonical root", f"{ORIGIN}\n5\n{NON_CANONICAL64}\n"),
    ("empty extension line", f"{ORIGIN}\n5\n{ROOT64}\n\nextension\n"),
    ("trailing empty line", f"{ORIGIN}\n5\n{ROOT64}\n\n"),
    ("tab in origin", f"example.com\tlog\n5\n{ROOT64}\n"),
    ("carriage return", f"{ORIGIN}\r\n5\n{ROOT64}\n"),
]


@pytest.mark.parametrize(("case", "body"), STRICT_CASES, ids=[c for c, _ in STRICT_CASES])
def test_malformed_checkpoint_body_is_rejected(case: str, body: str) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint(body)


def test_non_canonical_root_case_really_decodes_leniently() -> None:
    # Guards the "non-canonical root" case above: it must be rejected for its
    # spelling, not for being undecodable.
    assert NON_CANONICAL64 != ROOT64
    assert base64.b64decode(NON_CANONICAL64) == ROOT


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        (ORIGIN, -1, ROOT, ()),
        (ORIGIN, MAX_TREE_SIZE + 1, ROOT, ()),
        (ORIGIN, 1, ROOT[:16], ()),
        (ORIGIN, 1, ROOT, ("",)),
        (ORIGIN, 1, ROOT, ("a\nb",)),
    ],
)
def test_invalid_checkpoint_cannot_be_built(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(origin, size, root, extensions)


def test_malformed_size_error_is_chained() -> None:
    with pytest.raises(CheckpointError) as info:
        parse_checkpoint(f"{ORIGIN}\n05\n{ROOT64}\n")
    assert isinstance(info.value.__cause__, ValueError)


# Signed checkpoints.


def test_signed_checkpoint_round_trips() -> None:
    signer = Signer.generate(ORIGIN)
    cp = Checkpoint(ORIGIN, 42, ROOT, ("ext",))
    note = sign_checkpoint(cp, signer)
    assert note.startswith(cp.body() + "\n— " + ORIGIN + " ")
    assert open_checkpoint(note, signer.verifier()) == cp


def test_checkpoint_cannot_be_signed_by_key_named_otherwise() -> None:
    with pytest.raises(ValueError, match="origin"):
        sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), Signer.generate("example.com/other"))


def test_checkpoint_signed_by_another_key_is_rejected() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), Signer.generate(ORIGIN))
    with pytest.raises(SignatureError):
        open_checkpoint(note, Signer.generate(ORIGIN).verifier())


def test_tampered_checkpoint_size_is_rejected() -> None:
    signer = Signer.generate(ORIGIN)
    note = sign_checkpoint(Checkpoint(ORIGIN, 41, ROOT), signer)
    with pytest.raises(SignatureError):
        open_checkpoint(note.replace("\n41\n", "\n42\n", 1), signer.verifier())


def test_checkpoint_of_other_origin_signed_by_same_key_is_rejected() -> None:
    # A key named after one log that signed another log's checkpoint.
    signer = Signer.generate(ORIGIN)
    note = sign_note(Checkpoint("example.com/other", 1, ROOT).body(), [signer])
    with pytest.raises(CheckpointError):
        open_checkpoint(note, signer.verifier())
    assert open_checkpoint(note, signer.verifier(), origin="example.com/other").size == 1


def test_signed_note_with_malformed_body_is_rejected() -> None:
    signer = Signer.generate(ORIGIN)
    note = sign_note(f"{ORIGIN}\n007\n{ROOT64}\n", [signer])
    with pytest.raises(CheckpointError):
        open_checkpoint(note, signer.verifier())


def test_checkpoint_signed_only_by_witness_is_rejected() -> None:
    # A valid extra (witness) signature does not stand in for the log's own.
    log = Signer.generate(ORIGIN)
    witness = CosignatureSigner.generate("witness.example/w1")
    cp = Checkpoint(ORIGIN, 3, ROOT)
    cosigned_only = Note(cp.body(), (witness.cosign(cp.body(), 1_700_000_000),)).format()
    with pytest.raises(SignatureError):
        open_checkpoint(cosigned_only, log.verifier(), witness.verifier())


def test_cosigned_checkpoint_opens_with_log_and_witness_keys() -> None:
    log = Signer.generate(ORIGIN)
    witness = CosignatureSigner.generate("witness.example/w1")
    cp = Checkpoint(ORIGIN, 3, ROOT)
    note = add_signatures(sign_checkpoint(cp, log), [witness.cosign(cp.body(), 1_700_000_000)])
    assert open_checkpoint(note, log.verifier(), witness.verifier()) == cp
    # Without the witness key its line is an unknown signature, ignored.
    assert open_checkpoint(note, log.verifier()) == cp


def test_checkpoint_with_bad_witness_cosignature_is_rejected() -> None:
    log = Signer.generate(ORIGIN)
    witness = CosignatureSigner.generate("witness.example/w1")
    cp = Checkpoint(ORIGIN, 3, ROOT)
    other = Checkpoint(ORIGIN, 4, ROOT)
    wrong = witness.cosign(other.body(), 1_700_000_000)  # a cosignature of another tree head
    note = add_signatures(sign_checkpoint(cp, log), [wrong])
    with pytest.raises(SignatureError):
        open_checkpoint(note, log.verifier(), witness.verifier())


def test_unsigned_checkpoint_body_is_not_a_note() -> None:
    with pytest.raises(NoteFormatError):
        open_checkpoint(Checkpoint(ORIGIN, 1, ROOT).body(), Signer.generate(ORIGIN).verifier())
