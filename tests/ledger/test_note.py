"""Tests of ledger.note: C2SP signed notes with Ed25519 keys."""

from __future__ import annotations

import base64

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from ledger.cosignature import CosignatureSigner
from ledger.errors import KeyFormatError, NoteFormatError, SignatureError
from ledger.note import (
    MAX_SIGNATURES,
    NoteSignature,
    Signer,
    Verifier,
    add_signatures,
    b64decode_canonical,
    compute_key_id,
    open_note,
    parse_note,
    sign_note,
)

# Published example keys and notes from golang.org/x/mod/sumdb/note
# (note.go package documentation and note_test.go: TestNewVerifier,
# TestNewSigner, TestSign, TestOpen).
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvq"
    "fqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTG"
    "wnWLox33WWd1RvMc+QQ=\n"
)

# The example note of the C2SP signed-note spec (c2sp.org/signed-note); its
# key is not published, so it can only be parsed, never verified.
C2SP_EXAMPLE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    "— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9o"
    "JKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)


def peter() -> Verifier:
    return Verifier.from_vkey(PETER_VKEY)


def enoch() -> Verifier:
    return Verifier.from_vkey(ENOCH_VKEY)


def corrupt_b64(line: str) -> str:
    """Flip one bit in the last signature byte of a signature line, keeping it well-formed."""
    prefix, sig64 = line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig64))
    raw[-1] ^= 1
    return f"{prefix} {base64.b64encode(bytes(raw)).decode()}\n"


# Published examples.


def test_published_go_note_verifies_with_published_key() -> None:
    note, verified = open_note(TEXT + "\n" + PETER_SIG, [peter()])
    assert note.text == TEXT
    assert [v.name for v in verified] == ["PeterNeumann"]
    assert note.signatures[0].key_id == bytes.fromhex("c74f20a3")


def test_published_go_signer_key_reproduces_published_note_byte_for_byte() -> None:
    # Ed25519 is deterministic, so our signature must equal Go's.
    signer = Signer.from_signer_key(PETER_SKEY)
    assert sign_note(TEXT, [signer]) == TEXT + "\n" + PETER_SIG


def test_published_go_signer_key_round_trips_and_matches_published_verifier_key() -> None:
    signer = Signer.from_signer_key(PETER_SKEY)
    assert signer.signer_key() == PETER_SKEY
    assert signer.verifier_key() == PETER_VKEY
    assert signer.key_id == peter().key_id == bytes.fromhex("c74f20a3")
    assert Verifier.from_vkey(PETER_VKEY).verifier_key() == PETER_VKEY


def test_published_go_doubly_signed_note_verifies_both_keys() -> None:
    note, verified = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter(), enoch()])
    assert [v.name for v in verified] == ["PeterNeumann", "EnochRoot"]
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]


def test_published_go_note_with_one_unknown_signature_verifies_known_one() -> None:
    _, verified = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [peter()])
    assert [v.name for v in verified] == ["PeterNeumann"]


def test_published_c2sp_example_parses_with_blank_line_in_text() -> None:
    note = parse_note(C2SP_EXAMPLE)
    # The text ends at the last blank line: its own blank line stays in it.
    assert note.text == (
        "Ognuno sta solo sul cuor della terra\n"
        "trafitto da un raggio di sole:\n"
        "\n"
        "ed è subito sera.\n"
    )
    assert [s.name for s in note.signatures] == ["quasimodo.example/salvatore"]
    assert note.format() == C2SP_EXAMPLE


def test_published_c2sp_example_signed_by_unknown_key_only_is_rejected() -> None:
    with pytest.raises(SignatureError):
        open_note(C2SP_EXAMPLE, [peter(), enoch()])


# Keys.


def test_mangled_published_verifier_key_is_rejected() -> None:
    # As golang.org/x/mod/sumdb/note TestNewVerifier: every proper substring and
    # every single-byte increment of a valid key must fail.
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(KeyFormatError):
                    Verifier.from_vkey(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        mangled = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises(KeyFormatError):
            Verifier.from_vkey(mangled)


def test_mangled_published_signer_key_is_rejected() -> None:
    for i in range(len(PETER_SKEY) + 1):
        for j in range(i + 1, len(PETER_SKEY) + 1):
            if (i, j) != (0, len(PETER_SKEY)):
                with pytest.raises(KeyFormatError):
                    Signer.from_signer_key(PETER_SKEY[i:j])
    for i in range(len(PETER_SKEY)):
        mangled = PETER_SKEY[:i] + chr(ord(PETER_SKEY[i]) + 1) + PETER_SKEY[i + 1 :]
        with pytest.raises(KeyFormatError):
            Signer.from_signer_key(mangled)


def test_verifier_key_of_wrong_length_or_algorithm_is_rejected() -> None:
    # From golang.org/x/mod/sumdb/note TestNewVerifier: key hashes adjusted so
    # that only the length or the algorithm byte is wrong.
    with pytest.raises(KeyFormatError):
        Verifier.from_vkey(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
        )
    with pytest.raises(KeyFormatError):
        Verifier.from_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_cosignature_verifier_key_is_rejected_as_note_verifier_key() -> None:
    vkey = CosignatureSigner.generate("witness.example/w1").verifier_key()
    with pytest.raises(KeyFormatError):
        Verifier.from_vkey(vkey)


def test_key_id_follows_spec_formula() -> None:
    signer = Signer.generate("example.com/log")
    assert signer.key_id == compute_key_id("example.com/log", b"\x01" + signer.public_key)
    assert len(signer.key_id) == 4


@pytest.mark.parametrize("name", ["", "has space", "a+b", "tab\there", "nbsp\u00a0x", "nl\nx"])
def test_bad_key_names_are_rejected(name: str) -> None:
    with pytest.raises(KeyFormatError):
        Signer.generate(name)


def test_signer_repr_does_not_leak_private_key() -> None:
    signer = Signer.generate("example.com/log")
    # The key material is the fifth "+"-separated field; base64 may itself hold "+".
    secret = signer.signer_key().split("+", 4)[4]
    assert secret not in repr(signer)


@given(st.text(st.characters(codec="utf-8", min_codepoint=0x21), min_size=1))
def test_generated_keys_round_trip_through_strings(name: str) -> None:
    name = name.replace("+", "x")
    assume(not any(c.isspace() for c in name))
    signer = Signer.generate(name)
    again = Signer.from_signer_key(signer.signer_key())
    assert again.verifier_key() == signer.verifier_key()
    verifier = Verifier.from_vkey(signer.verifier_key())
    verifier.verify(b"msg", signer.sign(b"msg"))


# Round trips and verification failures.


@given(
    st.text(st.characters(codec="utf-8", min_codepoint=0x20) | st.just("\n")).map(
        lambda s: s + "\n"
    )
)
def test_any_valid_text_round_trips_through_sign_and_open(text: str) -> None:
    signer = Signer.from_signer_key(PETER_SKEY)
    note, verified = open_note(sign_note(text, [signer]), [peter()])
    assert note.text == text
    assert len(verified) == 1


def test_tampered_text_is_rejected() -> None:
    with pytest.raises(SignatureError):
        open_note(TEXT.replace("problem", "Problem", 1) + "\n" + PETER_SIG, [peter()])


def test_tampered_signature_is_rejected() -> None:
    with pytest.raises(SignatureError):
        open_note(TEXT + "\n" + corrupt_b64(PETER_SIG), [peter()])


def test_signature_of_wrong_length_from_known_key_is_rejected() -> None:
    # golang.org/x/mod/sumdb/note TestOpen "Invalid signature": 4 base64
    # characters inserted inside the signature.
    sig = PETER_SIG[:58] + "ABCD" + PETER_SIG[58:]
    with pytest.raises(SignatureError):
        open_note(TEXT + "\n" + sig, [peter()])


def test_bad_signature_from_known_key_rejects_note_despite_a_good_one() -> None:
    with pytest.raises(SignatureError):
        open_note(TEXT + "\n" + PETER_SIG + corrupt_b64(ENOCH_SIG), [peter(), enoch()])


def test_bad_duplicate_signature_from_known_key_is_rejected() -> None:
    with pytest.raises(SignatureError):
        open_note(TEXT + "\n" + PETER_SIG + corrupt_b64(PETER_SIG), [peter()])


def test_bad_signature_from_unknown_key_is_ignored() -> None:
    _, verified = open_note(TEXT + "\n" + PETER_SIG + corrupt_b64(ENOCH_SIG), [peter()])
    assert [v.name for v in verified] == ["PeterNeumann"]


def test_wrong_key_with_same_name_is_ignored_so_note_is_rejected() -> None:
    other = Signer.generate("PeterNeumann")  # same name, other key ID
    with pytest.raises(SignatureError):
        open_note(TEXT + "\n" + PETER_SIG, [other.verifier()])


def test_same_key_id_under_other_name_is_ignored_so_note_is_rejected() -> None:
    renamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    with pytest.raises(SignatureError):
        open_note(TEXT + "\n" + renamed, [peter()])


def test_note_signed_by_unknown_key_only_is_rejected() -> None:
    with pytest.raises(SignatureError):
        open_note(TEXT + "\n" + ENOCH_SIG, [peter()])


def test_note_opened_with_no_verifiers_is_rejected() -> None:
    with pytest.raises(SignatureError):
        open_note(TEXT + "\n" + PETER_SIG, [])


def test_two_verifiers_with_same_name_and_key_id_are_refused() -> None:
    with pytest.raises(ValueError, match="share"):
        open_note(TEXT + "\n" + PETER_SIG, [peter(), peter()])


def test_duplicate_valid_signatures_list_verifier_once() -> None:
    _, verified = open_note(TEXT + "\n" + PETER_SIG + PETER_SIG, [peter()])
    assert len(verified) == 1


# Malformed notes: golang.org/x/mod/sumdb/note TestOpen "Invalid encoded message syntax" and more.

MALFORMED: list[tuple[str, str | bytes]] = [
    ("text only", TEXT),
    ("missing signature after blank line", TEXT + "\n"),
    ("missing final newline", TEXT + "\n" + PETER_SIG[:-1]),
    ("control character", "\x01" + TEXT + "\n" + PETER_SIG),
    ("carriage return", TEXT.replace("\n", "\r\n", 1) + "\n" + PETER_SIG),
    ("invalid UTF-8", b"\xff" + (TEXT + "\n" + PETER_SIG).encode()),
    ("lone surrogate", "\ud800" + TEXT + "\n" + PETER_SIG),
    ("name with space", TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter Neumann")),
    ("name with plus", TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter+Neumann")),
    ("empty name", TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "")),
    ("unexpected line", TEXT + "\n" + PETER_SIG + "Unexpected line.\n"),
    ("missing blank line", TEXT + PETER_SIG),
    ("hyphen instead of em dash", TEXT + "\n" + PETER_SIG.replace("—", "-")),
    ("malformed base64", TEXT + "\n" + PETER_SIG.replace("x08go", "x08g!")),
    ("unpadded base64", TEXT + "\n" + PETER_SIG.replace("=\n", "\n")),
    ("non-canonical base64", TEXT + "\n" + PETER_SIG.replace("AM=\n", "AN=\n")),
    ("signature without key ID", TEXT + "\n— PeterNeumann AAAA\n"),
    ("no signature", TEXT + "\n— PeterNeumann \n"),
    ("trailing blank line", TEXT + "\n" + PETER_SIG + "\n"),
]


@pytest.mark.parametrize(("case", "note"), MALFORMED, ids=[c for c, _ in MALFORMED])
def test_malformed_note_is_rejected(case: str, note: str | bytes) -> None:
    with pytest.raises(NoteFormatError):
        open_note(note, [peter()])


def test_too_many_signatures_are_rejected() -> None:
    # golang.org/x/mod/sumdb/note TestOpen: 101 signatures is malformed, even if valid.
    with pytest.raises(NoteFormatError):
        open_note(TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1), [peter()])
    with pytest.raises(NoteFormatError):
        parse_note(TEXT + "\n" + PETER_SIG * (MAX_SIGNATURES + 1))


def test_spec_minimum_of_sixteen_signatures_is_accepted() -> None:
    signers = [Signer.generate(f"w{i}.example") for i in range(16)]
    note = sign_note(TEXT, signers)
    _, verified = open_note(note, [s.verifier() for s in signers])
    assert len(verified) == 16


def test_malformed_base64_error_is_chained() -> None:
    with pytest.raises(NoteFormatError) as info:
        parse_note(TEXT + "\n" + PETER_SIG.replace("x08go", "x08g!"))
    assert isinstance(info.value.__cause__, ValueError)


def test_invalid_utf8_error_is_chained() -> None:
    with pytest.raises(NoteFormatError) as info:
        parse_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode())
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


# Signing preconditions.


def test_text_without_final_newline_cannot_be_signed() -> None:
    with pytest.raises(NoteFormatError):
        sign_note("abc", [Signer.from_signer_key(PETER_SKEY)])


def test_text_with_control_character_cannot_be_signed() -> None:
    with pytest.raises(NoteFormatError):
        sign_note("a\tb\n", [Signer.from_signer_key(PETER_SKEY)])


def test_note_without_signers_cannot_be_produced() -> None:
    with pytest.raises(NoteFormatError):
        sign_note(TEXT, [])


def test_too_many_signers_cannot_produce_a_note() -> None:
    signer = Signer.from_signer_key(PETER_SKEY)
    with pytest.raises(NoteFormatError):
        sign_note(TEXT, [signer] * (MAX_SIGNATURES + 1))


def test_note_signature_with_bad_name_cannot_be_built() -> None:
    with pytest.raises(NoteFormatError):
        NoteSignature("a+b", b"\x00" * 4, b"sig")


# Adding signatures.


def test_added_signature_is_appended_after_existing_ones() -> None:
    other = Signer.generate("EnochRoot")
    sig = NoteSignature(other.name, other.key_id, other.sign(TEXT.encode()))
    note = add_signatures(TEXT + "\n" + PETER_SIG, [sig])
    assert note == TEXT + "\n" + PETER_SIG + sig.line()
    _, verified = open_note(note, [peter(), other.verifier()])
    assert [v.name for v in verified] == ["PeterNeumann", "EnochRoot"]


def test_added_signature_replaces_one_by_same_key() -> None:
    signer = Signer.from_signer_key(PETER_SKEY)
    stale = corrupt_b64(PETER_SIG)
    fresh = NoteSignature(signer.name, signer.key_id, signer.sign(TEXT.encode()))
    note = add_signatures(TEXT + "\n" + stale + ENOCH_SIG, [fresh])
    assert note == TEXT + "\n" + ENOCH_SIG + PETER_SIG


def test_adding_signature_to_malformed_note_is_rejected() -> None:
    signer = Signer.from_signer_key(PETER_SKEY)
    sig = NoteSignature(signer.name, signer.key_id, signer.sign(TEXT.encode()))
    with pytest.raises(NoteFormatError):
        add_signatures(TEXT, [sig])


def test_strict_base64_rejects_non_canonical_spellings() -> None:
    assert b64decode_canonical("QQ==") == b"A"
    for bad in ["QR==", "QQ", "QQ=", "Q Q==", "QQ==\n", "é"]:
        with pytest.raises(ValueError):
            b64decode_canonical(bad)
