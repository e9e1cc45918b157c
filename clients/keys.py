"""A party's Ed25519 signing key, and the files that keep it.

A party key file is a PKCS#8 PEM private key, encrypted with the best
available scheme when a passphrase is given. It is created mode 0600 in one
step (never readable by others, not even between a create and a chmod),
never overwritten, and refused on load when group or others may read or
write it.

A party is named by the id its first public key fixes
(:func:`exchange.statements.party_id_for`); a key rotation keeps that id, so
a party signing with a rotated-in key names its signer explicitly
(``key.sign(data, signer=party_id)``).

A public key is shown to people as its *verifier key* text,
``ed25519:<standard padded base64 of the 32 raw public key bytes>``: printable,
unambiguous about the algorithm, and short enough to read over the phone.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clients.errors import KeyFileError
from exchange.statements import party_id_for, sign
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.note import b64decode_canonical, b64encode

VERIFIER_KEY_PREFIX = "ed25519:"
# A PEM Ed25519 key is a few hundred bytes; anything far larger is not one.
MAX_KEY_FILE_BYTES = 64 * 1024


@dataclass(frozen=True, repr=False)
class PartyKey:
    """A party's Ed25519 private key and the names derived from its public key."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> bytes:
        """The 32 raw bytes of the public key."""
        return self.private_key.public_key().public_bytes_raw()

    @property
    def party_id(self) -> str:
        """The id of a party that registers with this key (its first key)."""
        return party_id_for(self.public_key)

    @property
    def verifier_key(self) -> str:
        """The public key as printable text: ``ed25519:<base64 of the raw key>``."""
        return VERIFIER_KEY_PREFIX + b64encode(self.public_key)

    def sign(self, statement: bytes, signer: str | None = None) -> pb.Signature:
        """Sign the statement bytes as ``signer`` (by default this key's own party id)."""
        return sign(statement, signer or self.party_id, self.private_key)

    def __repr__(self) -> str:
        # Never the private key: reprs end up in logs and tracebacks.
        return f"PartyKey(party_id={self.party_id!r})"


def generate_key() -> PartyKey:
    """Return a fresh random party key."""
    return PartyKey(Ed25519PrivateKey.generate())


def parse_verifier_key(text: str) -> bytes:
    """Return the raw public key of a verifier key text; raise :class:`KeyFileError` if bad."""
    if not text.startswith(VERIFIER_KEY_PREFIX):
        raise KeyFileError(f"{text!r} is not a verifier key: it must start {VERIFIER_KEY_PREFIX!r}")
    try:
        public = b64decode_canonical(text.removeprefix(VERIFIER_KEY_PREFIX))
    except ValueError as e:
        raise KeyFileError(f"{text!r} is not a verifier key: bad base64") from e
    if len(public) != 32:
        raise KeyFileError(f"{text!r} is not a verifier key: {len(public)} bytes, not 32")
    return public


def save_key(path: Path | str, key: PartyKey, passphrase: bytes | None = None) -> None:
    """Write ``key`` to a new file at ``path``, mode 0600, encrypted if ``passphrase`` is given.

    Raises :class:`KeyFileError` if the file exists (a key is never
    overwritten), the passphrase is empty, or the file cannot be written.
    """
    path = Path(path)
    if passphrase is not None and not passphrase:
        raise KeyFileError("an empty passphrase protects nothing: give none or a real one")
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if passphrase is None
        else serialization.BestAvailableEncryption(passphrase)
    )
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    try:
        # O_EXCL: never replace a key; 0o600 from the first moment, not chmod after.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        raise KeyFileError(f"{path} already exists; a key file is never overwritten") from e
    except OSError as e:
        raise KeyFileError(f"{path} cannot be created: {e.strerror}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        # A half-written key file would be refused on load anyway; do not leave it behind.
        path.unlink(missing_ok=True)
        raise KeyFileError(f"{path} cannot be written: {e.strerror}") from e


def load_key(path: Path | str, passphrase: bytes | None = None) -> PartyKey:
    """Load the party key at ``path``, decrypting it with ``passphrase`` if it is encrypted.

    Raises :class:`KeyFileError` if the file is missing, accessible by group
    or others, encrypted and the passphrase is missing or wrong, not
    encrypted but a passphrase was given, or holds no Ed25519 private key.
    The message names the file, never its contents.
    """
    path = Path(path)
    data = _read_private(path)
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    if encrypted and passphrase is None:
        raise KeyFileError(f"{path} is encrypted; give its passphrase")
    if not encrypted and passphrase is not None:
        # Refused rather than ignored: the caller believes the key is protected.
        raise KeyFileError(f"{path} is not encrypted, yet a passphrase was given")
    try:
        private = serialization.load_pem_private_key(data, passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        if encrypted:
            raise KeyFileError(f"{path}: wrong passphrase, or the file is damaged") from e
        raise KeyFileError(f"{path} does not hold a PEM private key") from e
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(private).__name__}, not an Ed25519 key")
    return PartyKey(private)


def _read_private(path: Path) -> bytes:
    try:
        f = path.open("rb")
    except FileNotFoundError as e:
        raise KeyFileError(f"{path} does not exist") from e
    except OSError as e:
        raise KeyFileError(f"{path} cannot be read: {e.strerror}") from e
    with f:
        # The mode of the file opened, not of whatever the path names a moment later.
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"{path} is not a regular file")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"{path} is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
                f"run chmod 600 {path}"
            )
        try:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
        except OSError as e:
            raise KeyFileError(f"{path} cannot be read: {e.strerror}") from e
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path} is too large to be a key file")
    return data
