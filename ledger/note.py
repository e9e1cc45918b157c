"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

A signed note is a UTF-8 text ending in a newline, a blank line, and one or
more signature lines ``— <key name> base64(key ID || signature)``. The ledger
signs its checkpoints as notes and witnesses append cosignature lines to them.

Keys travel as strings in the format of golang.org/x/mod/sumdb/note:

* verifier key: ``<name>+<8 hex digits of key ID>+base64(type || public key)``
* signer key: ``PRIVATE+KEY+<name>+<8 hex digits of key ID>+base64(type || seed)``

where the key ID is ``SHA-256(name || 0x0A || type || public key)[:4]`` and the
type byte is 0x01 for plain Ed25519 note signatures. The key handling common to
all Ed25519 key types (names, key IDs, key strings) lives in small base
classes parameterised by the type byte, which :class:`Signer`/:class:`Verifier`
here and the cosignature keys of :mod:`ledger.cosignature` (type 0x04) extend.

Verification never returns a bool: it returns or raises a
:class:`~ledger.errors.NoteError`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Protocol, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import KeyFormatError, LedgerError, NoteFormatError, SignatureError

ALG_ED25519 = 0x01
"""Signature type byte of plain Ed25519 note signatures (signed-note, "Signature types")."""

KEY_ID_SIZE = 4
ED25519_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64

MAX_SIGNATURES = 100
"""Most signature lines a note may carry.

The spec asks verifiers to cap the count and to accept at least 16; 100 is
the cap of golang.org/x/mod/sumdb/note, so notes it accepts, we accept.
"""

SIGNATURE_PREFIX = "— "  # U+2014 EM DASH, U+0020 SPACE

_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")
# Control characters other than newline are banned anywhere in a note.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


def b64decode_canonical(text: str) -> bytes:
    """Decode standard base64 (RFC 4648 §4), accepting only the canonical encoding.

    Rejecting other spellings (missing padding, non-zero unused bits,
    characters outside the alphabet) gives each value one text, so two notes,
    checkpoints or receipts are equal as text exactly when they are equal as
    values. Raises ``ValueError`` (``binascii.Error`` is one) otherwise.
    """
    raw = base64.b64decode(text, validate=True)  # ValueError on non-ASCII or bad chars
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("base64 is not in canonical form")
    return raw


def b64encode(data: bytes) -> str:
    """Encode bytes as standard, padded base64 text."""
    return base64.b64encode(data).decode("ascii")


def check_key_name(name: str) -> None:
    """Raise :class:`KeyFormatError` unless ``name`` is a valid key name.

    The spec: non-empty, no Unicode spaces, no ``+``. Names also sit inside
    notes, so they must be valid UTF-8 (no lone surrogates) without control
    characters.
    """
    if not name:
        raise KeyFormatError("key name is empty")
    if "+" in name:
        raise KeyFormatError(f"key name {name!r} contains '+'")
    if any(c.isspace() or c < " " for c in name):
        raise KeyFormatError(f"key name {name!r} contains a space or control character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise KeyFormatError(f"key name {name!r} is not valid Unicode") from e


def compute_key_id(name: str, typed_public_key: bytes) -> bytes:
    """Return ``SHA-256(name || 0x0A || type || public key)[:4]``.

    ``typed_public_key`` is the signature type byte followed by the public key,
    as it appears in a verifier key string.
    """
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + typed_public_key).digest()
    return digest[:KEY_ID_SIZE]


def format_verifier_key(name: str, alg: int, public_key: bytes) -> str:
    """Return the verifier key string ``name+keyid+base64(alg || public_key)``."""
    typed = bytes([alg]) + public_key
    return f"{name}+{compute_key_id(name, typed).hex()}+{b64encode(typed)}"


def parse_verifier_key(vkey: str, alg: int, key_size: int) -> tuple[str, bytes, bytes]:
    """Parse a verifier key string of signature type ``alg``.

    Returns ``(name, key_id, public_key)``. Raises :class:`KeyFormatError` if
    the string is malformed, of another type or size, or if its key ID does not
    match its name and key.
    """
    parts = vkey.split("+", 2)  # base64 may itself contain '+'
    if len(parts) != 3:
        raise KeyFormatError("verifier key is not name+keyid+key")
    name, key_id_hex, key64 = parts
    check_key_name(name)
    if not _KEY_ID_HEX.fullmatch(key_id_hex):
        raise KeyFormatError(f"verifier key ID {key_id_hex!r} is not 8 hex digits")
    try:
        typed = b64decode_canonical(key64)
    except ValueError as e:
        raise KeyFormatError("verifier key is not valid base64") from e
    if len(typed) != 1 + key_size or typed[0] != alg:
        raise KeyFormatError(f"verifier key is not a type 0x{alg:02x} key of {key_size} bytes")
    key_id = bytes.fromhex(key_id_hex)
    if not hmac.compare_digest(key_id, compute_key_id(name, typed)):
        raise KeyFormatError("verifier key ID does not match its name and key")
    return name, key_id, typed[1:]


def format_signer_key(name: str, alg: int, public_key: bytes, seed: bytes) -> str:
    """Return the secret signer key string ``PRIVATE+KEY+name+keyid+base64(alg || seed)``."""
    key_id = compute_key_id(name, bytes([alg]) + public_key)
    return f"PRIVATE+KEY+{name}+{key_id.hex()}+{b64encode(bytes([alg]) + seed)}"


def parse_ed25519_signer_key(skey: str, alg: int) -> tuple[str, Ed25519PrivateKey]:
    """Parse a signer key string holding an Ed25519 seed of signature type ``alg``.

    Returns ``(name, private_key)``. Raises :class:`KeyFormatError` if the
    string is malformed, of another type, or if its key ID does not match the
    public key derived from the seed. The message never includes the key.
    """
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise KeyFormatError("signer key is not PRIVATE+KEY+name+keyid+key")
    _, _, name, key_id_hex, key64 = parts
    check_key_name(name)
    if not _KEY_ID_HEX.fullmatch(key_id_hex):
        raise KeyFormatError("signer key ID is not 8 hex digits")
    try:
        typed = b64decode_canonical(key64)
    except ValueError as e:
        # The decoder's messages never quote the input, so chaining leaks no secret.
        raise KeyFormatError("signer key is not valid base64") from e
    if len(typed) != 1 + ED25519_KEY_SIZE or typed[0] != alg:
        raise KeyFormatError(f"signer key is not a type 0x{alg:02x} Ed25519 seed")
    private_key = Ed25519PrivateKey.from_private_bytes(typed[1:])
    public = private_key.public_key().public_bytes_raw()
    if not hmac.compare_digest(
        bytes.fromhex(key_id_hex), compute_key_id(name, bytes([alg]) + public)
    ):
        raise KeyFormatError("signer key ID does not match its name and key")
    return name, private_key


class NoteSigner(Protocol):
    """Anything that can sign a note: a key name, a key ID and a signing function."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes:
        """Return the signature bytes (without the key ID) over ``message``."""
        ...


class NoteVerifier(Protocol):
    """Anything that can check a signature line of a note.

    :func:`open_note` picks the verifier whose ``name`` and ``key_id`` match a
    signature line, then calls ``verify``, which must raise a
    :class:`~ledger.errors.LedgerError` if the signature is not valid.
    Ed25519 note verifiers and cosignature verifiers both fit.
    """

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, message: bytes, signature: bytes) -> None:
        """Return if ``signature`` (key ID excluded) is valid over ``message``; else raise."""
        ...


class _Ed25519KeyBase:
    """What every Ed25519 key of signature type ``ALG`` has: name, key ID, public key.

    Subclasses set ``ALG``; :class:`_Ed25519SignerBase` and
    :class:`_Ed25519VerifierBase` add the private or the verifying key.
    """

    ALG: ClassVar[int]
    """The signature type byte, used in the key ID and the key strings."""

    __slots__ = ("_key_id", "_name", "_public_key")

    def __init__(self, name: str, public_key: bytes) -> None:
        """Check ``name`` (:class:`KeyFormatError`) and compute the key ID of ``public_key``."""
        check_key_name(name)
        self._name = name
        self._public_key = public_key
        self._key_id = compute_key_id(name, bytes([self.ALG]) + public_key)

    @property
    def name(self) -> str:
        """The key name on signature lines."""
        return self._name

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID (computed with ``ALG``) at the start of each signature."""
        return self._key_id

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return self._public_key

    def verifier_key(self) -> str:
        """Return the public verifier key string."""
        return format_verifier_key(self._name, self.ALG, self._public_key)


class _Ed25519SignerBase(_Ed25519KeyBase):
    """An Ed25519 signing key and its key name; subclasses set ``ALG`` and add signing."""

    __slots__ = ("_private_key",)

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        """Wrap ``private_key`` under ``name``; raises :class:`KeyFormatError` for a bad name."""
        super().__init__(name, private_key.public_key().public_bytes_raw())
        self._private_key = private_key

    @classmethod
    def generate(cls, name: str) -> Self:
        """Return a signer with a fresh random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_signer_key(cls, skey: str) -> Self:
        """Parse ``PRIVATE+KEY+name+keyid+base64(ALG || seed)``; raises :class:`KeyFormatError`."""
        name, private_key = parse_ed25519_signer_key(skey, cls.ALG)
        return cls(name, private_key)

    def signer_key(self) -> str:
        """Return the secret signer key string; whoever holds it can sign."""
        return format_signer_key(
            self._name, self.ALG, self._public_key, self._private_key.private_bytes_raw()
        )

    def __repr__(self) -> str:
        # Never the private key: reprs end up in logs.
        return f"{type(self).__name__}({self._name!r}, key_id={self._key_id.hex()})"


class _Ed25519VerifierBase(_Ed25519KeyBase):
    """An Ed25519 verification key and its key name; subclasses set ``ALG`` and add verifying."""

    __slots__ = ("_key",)

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        """Wrap ``public_key`` under ``name``; raises :class:`KeyFormatError` for a bad name."""
        super().__init__(name, public_key.public_bytes_raw())
        self._key = public_key

    @classmethod
    def from_vkey(cls, vkey: str) -> Self:
        """Parse ``name+keyid+base64(ALG || public key)``; raises :class:`KeyFormatError`."""
        name, _, public = parse_verifier_key(vkey, cls.ALG, ED25519_KEY_SIZE)
        # Any 32 bytes load; a key that is not a curve point just verifies nothing.
        return cls(name, Ed25519PublicKey.from_public_bytes(public))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.verifier_key()!r})"


class Signer(_Ed25519SignerBase):
    """An Ed25519 note-signing key (signature type 0x01) and its key name."""

    ALG = ALG_ED25519
    __slots__ = ()

    def verifier(self) -> Verifier:
        """Return the verifier of this key."""
        return Verifier(self._name, Ed25519PublicKey.from_public_bytes(self._public_key))

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        return self._private_key.sign(message)


class Verifier(_Ed25519VerifierBase):
    """An Ed25519 note verification key (signature type 0x01) and its key name."""

    ALG = ALG_ED25519
    __slots__ = ()

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check an Ed25519 ``signature`` over ``message``; raises :class:`SignatureError`."""
        if len(signature) != ED25519_SIGNATURE_SIZE:
            raise SignatureError(f"Ed25519 signature is {len(signature)} bytes, not 64")
        try:
            self._key.verify(signature, message)
        except InvalidSignature as e:
            raise SignatureError(f"invalid signature by {self._name}+{self._key_id.hex()}") from e


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID, and the signature bytes after the ID."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        try:
            check_key_name(self.name)
        except KeyFormatError as e:
            raise NoteFormatError(f"bad key name on signature line: {e}") from e
        if len(self.key_id) != KEY_ID_SIZE:
            raise NoteFormatError(f"key ID is {len(self.key_id)} bytes, not {KEY_ID_SIZE}")
        if not self.signature:
            raise NoteFormatError("signature is empty")

    def line(self) -> str:
        """Return the signature line, newline included."""
        return f"{SIGNATURE_PREFIX}{self.name} {b64encode(self.key_id + self.signature)}\n"


def _check_text(text: str) -> None:
    """Raise :class:`NoteFormatError` unless ``text`` can be the text of a signed note."""
    if not text.endswith("\n"):
        raise NoteFormatError("note text does not end in a newline")
    if _CONTROL.search(text):
        raise NoteFormatError("note contains a control character other than newline")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise NoteFormatError("note text is not valid Unicode") from e


@dataclass(frozen=True)
class Note:
    """A note's text (final newline included, blank separator line excluded) and its signatures.

    The signatures are as written, verified or not: see :func:`open_note`.
    """

    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        _check_text(self.text)
        if not self.signatures:
            raise NoteFormatError("a signed note needs at least one signature")
        if len(self.signatures) > MAX_SIGNATURES:
            raise NoteFormatError(f"note has more than {MAX_SIGNATURES} signatures")

    def format(self) -> str:
        """Return the signed note as text."""
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def sign_note(text: str, signers: Iterable[NoteSigner]) -> str:
    """Sign ``text`` with each of ``signers`` and return the signed note.

    Requires ``text`` to end in a newline and hold no control character other
    than newline (else :class:`NoteFormatError`), and at least one signer.
    """
    _check_text(text)
    message = text.encode("utf-8")
    signatures = tuple(NoteSignature(s.name, s.key_id, s.sign(message)) for s in signers)
    return Note(text, signatures).format()


def add_signatures(note: str | bytes, signatures: Iterable[NoteSignature]) -> str:
    """Return ``note`` with ``signatures`` appended, as a witness adds its cosignature.

    A new signature replaces an existing one by the same key (name and key ID),
    as golang.org/x/mod/sumdb/note's ``Sign`` does, so re-cosigning does not
    pile up lines. Nothing is verified here: open the note first.
    Raises :class:`NoteFormatError` if ``note`` is malformed or the result would
    carry too many signatures.
    """
    parsed = parse_note(note)
    added = tuple(signatures)

    def replaced(old: NoteSignature) -> bool:
        return any(
            old.name == new.name and hmac.compare_digest(old.key_id, new.key_id) for new in added
        )

    kept = tuple(s for s in parsed.signatures if not replaced(s))
    return Note(parsed.text, kept + added).format()


def _decode_note(note: str | bytes) -> str:
    if isinstance(note, bytes):
        try:
            return note.decode("utf-8")
        except UnicodeDecodeError as e:
            raise NoteFormatError("note is not valid UTF-8") from e
    try:
        note.encode("utf-8")
    except UnicodeEncodeError as e:
        raise NoteFormatError("note is not valid Unicode") from e
    return note


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteFormatError("signature line does not start with an em dash and a space")
    name, space, sig64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not space or not sig64:
        raise NoteFormatError("signature line is not '— <name> <base64>'")
    try:
        raw = b64decode_canonical(sig64)
    except ValueError as e:
        raise NoteFormatError("signature is not valid base64") from e
    if len(raw) <= KEY_ID_SIZE:
        raise NoteFormatError("signature is too short to hold a key ID and a signature")
    return NoteSignature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])


def parse_note(note: str | bytes) -> Note:
    """Split a signed note into text and signature lines, verifying nothing.

    Raises :class:`NoteFormatError` on any departure from the format: invalid
    UTF-8, control characters, no blank line before the signatures, a
    malformed signature line, no signature, or more than :data:`MAX_SIGNATURES`.
    """
    text = _decode_note(note)
    if _CONTROL.search(text):
        raise NoteFormatError("note contains a control character other than newline")
    # The text ends at the *last* blank line: the text may hold blank lines,
    # signature lines cannot.
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteFormatError("note has no blank line before its signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block.endswith("\n"):
        raise NoteFormatError("note does not end with a newline-terminated signature line")
    lines = block[:-1].split("\n")
    # Count before decoding anything, so a huge note costs little to reject.
    if len(lines) > MAX_SIGNATURES:
        raise NoteFormatError(f"note has more than {MAX_SIGNATURES} signatures")
    return Note(body, tuple(_parse_signature_line(line) for line in lines))


def open_note(
    note: str | bytes, verifiers: Iterable[NoteVerifier]
) -> tuple[Note, list[NoteVerifier]]:
    """Parse ``note`` and verify its signatures by the known ``verifiers``.

    Follows the spec's rules: a signature line whose (name, key ID) matches no
    verifier is ignored; one that matches a verifier is verified, and if it
    fails the whole note is rejected; if no known key signed, the note is
    rejected. Returns the note (all its signature lines, verified or not) and
    the verifiers whose signatures verified, in order of first appearance.

    Requires no two ``verifiers`` to share both name and key ID (``ValueError``).
    Raises :class:`NoteFormatError` for a malformed note and
    :class:`SignatureError` for a failed or missing signature.
    """
    known = list(verifiers)
    for i, a in enumerate(known):
        for b in known[i + 1 :]:
            if a.name == b.name and hmac.compare_digest(a.key_id, b.key_id):
                raise ValueError(f"two verifiers share the key {a.name}+{a.key_id.hex()}")
    parsed = parse_note(note)
    message = parsed.text.encode("utf-8")
    verified: list[NoteVerifier] = []
    for sig in parsed.signatures:
        match = next(
            (v for v in known if v.name == sig.name and hmac.compare_digest(v.key_id, sig.key_id)),
            None,
        )
        if match is None:
            continue  # an unknown key: another witness, a rotated key, ...
        try:
            match.verify(message, sig.signature)
        except LedgerError as e:
            raise SignatureError(
                f"signature by known key {sig.name}+{sig.key_id.hex()} does not verify"
            ) from e
        if not any(v is match for v in verified):
            verified.append(match)
    if not verified:
        raise SignatureError("note carries no signature by a known key")
    return parsed, verified
