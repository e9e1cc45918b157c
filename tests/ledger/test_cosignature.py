"""Tests of ledger.cosignature: C2SP tlog-cosignature, Ed25519 (type 0x04)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from ledger.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from ledger.cosignature import (
    MAX_TIMESTAMP,
    CosignatureSigner,
    CosignatureVerifier,
    cosignature_timestamp,
    cosigned_message,
)
from ledger.errors import CheckpointError, CosignatureError, KeyFormatError, SignatureError
from ledger.note import (
    NoteSignature,
    Signer,
    add_signatures,
    compute_key_id,
    open_note,
    parse_note,
)

# The example of the C2SP tlog-cosignature spec (c2sp.org/tlog-cosignature):
# a checkpoint cosigned by witness.example.com/w1, whose signed message the
# spec spells out with "time 1679315147". The witness key is not published.
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_NOTE = (
    SPEC_BODY + "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/"
    "Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJs"
    "X3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)
SPEC_MESSAGE = (
    b"cosignature/v1\ntime 1679315147\n"
    b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)

ORIGIN = "example.com/log"
WITNESS = "witness.example/w1"
BODY = Checkpoint(ORIGIN, 7, hashlib.sha256(b"root").digest()).body()
T = 1_700_000_000


def test_published_spec_message_is_reproduced() -> None:
    assert cosigned_message(SPEC_BODY, 1679315147) == SPEC_MESSAGE


def test_published_spec_cosignature_carries_spec_timestamp() -> None:
    cosig = parse_note(SPEC_NOTE).signatures[1]
    assert cosig.name == "witness.example.com/w1"
    assert cosig.key_id == bytes.fromhex("8d66cf3f")
    assert cosignature_timestamp(cosig.signature) == 1679315147


def test_published_transparency_dev_cosignature_timestamp_is_read() -> None:
    # Signature from github.com/transparency-dev/formats note/note_cosigv1_test.go
    # (TestCoSigV1Timestamp "works"), whose expected time is 1727964367.
    note = (
        "example.com/log\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n— w "
        "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOwo"
        "rDcFiEBYJXORmnFBOBA==\n"
    )
    assert cosignature_timestamp(parse_note(note).signatures[0].signature) == 1727964367


def test_published_spec_cosignature_does_not_verify_under_our_key() -> None:
    verifier = CosignatureSigner.generate("witness.example.com/w1").verifier()
    with pytest.raises(SignatureError):
        open_note(SPEC_NOTE, [verifier])


# Keys.


def test_key_id_uses_type_byte_0x04() -> None:
    key = Ed25519PrivateKey.generate()
    signer = CosignatureSigner(WITNESS, key)
    assert signer.key_id == compute_key_id(WITNESS, b"\x04" + signer.public_key)
    assert Signer(WITNESS, key).key_id != signer.key_id  # same name and key, type 0x01


def test_cosigner_keys_round_trip_through_strings() -> None:
    signer = CosignatureSigner.generate(WITNESS)
    again = CosignatureSigner.from_signer_key(signer.signer_key())
    assert again.verifier_key() == signer.verifier_key()
    verifier = CosignatureVerifier.from_vkey(signer.verifier_key())
    assert verifier.verifier_key() == signer.verifier_key()
    assert verifier.key_id == signer.key_id
    name, key_id, key64 = signer.verifier_key().split("+", 2)
    assert (name, key_id) == (WITNESS, signer.key_id.hex())
    assert base64.b64decode(key64) == b"\x04" + signer.public_key


def test_plain_note_verifier_key_is_rejected_as_cosignature_key() -> None:
    with pytest.raises(KeyFormatError):
        CosignatureVerifier.from_vkey(Signer.generate(WITNESS).verifier_key())


def test_plain_note_signer_key_is_rejected_as_cosigner_key() -> None:
    with pytest.raises(KeyFormatError):
        CosignatureSigner.from_signer_key(Signer.generate(WITNESS).signer_key())


def test_cosigner_vkey_with_wrong_key_id_is_rejected() -> None:
    vkey = CosignatureSigner.generate(WITNESS).verifier_key()
    name, _, key = vkey.split("+", 2)
    with pytest.raises(KeyFormatError):
        CosignatureVerifier.from_vkey(f"{name}+00000000+{key}")


# Round trip and failures.


def test_cosignature_round_trips_through_note() -> None:
    log = Signer.generate(ORIGIN)
    witness = CosignatureSigner.generate(WITNESS)
    cosig = witness.cosign(BODY, T)
    assert len(cosig.signature) == 72
    assert cosig.signature[:8] == T.to_bytes(8, "big")
    note = add_signatures(sign_checkpoint(parse_checkpoint(BODY), log), [cosig])
    parsed, verified = open_note(note, [log.verifier(), witness.verifier()])
    assert [v.name for v in verified] == [ORIGIN, WITNESS]
    assert witness.verifier().verify_cosignature(parsed.text, parsed.signatures[1]) == T


@given(st.integers(0, MAX_TIMESTAMP))
def test_any_timestamp_round_trips(timestamp: int) -> None:
    witness = CosignatureSigner.generate(WITNESS)
    cosig = witness.cosign(BODY, timestamp)
    assert witness.verifier().verify_cosignature(BODY, cosig) == timestamp


def test_changed_timestamp_is_rejected() -> None:
    witness = CosignatureSigner.generate(WITNESS)
    cosig = witness.cosign(BODY, T)
    moved = NoteSignature(
        cosig.name, cosig.key_id, (T + 1).to_bytes(8, "big") + cosig.signature[8:]
    )
    with pytest.raises(CosignatureError):
        witness.verifier().verify_cosignature(BODY, moved)


def test_signature_over_other_timestamp_line_is_rejected() -> None:
    # The timestamp is in the signed message, not just beside it: a signature
    # made for time T does not verify as time T + 1 with any signature bytes.
    key = Ed25519PrivateKey.generate()
    witness = CosignatureSigner(WITNESS, key)
    forged = key.sign(cosigned_message(BODY, T))
    with pytest.raises(CosignatureError):
        witness.verifier().verify(BODY.encode(), (T + 1).to_bytes(8, "big") + forged)


def test_cosignature_of_other_checkpoint_is_rejected() -> None:
    witness = CosignatureSigner.generate(WITNESS)
    cosig = witness.cosign(BODY, T)
    other = Checkpoint(ORIGIN, 8, hashlib.sha256(b"root").digest()).body()
    with pytest.raises(CosignatureError):
        witness.verifier().verify_cosignature(other, cosig)


def test_cosignature_covers_extension_lines() -> None:
    # As transparency-dev/formats TestSigCoversExtensionLines.
    witness = CosignatureSigner.generate(WITNESS)
    body = BODY + "Extendo\n"
    cosig = witness.cosign(body, T)
    with pytest.raises(CosignatureError):
        witness.verifier().verify_cosignature(BODY + "Extend@\n", cosig)


def test_cosignature_by_another_witness_is_rejected() -> None:
    cosig = CosignatureSigner.generate("witness.example/w2").cosign(BODY, T)
    with pytest.raises(CosignatureError):
        CosignatureSigner.generate(WITNESS).verifier().verify_cosignature(BODY, cosig)


def test_cosignature_by_another_key_under_same_name_is_rejected() -> None:
    cosig = CosignatureSigner.generate(WITNESS).cosign(BODY, T)
    with pytest.raises(CosignatureError):
        CosignatureSigner.generate(WITNESS).verifier().verify_cosignature(BODY, cosig)


def test_cosignature_is_not_accepted_by_plain_note_verifier() -> None:
    key = Ed25519PrivateKey.generate()
    witness = CosignatureSigner(WITNESS, key)
    plain = Signer(WITNESS, key).verifier()
    note = add_signatures(
        sign_checkpoint(parse_checkpoint(BODY), Signer.generate(ORIGIN)),
        [witness.cosign(BODY, T)],
    )
    with pytest.raises(SignatureError):
        open_note(note, [plain])  # other key ID: the line is unknown, nothing verifies


def test_tampered_cosignature_rejects_note() -> None:
    log = Signer.generate(ORIGIN)
    witness = CosignatureSigner.generate(WITNESS)
    cosig = witness.cosign(BODY, T)
    # Flip a bit: overwriting the last byte with a constant left it unchanged
    # whenever it already held that value (one run in 256).
    bad = NoteSignature(
        cosig.name, cosig.key_id, cosig.signature[:-1] + bytes([cosig.signature[-1] ^ 1])
    )
    note = add_signatures(sign_checkpoint(parse_checkpoint(BODY), log), [bad])
    with pytest.raises(SignatureError) as info:
        open_note(note, [log.verifier(), witness.verifier()])
    assert isinstance(info.value.__cause__, CosignatureError)


@pytest.mark.parametrize("size", [0, 71, 73])
def test_cosignature_of_wrong_length_is_rejected(size: int) -> None:
    with pytest.raises(CosignatureError):
        CosignatureSigner.generate(WITNESS).verifier().verify(BODY.encode(), b"\x00" * size)


def test_timestamp_over_2_63_is_rejected() -> None:
    with pytest.raises(CosignatureError):
        cosignature_timestamp((2**63).to_bytes(8, "big") + b"\x00" * 64)


def test_cosigned_text_that_is_not_a_checkpoint_is_rejected() -> None:
    witness = CosignatureSigner.generate(WITNESS)
    with pytest.raises(CosignatureError):
        witness.verifier().verify(b"just text\n", T.to_bytes(8, "big") + b"\x00" * 64)
    with pytest.raises(CosignatureError):
        witness.verifier().verify(b"\xff\n1\n", T.to_bytes(8, "big") + b"\x00" * 64)


def test_cosigning_non_checkpoint_is_refused() -> None:
    with pytest.raises(CheckpointError):
        CosignatureSigner.generate(WITNESS).cosign("not a checkpoint\n", T)


@pytest.mark.parametrize("timestamp", [-1, 2**63])
def test_cosigning_with_out_of_range_timestamp_is_refused(timestamp: int) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        CosignatureSigner.generate(WITNESS).cosign(BODY, timestamp)
