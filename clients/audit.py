"""Audit bundles: what a mediator takes away, and how it is checked without a server.

A bundle is one JSON document holding everything needed to believe a
subject's history (a patent's, or a party's) offline:

.. code-block:: json

    {
      "format": "kaifang-audit-bundle/v1",
      "subject": {"patent": "202110123456.7"},
      "logs": {"<origin>": {"vkey": "<C2SP verifier key>", "checkpoint": "<signed note>"}},
      "witnesses": ["<C2SP cosigner verifier key>"],
      "entries": [
        {"origin": "<origin>", "index": 17, "leaf": "<base64 LogEntry>", "proof": ["<base64>"]}
      ]
    }

Every entry's ``proof`` is its RFC 6962 inclusion proof against its origin's
checkpoint in ``logs``. Besides the subject's entries, the bundle holds the
registrations and key rotations of every party that signed one of them, so
that party signatures can be checked with keys the bundle itself proves.

Pure: :func:`build_bundle` assembles a bundle from ``GetHistory`` responses,
:func:`dumps` and :func:`load` convert it to and from bytes, and
:func:`verify_bundle` checks it, returning a :class:`VerifiedBundle` or
raising :class:`~clients.errors.BundleError` naming the first part that
failed (``logs.<origin>.checkpoint``, ``witnesses``, ``entries[3].proof``,
``entries[3].leaf``, ``chain``, …). :func:`report` renders a verified
bundle as a timeline a person can read. Fetching the histories and reading
files is the caller's business.

**Log keys.** A bundle names one ``vkey`` per log, the key whose signature
on the checkpoint it relies on. A log that rotates its key has several
(C2SP signed-note: a note may carry several signatures): the exporter is
given all of an origin's keys and writes the first that signed the
checkpoint, and a verifier that pins keys accepts a bundle whose ``vkey``
is any of the keys it pins for that origin (and checks the signatures of
the others, if the checkpoint carries them).
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError
from iso4217 import Currency

from clients.errors import BundleError, CheckpointVerificationError, WitnessPolicyError
from clients.trust import open_witnessed
from exchange.parties import OPERATOR_PREFIX
from exchange.rules import REGISTER
from exchange.statements import SIGNING_PREFIX, party_id_for, statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.checkpoint import Checkpoint
from ledger.cosignature import CosignatureVerifier
from ledger.errors import LedgerError
from ledger.merkle import root_from_inclusion_proof
from ledger.note import Verifier, add_signatures, b64encode, parse_note

FORMAT = "kaifang-audit-bundle/v1"
SUBJECT_KINDS = ("patent", "party")
# The statement kinds that give a party its keys: kept from the signing parties' histories.
KEY_KINDS = ("party_registered", "party_key_rotated")
CHINA_TIME = dt.timezone(dt.timedelta(hours=8), "UTC+8")

# How a statement signature was checked (CheckedSignature.how).
PARTY_KEY = "party key"
REGISTER_KEY = "register key"
OPERATOR_KEY = "operator key"
ATTESTED = "attested by the log"

_PARTY_ID = re.compile(r"[0-9a-f]{32}")
_TOP_KEYS = frozenset({"format", "subject", "logs", "witnesses", "entries"})
_ENTRY_KEYS = frozenset({"origin", "index", "leaf", "proof"})
_PROGRESS_EVERY = 256

Subject = tuple[str, str]
"""``("patent", application number)`` or ``("party", party id)``."""


# -- building and serialising -------------------------------------------------


def _key_subject(statement: pb.Statement) -> str | None:
    """The party whose keys ``statement`` sets, if it is a registration or a key rotation."""
    kind = statement.WhichOneof("body")
    if kind == "party_registered":
        return statement.party_registered.party_id
    if kind == "party_key_rotated":
        return statement.party_key_rotated.party_id
    return None


def signing_parties(history: api.GetHistoryResponse) -> set[str]:
    """The party ids that signed an entry of ``history``: whose histories the exporter fetches.

    Signatures by the register or an operator are not by parties. Entries
    that do not decode are skipped: verification will name them.
    """
    signers: set[str] = set()
    for item in history.entries:
        try:
            entry = pb.LogEntry.FromString(item.entry)
        except DecodeError:
            continue
        signers.update(s.signer for s in entry.signatures if _PARTY_ID.fullmatch(s.signer))
    return signers


def _entry_json(origin: str, item: api.HistoryEntry) -> dict[str, Any]:
    return {
        "origin": origin,
        "index": item.index,
        "leaf": b64encode(item.entry),
        "proof": [b64encode(h) for h in item.proof],
    }


def _merge_checkpoint(notes: dict[str, str], origin: str, note: str) -> None:
    """Record ``note`` as ``origin``'s checkpoint; the same checkpoint's cosignatures are pooled."""
    try:
        parsed = parse_note(note)
        if origin not in notes:
            notes[origin] = note
            return
        held = parse_note(notes[origin])
        if held.text != parsed.text:
            sizes = [text.split("\n")[1:2] for text in (held.text, parsed.text)]
            raise ValueError(
                f"histories of {origin} are proven against different checkpoints "
                f"(sizes {sizes[0]} and {sizes[1]}); ask for every history at one size"
            )
        notes[origin] = add_signatures(notes[origin], parsed.signatures)
    except LedgerError as e:
        raise ValueError(f"checkpoint of {origin}: {e}") from e


def build_bundle(
    subject: Subject,
    histories: Sequence[api.GetHistoryResponse],
    vkeys: Mapping[str, str | Sequence[str]],
    witnesses: Sequence[str],
) -> dict[str, Any]:
    """Assemble an audit bundle of ``subject`` from ``GetHistory`` responses.

    ``histories[0]`` is the subject's history, kept whole; the others are
    the histories of the parties that signed its entries
    (:func:`signing_parties`), of which only each party's registration and
    key rotations are kept. ``vkeys`` maps each origin to its log's verifier
    key, or to its keys (a log rotating its key, the current key first):
    the bundle names the first of them whose signature the checkpoint
    carries (the first of them if none does: verification will say so).
    ``witnesses`` are cosigner verifier keys, written as given.

    Requires every history of one origin to be proven against one
    checkpoint (their cosignatures are pooled), a verifier key for every
    origin, and a subject kind of ``patent`` or ``party``; raises
    ``ValueError`` otherwise. Nothing is verified here: :func:`verify_bundle`
    does that.
    """
    kind, value = subject
    if kind not in SUBJECT_KINDS:
        raise ValueError(f"subject kind {kind!r} is not one of {', '.join(SUBJECT_KINDS)}")
    if not histories:
        raise ValueError("no history: the subject's own comes first")
    notes: dict[str, str] = {}
    seen: set[tuple[str, int]] = set()
    entries: list[dict[str, Any]] = []
    keys: list[dict[str, Any]] = []
    for position, history in enumerate(histories):
        _merge_checkpoint(notes, history.origin, history.checkpoint)
        for item in history.entries:
            place = (history.origin, item.index)
            if place in seen:
                continue
            if position > 0:
                try:
                    entry = pb.LogEntry.FromString(item.entry)
                    party = _key_subject(pb.Statement.FromString(entry.statement))
                except DecodeError:
                    continue
                if party is None or not any(link.party == party for link in entry.previous):
                    continue
            seen.add(place)
            (entries if position == 0 else keys).append(_entry_json(history.origin, item))
    missing = sorted(set(notes) - set(vkeys))
    if missing:
        raise ValueError(f"no verifier key for log {', '.join(missing)}")
    keys.sort(key=lambda e: (e["origin"], e["index"]))
    return {
        "format": FORMAT,
        "subject": {kind: value},
        "logs": {
            o: {"vkey": _signing_key(_key_list(vkeys[o]), note), "checkpoint": note}
            for o, note in sorted(notes.items())
        },
        "witnesses": list(witnesses),
        "entries": entries + keys,
    }


def _key_list(keys: str | Sequence[str]) -> tuple[str, ...]:
    """One verifier key, or several, as a tuple of keys without surrounding spaces."""
    return (keys.strip(),) if isinstance(keys, str) else tuple(k.strip() for k in keys)


def _signing_key(vkeys: Sequence[str], note: str) -> str:
    """The first of ``vkeys`` (a log's keys) with a signature line on ``note`` (unverified)."""
    if not vkeys:
        raise ValueError("an origin is given no verifier key")
    lines = {(s.name, s.key_id) for s in parse_note(note).signatures}
    for vkey in vkeys:
        try:
            verifier = Verifier.from_vkey(vkey)
        except LedgerError as e:
            raise ValueError(f"log verifier key {vkey!r}: {e}") from e
        if (verifier.name, verifier.key_id) in lines:
            return vkey
    return vkeys[0]


def dumps(bundle: Mapping[str, Any]) -> bytes:
    """Serialise a bundle: UTF-8 JSON, keys sorted, indented, so equal bundles are equal bytes."""
    return (json.dumps(bundle, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def load(data: bytes) -> dict[str, Any]:
    """Parse a bundle and check its shape; raise :class:`BundleError` naming what is malformed.

    Checks the format string, that every key is present with the right type
    and no other key is, and that every base64 field decodes. Nothing is
    verified: pass the result to :func:`verify_bundle`.
    """
    try:
        bundle = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError("bundle", f"is not UTF-8 JSON: {e}") from e
    _shape(bundle)
    result: dict[str, Any] = bundle
    return result


# -- shape ------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    origin: str
    index: int
    leaf: bytes
    proof: list[bytes]


@dataclass(frozen=True)
class _Shape:
    subject: Subject
    logs: dict[str, tuple[str, str]]  # origin -> (vkey, checkpoint note)
    witnesses: list[str]
    items: list[_Item]


def _need(value: Any, kind: type, what: str) -> Any:
    # bool is an int to Python, never to a bundle.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BundleError(what, f"must be a JSON {_JSON_TYPES[kind]}")
    return value


_JSON_TYPES = {str: "string", int: "integer", list: "array", dict: "object"}


def _keys(value: dict[str, Any], required: frozenset[str], what: str) -> None:
    missing = sorted(required - value.keys())
    if missing:
        raise BundleError(what, f"lacks {', '.join(missing)}")
    extra = sorted(value.keys() - required)
    if extra:
        raise BundleError(what, f"has unknown key {', '.join(extra)}")


def _b64(value: Any, what: str) -> bytes:
    # The decoded bytes are what is hashed and verified, so a non-canonical
    # spelling cannot change what is proven; strict mode still refuses any
    # character outside the alphabet and bad padding.
    try:
        return binascii.a2b_base64(_need(value, str, what), strict_mode=True)
    except (binascii.Error, ValueError) as e:
        raise BundleError(what, f"is not base64: {e}") from e


def _b64_list(values: list[Any], what: str) -> list[bytes]:
    # Proofs are most of a bundle's base64: decode them in one pass, and only
    # if that fails go item by item to name the one at fault.
    if all(type(v) is str for v in values):
        try:
            return [binascii.a2b_base64(v, strict_mode=True) for v in values]
        except (binascii.Error, ValueError):
            pass
    return [_b64(v, f"{what}[{j}]") for j, v in enumerate(values)]


def _shape(bundle: Any) -> _Shape:
    """Check the shape of a bundle and decode its base64; raise :class:`BundleError`."""
    _need(bundle, dict, "bundle")
    _keys(bundle, _TOP_KEYS, "bundle")
    if bundle["format"] != FORMAT:
        raise BundleError("format", f"{bundle['format']!r} is not {FORMAT!r}")
    subject = _need(bundle["subject"], dict, "subject")
    if len(subject) != 1 or next(iter(subject)) not in SUBJECT_KINDS:
        raise BundleError("subject", 'must be {"patent": …} or {"party": …}')
    kind, value = next(iter(subject.items()))
    if not _need(value, str, f"subject.{kind}"):
        raise BundleError(f"subject.{kind}", "is empty")
    if kind == "party" and not _PARTY_ID.fullmatch(value):
        raise BundleError("subject.party", f"{value!r} is not a party id")
    logs: dict[str, tuple[str, str]] = {}
    for origin, log in _need(bundle["logs"], dict, "logs").items():
        what = f"logs.{origin}"
        _keys(_need(log, dict, what), frozenset({"vkey", "checkpoint"}), what)
        vkey = _need(log["vkey"], str, f"{what}.vkey")
        logs[origin] = (vkey, _need(log["checkpoint"], str, f"{what}.checkpoint"))
    witnesses = [
        _need(w, str, f"witnesses[{i}]")
        for i, w in enumerate(_need(bundle["witnesses"], list, "witnesses"))
    ]
    items = []
    for i, entry in enumerate(_need(bundle["entries"], list, "entries")):
        what = f"entries[{i}]"
        _keys(_need(entry, dict, what), _ENTRY_KEYS, what)
        index = _need(entry["index"], int, f"{what}.index")
        if index < 0:
            raise BundleError(f"{what}.index", f"{index} is negative")
        proof = _need(entry["proof"], list, f"{what}.proof")
        items.append(
            _Item(
                _need(entry["origin"], str, f"{what}.origin"),
                index,
                _b64(entry["leaf"], f"{what}.leaf"),
                _b64_list(proof, f"{what}.proof"),
            )
        )
    return _Shape((kind, value), logs, witnesses, items)


# -- verification -----------------------------------------------------------


@dataclass(frozen=True)
class CheckedSignature:
    """One statement signature, and how it was checked (:data:`PARTY_KEY`, … :data:`ATTESTED`)."""

    signer: str  # a party id, "register" or "operator:<origin>"
    how: str

    @property
    def verified(self) -> bool:
        """Whether the signature was verified with a key (not merely attested by the log)."""
        return self.how != ATTESTED


@dataclass(frozen=True)
class AuditedEntry:
    """One bundle entry that verified: its place, its leaf decoded, and its signatures."""

    position: int  # in the bundle's entries
    origin: str
    index: int
    entry: pb.LogEntry
    statement: pb.Statement
    kind: str  # the statement's body field, e.g. "offer_published"
    statement_id: bytes
    sequenced_at: dt.datetime  # UTC
    signatures: tuple[CheckedSignature, ...]
    about_subject: bool  # False: a signing party's registration or key rotation


@dataclass(frozen=True)
class VerifiedLog:
    """A log's checkpoint that verified, and who cosigned it."""

    origin: str
    vkey: str
    checkpoint: Checkpoint
    cosigned_by: tuple[str, ...]  # names of the bundle's witnesses whose cosignatures verified
    pinned: bool  # the vkey equals one the caller pinned (else the bundle's own word)


@dataclass(frozen=True)
class Counts:
    """How much was checked."""

    entries: int
    subject_entries: int
    key_entries: int
    signatures_verified: int
    signatures_attested: int
    proof_hashes: int


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose every check passed."""

    subject: Subject
    logs: Mapping[str, VerifiedLog]
    witnesses: tuple[str, ...]  # names of the witness keys the bundle lists
    min_cosignatures: int
    entries: tuple[AuditedEntry, ...]  # in bundle order
    party_names: Mapping[str, str]  # party id -> registered name, where the bundle holds it
    counts: Counts

    @property
    def subject_entries(self) -> tuple[AuditedEntry, ...]:
        """The entries about the subject, in log order."""
        return tuple(sorted((e for e in self.entries if e.about_subject), key=lambda e: e.index))


def _subject_link(entry: pb.LogEntry, subject: Subject) -> pb.SubjectLink | None:
    kind, value = subject
    for link in entry.previous:
        if link.WhichOneof("subject") == kind and getattr(link, kind) == value:
            return link
    return None


def _open_logs(
    shape: _Shape,
    witnesses: Sequence[CosignatureVerifier],
    k: int,
    pinned_vkeys: Mapping[str, str | Sequence[str]] | None,
) -> dict[str, VerifiedLog]:
    logs = {}
    for origin, (vkey, note) in sorted(shape.logs.items()):
        what = f"logs.{origin}"
        try:
            verifier = Verifier.from_vkey(vkey)
        except LedgerError as e:
            raise BundleError(f"{what}.vkey", f"is not a verifier key: {e}") from e
        if verifier.name != origin:
            raise BundleError(f"{what}.vkey", f"is the key of {verifier.name!r}, not of {origin!r}")
        # The pinned keys of this log other than the bundle's: their
        # signatures, when present, must verify too (C2SP signed-note).
        others: list[Verifier] = []
        if pinned_vkeys is not None:
            pinned = pinned_vkeys.get(origin)
            if pinned is None:
                raise BundleError(f"{what}.vkey", f"no key is pinned for log {origin}")
            keys = _key_list(pinned)
            if vkey.strip() not in keys:
                raise BundleError(f"{what}.vkey", f"is not a key pinned for log {origin}")
            for other in keys:
                if other != vkey.strip():
                    try:
                        others.append(Verifier.from_vkey(other))
                    except LedgerError as e:
                        raise ValueError(f"pinned key {other!r} of log {origin}: {e}") from e
        try:
            witnessed = open_witnessed(note, [verifier, *others], witnesses, k, origin=origin)
        except WitnessPolicyError as e:
            raise BundleError("witnesses", str(e)) from e
        except CheckpointVerificationError as e:
            raise BundleError(f"{what}.checkpoint", str(e)) from e
        if verifier.verifier_key() not in witnessed.log_keys:
            # Another pinned key signed, not the one the bundle names.
            raise BundleError(
                f"{what}.checkpoint", f"is not signed by the bundle's key {verifier.verifier_key()}"
            )
        logs[origin] = VerifiedLog(
            origin, vkey, witnessed.checkpoint, witnessed.witnesses, pinned_vkeys is not None
        )
    return logs


def _decode_entry(i: int, item: _Item, logs: Mapping[str, VerifiedLog]) -> pb.LogEntry:
    """Check ``item``'s inclusion proof and decode its leaf."""
    what = f"entries[{i}]"
    log = logs.get(item.origin)
    if log is None:
        raise BundleError(f"{what}.origin", f"{item.origin!r} is not one of the bundle's logs")
    checkpoint = log.checkpoint
    leaf_hash = hashlib.sha256(b"\x00" + item.leaf).digest()
    try:
        root = root_from_inclusion_proof(leaf_hash, item.index, checkpoint.size, item.proof)
    except LedgerError as e:
        raise BundleError(f"{what}.proof", f"{item.origin}#{item.index}: {e}") from e
    if not hmac.compare_digest(root, checkpoint.root_hash):
        raise BundleError(
            f"{what}.proof",
            f"{item.origin}#{item.index} is not in the checkpoint of size {checkpoint.size}: "
            "its leaf or its inclusion proof was altered",
        )
    try:
        entry = pb.LogEntry.FromString(item.leaf)
    except DecodeError as e:
        raise BundleError(f"{what}.leaf", f"is not a LogEntry: {e}") from e
    if entry.origin != item.origin:
        raise BundleError(
            f"{what}.leaf", f"the entry names origin {entry.origin!r}, not {item.origin!r}"
        )
    return entry


def _parse_statement(i: int, entry: pb.LogEntry) -> pb.Statement:
    try:
        statement = pb.Statement.FromString(entry.statement)
    except DecodeError as e:
        raise BundleError(f"entries[{i}].leaf", f"its statement does not decode: {e}") from e
    if statement.WhichOneof("body") is None:
        raise BundleError(f"entries[{i}].leaf", "its statement has no kind")
    return statement


@dataclass(frozen=True)
class _Decoded:
    """An entry whose inclusion proof verified, decoded (verification's working form)."""

    position: int
    origin: str
    index: int
    entry: pb.LogEntry
    statement: pb.Statement
    kind: str
    link: pb.SubjectLink | None  # the entry's link for the subject, if it is about it


def _check_chain(subject: Subject, decoded: Sequence[_Decoded]) -> None:
    """Require the subject's entries to form one unbroken chain of previous-entry links."""
    kind, value = subject
    name = f"chain of {kind} {value}"
    about = sorted((d for d in decoded if d.link is not None), key=lambda d: (d.origin, d.index))
    if not about:
        raise BundleError("entries", f"no entry is about {kind} {value}")
    origins = sorted({d.origin for d in about})
    if len(origins) > 1:
        raise BundleError("chain", f"{name}: entries come from several logs ({', '.join(origins)})")
    held_indices = {d.index for d in about}
    held: int | None = None  # the index of the subject's entry before this one
    for d in about:
        assert d.link is not None
        named = d.link.previous_index if d.link.HasField("previous_index") else None
        if named != held:
            if named is None:
                raise BundleError(
                    "chain",
                    f"{name}: entry {d.index} names no previous entry, "
                    f"but entry {held} of origin {d.origin} comes before it",
                )
            if named not in held_indices:
                raise BundleError(
                    "chain",
                    f"{name}: entry {d.index} names previous entry {named} of origin "
                    f"{d.origin}, which the bundle does not hold",
                )
            raise BundleError(
                "chain",
                f"{name}: entry {d.index} names previous entry {named} of origin {d.origin}, "
                f"but entry {held} comes between them",
            )
        held = d.index


def _party_keys(
    decoded: Sequence[_Decoded],
) -> tuple[dict[str, dict[bytes, Ed25519PublicKey]], dict[str, str]]:
    """Every party's keys (fingerprint → key) and names, from its registrations and rotations."""
    keys: dict[str, dict[bytes, Ed25519PublicKey]] = {}
    names: dict[str, str] = {}
    for d in decoded:
        i, kind, statement = d.position, d.kind, d.statement
        if kind == "party_registered":
            body = statement.party_registered
            party, public = body.party_id, body.public_key
            if party_id_for(public) != party:
                raise BundleError(
                    f"entries[{i}].leaf",
                    f"the registration of {party} carries a key whose party id is "
                    f"{party_id_for(public)}",
                )
            names[party] = body.name
        elif kind == "party_key_rotated":
            party, public = (
                statement.party_key_rotated.party_id,
                statement.party_key_rotated.new_public_key,
            )
        else:
            continue
        try:
            key = Ed25519PublicKey.from_public_bytes(public)
        except ValueError as e:
            raise BundleError(f"entries[{i}].leaf", f"key of {party}: {e}") from e
        keys.setdefault(party, {})[hashlib.sha256(public).digest()] = key
    # A rotation alone proves nothing: a party's keys hang from the
    # registration whose key its id derives from.
    return {p: k for p, k in keys.items() if p in names}, names


def _check_rotation(d: _Decoded, keys: Mapping[str, Mapping[bytes, Ed25519PublicKey]]) -> None:
    """Require a key rotation (whose signatures verified) to be signed by another of its keys.

    Admission requires the old key's signature; a rotation signed only by
    the new key would let whoever holds it take the party over.
    """
    rotation = d.statement.party_key_rotated
    new = hashlib.sha256(rotation.new_public_key).digest()
    party = rotation.party_id
    if not any(
        s.signer == party and s.key_fingerprint != new and s.key_fingerprint in keys.get(party, {})
        for s in d.entry.signatures
    ):
        raise BundleError(
            f"entries[{d.position}].leaf",
            f"{d.origin}#{d.index}: the key rotation of {party} is not signed by a key "
            f"{party} held before",
        )


def _authority(raw: bytes, what: str) -> tuple[bytes, Ed25519PublicKey]:
    try:
        return hashlib.sha256(raw).digest(), Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from e


def verify_bundle(
    bundle: Mapping[str, Any],
    *,
    min_cosignatures: int | None = None,
    pinned_vkeys: Mapping[str, str | Sequence[str]] | None = None,
    pinned_witnesses: Iterable[str] | None = None,
    register_key: bytes | None = None,
    operator_keys: Mapping[str, bytes] | None = None,
    progress: Callable[[int], None] | None = None,
) -> VerifiedBundle:
    """Verify an audit bundle; raise :class:`BundleError` naming the first failure.

    Checks, in this order: the shape; each log's verifier key (its name is
    the origin; one of ``pinned_vkeys[origin]``, a key or a sequence of
    the log's keys, if keys are pinned);
    each checkpoint's signature, and cosignatures by at least
    ``min_cosignatures`` of the bundle's witnesses (default 1 if it lists
    any, else 0; with ``pinned_witnesses``, every listed witness must be a
    pinned one, or the bundle could vouch for itself); each entry's
    inclusion proof and that its leaf is a ``LogEntry`` of its origin; that
    the subject's entries form one chain of previous-entry links with no
    gap; that each registration's key is the one its party id derives
    from; and every statement signature. A party's signature must verify
    with one of its keys that the bundle proves: the registration's, and
    those of its rotations, each signed by another key of the party (a
    rotation without the party's registration proves nothing);
    the register's and operators' are verified if ``register_key`` /
    ``operator_keys`` (origin → raw Ed25519 key) are given, else counted as
    attested by the log that admitted them.

    ``progress`` is called with the number of entries whose signatures are
    checked so far, every few hundred entries and at the end. Raises
    ``ValueError`` if ``register_key`` or an operator key is not an
    Ed25519 public key, or a pinned log key is not a verifier key.
    """
    shape = _shape(bundle)
    register = None if register_key is None else _authority(register_key, "register key")
    operators: dict[str, tuple[bytes, Ed25519PublicKey]] = {}
    for origin, raw in (operator_keys or {}).items():
        operators[origin] = _authority(raw, f"operator key of {origin}")
    witnesses = []
    for i, vkey in enumerate(shape.witnesses):
        try:
            witnesses.append(CosignatureVerifier.from_vkey(vkey))
        except LedgerError as e:
            raise BundleError(f"witnesses[{i}]", f"is not a cosigner key: {e}") from e
    if pinned_witnesses is not None:
        allowed = {w.strip() for w in pinned_witnesses}
        for i, vkey in enumerate(shape.witnesses):
            if vkey.strip() not in allowed:
                raise BundleError(f"witnesses[{i}]", f"{witnesses[i].name} is not a pinned witness")
    k = (1 if witnesses else 0) if min_cosignatures is None else min_cosignatures
    if not 0 <= k <= len(witnesses):
        raise BundleError(
            "witnesses", f"the policy requires {k} cosignatures; the bundle lists {len(witnesses)}"
        )
    logs = _open_logs(shape, witnesses, k, pinned_vkeys)

    decoded: list[_Decoded] = []
    seen: dict[tuple[str, int], int] = {}
    hashes = 0
    for i, item in enumerate(shape.items):
        place = (item.origin, item.index)
        if place in seen:
            raise BundleError(
                f"entries[{i}]", f"{item.origin}#{item.index} is also entries[{seen[place]}]"
            )
        seen[place] = i
        entry = _decode_entry(i, item, logs)
        statement = _parse_statement(i, entry)
        kind = statement.WhichOneof("body")
        assert kind is not None  # _parse_statement refuses a statement of no kind
        link = _subject_link(entry, shape.subject)
        if link is None and kind not in KEY_KINDS:
            raise BundleError(
                f"entries[{i}]",
                f"{item.origin}#{item.index} ({kind}) is neither about the subject nor "
                "a registration or key rotation of a party",
            )
        decoded.append(_Decoded(i, item.origin, item.index, entry, statement, kind, link))
        hashes += 1 + len(item.proof)
    # The chain is cheap: check it before the signatures, which are not.
    _check_chain(shape.subject, decoded)
    keys, names = _party_keys(decoded)

    audited: list[AuditedEntry] = []
    verified = attested = 0
    for n, d in enumerate(decoded):
        where = f"{d.origin}#{d.index}"
        message = SIGNING_PREFIX + d.entry.statement
        checks = []
        for j, signature in enumerate(d.entry.signatures):
            what = f"entries[{d.position}].leaf.signatures[{j}]"
            signer = signature.signer
            key: Ed25519PublicKey | None
            if _PARTY_ID.fullmatch(signer):
                party_keys = keys.get(signer)
                if party_keys is None:
                    raise BundleError(
                        what,
                        f"{where}: signature by party {signer}: "
                        f"the bundle holds no registration of {signer}",
                    )
                key, how = party_keys.get(signature.key_fingerprint), PARTY_KEY
                if key is None:
                    raise BundleError(
                        what,
                        f"{where}: signature by party {signer} names a key the bundle "
                        f"does not prove is {signer}'s",
                    )
            else:
                if signer == REGISTER:
                    authority, how = register, REGISTER_KEY
                elif signer.startswith(OPERATOR_PREFIX):
                    authority, how = operators.get(signer[len(OPERATOR_PREFIX) :]), OPERATOR_KEY
                else:
                    raise BundleError(
                        what, f"{where}: signer {signer!r} is no party, register or operator"
                    )
                if authority is None:
                    checks.append(CheckedSignature(signer, ATTESTED))
                    attested += 1
                    continue
                fingerprint, key = authority
                if not hmac.compare_digest(fingerprint, signature.key_fingerprint):
                    raise BundleError(what, f"{where}: signature by {signer} names another key")
            try:
                key.verify(signature.signature, message)
            except InvalidSignature:
                raise BundleError(what, f"{where}: signature by {signer} does not verify") from None
            checks.append(CheckedSignature(signer, how))
            verified += 1
        if d.kind == "party_key_rotated":
            _check_rotation(d, keys)
        at = d.entry.sequenced_at
        audited.append(
            AuditedEntry(
                d.position,
                d.origin,
                d.index,
                d.entry,
                d.statement,
                d.kind,
                statement_id(d.entry.statement),
                dt.datetime.fromtimestamp(at.seconds + at.nanos / 1e9, dt.UTC),
                tuple(checks),
                d.link is not None,
            )
        )
        if progress is not None and (n + 1) % _PROGRESS_EVERY == 0:
            progress(n + 1)
    if progress is not None:
        progress(len(decoded))

    about_count = sum(1 for e in audited if e.about_subject)
    return VerifiedBundle(
        shape.subject,
        logs,
        tuple(w.name for w in witnesses),
        k,
        tuple(audited),
        names,
        Counts(len(audited), about_count, len(audited) - about_count, verified, attested, hashes),
    )


# -- the report -------------------------------------------------------------


@dataclass(frozen=True)
class TimelineRow:
    """One entry about the subject, as a person reads it."""

    sequenced_at: dt.datetime  # China time (UTC+8)
    place: str  # origin#index
    kind: str
    description: str
    signed: tuple[str, ...]  # "<who> (verified, <which key>)" or "<who> (attested …)"

    def line(self) -> str:
        """The row as one line of text."""
        when = self.sequenced_at.strftime("%Y-%m-%d %H:%M:%S")
        signed = "; ".join(self.signed) or "no signature"
        # The description starts with the kind in words: the field name would repeat it.
        return f"{when} UTC+8  {self.place}  {self.description}; signed by {signed}"


def _label(enum: Any, value: int, prefix: str) -> str:
    try:
        name: str = enum.Name(value)
    except ValueError:
        return str(value)
    return name.removeprefix(prefix).replace("_", " ").lower()


def money(m: pb.Money) -> str:
    """``20,000.00 CNY`` from minor units and the currency's exponent."""
    try:
        exponent = Currency(m.currency).exponent or 0
    except ValueError:
        exponent = 2
    if exponent == 0:
        return f"{m.amount_minor:,} {m.currency}"
    units, minor = divmod(m.amount_minor, 10**exponent)
    return f"{units:,}.{minor:0{exponent}d} {m.currency}"


def _date(d: pb.Date) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def _running(r: pb.RunningRoyalty) -> str:
    if r.basis == pb.ROYALTY_BASIS_UNITS:
        return f"running royalty {money(r.per_unit)} per unit"
    basis = _label(pb.RoyaltyBasis, r.basis, "ROYALTY_BASIS_")
    return f"running royalty {r.rate_basis_points / 100:.2f}% of {basis}"


def terms(t: pb.RoyaltyTerms) -> str:
    """Royalty terms in words, e.g. ``lump sum 20,000.00 CNY``."""
    method = t.WhichOneof("method")
    if method == "lump_sum":
        return f"lump sum {money(t.lump_sum)}"
    if method == "instalments":
        plan = t.instalments.instalments
        total = pb.Money(
            amount_minor=sum(i.amount.amount_minor for i in plan),
            currency=plan[0].amount.currency if plan else "",
        )
        return f"{len(plan)} instalments totalling {money(total)}"
    if method == "running":
        return _running(t.running)
    if method == "entry_fee_and_royalty":
        both = t.entry_fee_and_royalty
        return f"entry fee {money(both.entry_fee)} and {_running(both.royalty)}"
    if method == "free":
        return "royalty-free"
    return "no terms"


class _Describer:
    """Words for each statement kind; names parties and the statements they refer to."""

    def __init__(self, verified: VerifiedBundle) -> None:
        self.names = verified.party_names
        self.places = {e.statement_id: f"{e.origin}#{e.index}" for e in verified.entries}

    def who(self, party: str) -> str:
        name = self.names.get(party)
        return f"{name} ({party})" if name else party

    def whom(self, parties: Iterable[str]) -> str:
        return ", ".join(self.who(p) for p in parties)

    def ref(self, sid: bytes, what: str) -> str:
        place = self.places.get(sid)
        return f"{what} {place}" if place else f"{what} {sid.hex()[:16]}…"

    def describe(self, s: pb.Statement) -> str:
        kind = s.WhichOneof("body")
        if kind == "party_registered":
            m = s.party_registered
            what = _label(pb.PartyKind, m.kind, "PARTY_KIND_")
            return f"party registered: {m.name} ({what}, region {m.region}), id {m.party_id}"
        if kind == "party_key_rotated":
            m2 = s.party_key_rotated
            fingerprint = hashlib.sha256(m2.new_public_key).hexdigest()[:16]
            return f"key rotated by {self.who(m2.party_id)}: new key {fingerprint}…"
        if kind == "role_granted":
            m3 = s.role_granted
            return f"role granted: {self.who(m3.party_id)} as {_label(pb.Role, m3.role, 'ROLE_')}"
        if kind == "patent_recorded":
            p = s.patent_recorded
            status = _label(pb.PatentStatus, p.status, "PATENT_STATUS_")
            return (
                f"patent recorded: {p.application_number} “{p.title}”, owned by "
                f"{self.whom(p.owners)}, {status}, expires {_date(p.expiry_date)}"
            )
        if kind == "patent_status_changed":
            c = s.patent_status_changed
            change = _label(pb.StatusChange, c.change, "STATUS_CHANGE_")
            return f"status changed: {change}, effective {_date(c.effective_date)}"
        if kind == "offer_published":
            o = s.offer_published
            return f"offer published: {terms(o.terms)}, {o.licence_term_months} months"
        if kind == "offer_withdrawn":
            w = s.offer_withdrawn
            return f"offer withdrawn ({self.ref(w.offer_id, 'offer')}): {w.reason or 'no reason'}"
        if kind == "license_accepted":
            a = s.license_accepted
            paid = f", paid {money(a.payment.amount)}" if a.HasField("payment") else ""
            return (
                f"licence accepted by {self.who(a.licensee)} (start {_date(a.start_date)}"
                f"{paid}; {self.ref(a.offer_id, 'offer')}, {terms(a.terms)})"
            )
        if kind == "license_recorded":
            r = s.license_recorded
            return (
                f"licence recorded ({self.ref(r.license_id, 'licence')}): recordal "
                f"{r.recordal_number} on {_date(r.recorded_on)}"
            )
        if kind == "license_granted":
            g = s.license_granted
            scope = _label(pb.LicenseType, g.type, "LICENSE_TYPE_")
            return (
                f"{scope} licence granted to {self.who(g.licensee)} by {self.whom(g.licensors)} "
                f"({_date(g.start_date)} to {_date(g.end_date)}, {terms(g.terms)})"
            )
        if kind == "transfer_registered":
            t = s.transfer_registered
            price = f" for {money(t.price)}" if t.HasField("price") else ""
            return f"transfer to {self.whom(t.assignees)} from {self.whom(t.assignors)}{price}"
        if kind == "pledge_registered":
            g2 = s.pledge_registered
            return (
                f"pledge registered: pledgee {self.who(g2.pledgee)}, secures "
                f"{money(g2.secured_amount)} until {_date(g2.debt_end)}"
            )
        if kind == "pledge_released":
            r2 = s.pledge_released
            return f"pledge released ({self.ref(r2.pledge_id, 'pledge')}): {r2.reason}"
        if kind == "dispute_filed":
            d = s.dispute_filed
            about = _label(pb.DisputeKind, d.kind, "DISPUTE_KIND_")
            return (
                f"dispute filed by {self.who(d.claimant)} against {self.whom(d.respondents)} "
                f"({about}, about {self.ref(d.subject_id, 'entry')}): {d.summary}"
            )
        if kind == "mediation_recorded":
            m4 = s.mediation_recorded
            outcome = _label(pb.MediationOutcome, m4.outcome, "MEDIATION_OUTCOME_")
            return (
                f"mediation: {outcome} (mediator {self.who(m4.mediator)}, "
                f"{self.ref(m4.dispute_id, 'dispute')}): {m4.summary}"
            )
        if kind == "credit_event_recorded":
            e = s.credit_event_recorded
            what = _label(pb.CreditEventKind, e.kind, "CREDIT_EVENT_KIND_")
            return (
                f"credit event: {what} by {self.who(e.party_id)}, recorded by supervisor "
                f"{self.who(e.supervisor)}: {e.summary}"
            )
        if kind == "credit_event_repaired":
            e2 = s.credit_event_repaired
            return (
                f"credit event repaired ({self.ref(e2.event_id, 'event')}) by supervisor "
                f"{self.who(e2.supervisor)}: {e2.summary}"
            )
        return str(kind)


def timeline(verified: VerifiedBundle) -> list[TimelineRow]:
    """One row per entry about the subject, in log order."""
    words = _Describer(verified)
    return [
        TimelineRow(
            e.sequenced_at.astimezone(CHINA_TIME),
            f"{e.origin}#{e.index}",
            e.kind,
            words.describe(e.statement),
            tuple(
                f"{words.who(s.signer) if _PARTY_ID.fullmatch(s.signer) else s.signer} "
                + (f"(verified, {s.how})" if s.verified else f"({s.how}, not verified)")
                for s in e.signatures
            ),
        )
        for e in verified.subject_entries
    ]


def report(verified: VerifiedBundle) -> list[str]:
    """The verified bundle as lines of text: what was checked, then the subject's timeline."""
    kind, value = verified.subject
    counts = verified.counts
    lines = [
        f"Audit bundle of {kind} {value}: verified.",
        f"{counts.subject_entries} entries about it, {counts.key_entries} registrations and "
        f"key rotations of the parties that signed; {counts.signatures_verified} signatures "
        f"verified, {counts.proof_hashes} hashes checked.",
    ]
    for log in verified.logs.values():
        cosigned = ", ".join(log.cosigned_by) or "no witness"
        key = "its pinned key" if log.pinned else "the key the bundle states, not pinned"
        lines.append(
            f"Log {log.origin}: checkpoint of size {log.checkpoint.size} signed with {key}, "
            f"cosigned by {cosigned} (policy: {verified.min_cosignatures} of "
            f"{len(verified.witnesses)} witnesses)."
        )
    lines += [row.line() for row in timeline(verified)]
    if counts.signatures_attested:
        lines.append(
            f"{counts.signatures_attested} signature(s) by the register or an operator were not "
            "checked with their keys (none was given): attested by the log that admitted them."
        )
    return lines
