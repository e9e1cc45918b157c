"""Log key files: created private (mode 0600), refused when others can read them.

A key file holds one C2SP signer key string (``PRIVATE+KEY+name+keyid+…``).
The key's name is the log's origin, as C2SP tlog-checkpoint requires. A
witness's cosigning key (type 0x04) is kept the same way
(:func:`load_or_create_witness_key_file`).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TypeVar

from ledger.cosignature import CosignatureSigner
from ledger.errors import KeyFileError, NoteError
from ledger.note import Signer, _Ed25519SignerBase

S = TypeVar("S", bound=_Ed25519SignerBase)


def create_key_file(path: Path, name: str) -> Signer:
    """Create a new Ed25519 key named ``name`` at ``path``, readable by its owner only.

    Raises :class:`KeyFileError` if the file already exists.
    """
    return _create(path, name, Signer)


def _create(path: Path, name: str, kind: type[S]) -> S:
    signer = kind.generate(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: never overwrite a key; 0o600 from the start, not chmod after.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        raise KeyFileError(f"{path} already exists") from e
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(signer.signer_key() + "\n")
        f.flush()
        os.fsync(f.fileno())
    return signer


def load_key_file(path: Path) -> Signer:
    """Load the signer key at ``path``.

    Raises :class:`KeyFileError` if the file is missing, readable or writable
    by group or others, or does not hold a valid signer key.
    """
    return _load(path, Signer)


def _load(path: Path, kind: type[S]) -> S:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as e:
        raise KeyFileError(f"{path} does not exist") from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{path} is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
            "make it 0600 or 0400"
        )
    try:
        return kind.from_signer_key(path.read_text(encoding="ascii").strip())
    except (NoteError, UnicodeDecodeError) as e:
        # Say which file, never what it contains.
        raise KeyFileError(f"{path} does not hold a valid signer key") from e


def load_or_create_key_file(path: Path, name: str) -> Signer:
    """Load the key at ``path``, creating it with ``name`` if the file does not exist.

    Raises :class:`KeyFileError` if an existing key has another name.
    """
    return _load_or_create(path, name, Signer)


def load_or_create_witness_key_file(path: Path, name: str) -> CosignatureSigner:
    """As :func:`load_or_create_key_file`, for a witness's cosigning key."""
    return _load_or_create(path, name, CosignatureSigner)


def _load_or_create(path: Path, name: str, kind: type[S]) -> S:
    try:
        signer = _create(path, name, kind)
    except KeyFileError:
        # It exists (perhaps another process created it a moment ago): use it.
        signer = _load(path, kind)
    if signer.name != name:
        raise KeyFileError(f"{path} holds a key for {signer.name!r}, not {name!r}")
    return signer
