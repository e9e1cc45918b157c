"""Party key files: private from creation, never overwritten, refused when open or wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from clients.errors import KeyFileError
from clients.keys import (
    PartyKey,
    generate_key,
    load_key,
    parse_verifier_key,
    save_key,
)
from exchange.errors import SignatureInvalidError
from exchange.statements import key_fingerprint, party_id_for, verify

PASSPHRASE = b"correct horse battery staple"


def test_a_saved_key_is_mode_0600_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "party.key"
    save_key(path, generate_key())
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_an_encrypted_key_is_mode_0600_and_not_plain_pem(tmp_path: Path) -> None:
    path = tmp_path / "party.key"
    save_key(path, generate_key(), PASSPHRASE)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in path.read_bytes()


def test_saving_over_an_existing_file_is_refused_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "party.key"
    first = generate_key()
    save_key(path, first)
    with pytest.raises(KeyFileError, match="already exists"):
        save_key(path, generate_key())
    assert load_key(path).public_key == first.public_key


@pytest.mark.parametrize("passphrase", [None, PASSPHRASE], ids=["plain", "encrypted"])
def test_a_key_round_trips(tmp_path: Path, passphrase: bytes | None) -> None:
    path = tmp_path / "party.key"
    key = generate_key()
    save_key(path, key, passphrase)
    loaded = load_key(path, passphrase)
    assert loaded.public_key == key.public_key
    assert loaded.party_id == key.party_id


def test_a_wrong_passphrase_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "party.key"
    save_key(path, generate_key(), PASSPHRASE)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_key(path, b"guess")


def test_an_encrypted_key_without_its_passphrase_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "party.key"
    save_key(path, generate_key(), PASSPHRASE)
    with pytest.raises(KeyFileError, match="is encrypted; give its passphrase"):
        load_key(path)


def test_a_passphrase_for_a_plain_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "party.key"
    save_key(path, generate_key())
    with pytest.raises(KeyFileError, match="not encrypted"):
        load_key(path, PASSPHRASE)


def test_an_empty_passphrase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="empty passphrase"):
        save_key(tmp_path / "party.key", generate_key(), b"")
    assert not (tmp_path / "party.key").exists()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602])
def test_a_key_file_others_can_access_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "party.key"
    save_key(path, generate_key())
    path.chmod(mode)
    with pytest.raises(KeyFileError, match=f"chmod 600 {path}"):
        load_key(path)


def test_a_read_only_key_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "party.key"
    save_key(path, generate_key())
    path.chmod(0o400)
    load_key(path)


def test_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key(tmp_path / "nowhere.key")


def test_a_file_that_is_not_a_key_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "party.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"secret words, not a key\n")
    os.close(fd)
    with pytest.raises(KeyFileError, match="does not hold a PEM private key") as caught:
        load_key(path)
    assert "secret" not in str(caught.value)


def test_a_key_of_another_algorithm_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "party.key"
    pem = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, pem)
    os.close(fd)
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_key(path)


def test_the_party_id_is_the_one_the_public_key_fixes() -> None:
    key = generate_key()
    assert len(key.public_key) == 32
    assert key.party_id == party_id_for(key.public_key)


def test_the_verifier_key_text_round_trips_and_bad_text_is_refused() -> None:
    key = generate_key()
    assert key.verifier_key.startswith("ed25519:")
    assert parse_verifier_key(key.verifier_key) == key.public_key
    for bad in ("ssh-ed25519 AAAA", "ed25519:not base64!", "ed25519:AAAA"):
        with pytest.raises(KeyFileError, match="not a verifier key"):
            parse_verifier_key(bad)


def test_a_signature_verifies_and_names_the_key_and_the_party() -> None:
    key = generate_key()
    statement = b"any statement bytes"
    signature = key.sign(statement)
    assert signature.signer == key.party_id
    assert signature.key_fingerprint == key_fingerprint(key.public_key)
    verify(statement, signature, key.public_key)
    with pytest.raises(SignatureInvalidError):
        verify(statement + b"!", signature, key.public_key)


def test_a_rotated_in_key_signs_for_the_party_it_names() -> None:
    old, new = generate_key(), generate_key()
    signature = new.sign(b"rotation", signer=old.party_id)
    assert signature.signer == old.party_id
    verify(b"rotation", signature, new.public_key)


def test_the_repr_shows_no_key_material() -> None:
    key = generate_key()
    raw = key.private_key.private_bytes_raw()
    assert repr(key) == f"PartyKey(party_id={key.party_id!r})"
    assert raw.hex() not in repr(key)
    assert isinstance(key, PartyKey)
