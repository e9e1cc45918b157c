"""What a client trusts, and the checks it runs before it believes a server.

Pure: a :class:`Trust` holds the log verifier keys (one or more per
origin), the witnesses' cosigner keys and the witness policy (at least ``k`` of them must
have cosigned a checkpoint); the functions here check receipts, checkpoints
and histories against it and return parsed values, or raise a typed
:class:`~clients.errors.VerificationError`. They never return a bool: a
caller cannot forget to look at the answer.

Where the keys come from: a network file (``Trust.from_network``) lists
every member's log key, witness key and the register authority's key; a
single node's log key is printed by ``kaifang ledger vkey``. A client with
no key for an origin refuses that origin's receipts rather than trusting
them on first use.

**Log key rotation.** A log may have several keys, all named after its
origin: while it rotates its key, it signs each checkpoint with the current
and the next key; afterwards with the new key alone. A client that trusts
any one of an origin's keys accepts checkpoints that key signed; one that
trusts several accepts a checkpoint signed by any of them and rejects one
carrying a bad signature by any of them (C2SP signed-note). ``Trust.logs``
holds each origin's current key and ``Trust.other_log_keys`` the others (a
network file's ``other_vkeys``, or further ``--vkey`` values of one origin).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clients.errors import (
    CheckpointVerificationError,
    ReceiptVerificationError,
    VerificationError,
    WitnessPolicyError,
)
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger import merkle
from ledger.checkpoint import Checkpoint, parse_checkpoint
from ledger.cosignature import CosignatureVerifier
from ledger.errors import LedgerError
from ledger.note import Verifier, open_note
from ledger.receipt import Receipt, parse_receipt


@dataclass(frozen=True)
class Witnessed:
    """A checkpoint that verified, and the trusted witnesses that cosigned it."""

    checkpoint: Checkpoint
    witnesses: tuple[str, ...]  # the names of the witnesses whose cosignatures verified
    # The verifier keys of the log's keys whose signatures verified (several
    # while the log rotates its key), in the note's order.
    log_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Trust:
    """The keys a client believes, and how many witnesses must cosign a checkpoint.

    ``logs`` maps an origin to its log's C2SP verifier key, and
    ``other_log_keys`` an origin to its log's other keys, if it has any (a
    key rotation): a checkpoint signed by any of them is the log's.
    ``witnesses`` are C2SP cosigner verifier keys (type 0x04);
    ``min_cosignatures`` is k of the k-of-n witness policy (0: the log's
    signature suffices).
    ``register_public_key`` and ``operator_keys`` (origin → raw Ed25519 key)
    let the register's and operators' statement signatures be checked too.
    """

    logs: Mapping[str, Verifier] = field(default_factory=dict)
    witnesses: tuple[CosignatureVerifier, ...] = ()
    min_cosignatures: int = 0
    register_public_key: bytes | None = None
    operator_keys: Mapping[str, bytes] = field(default_factory=dict)
    other_log_keys: Mapping[str, tuple[Verifier, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.min_cosignatures <= len(self.witnesses):
            raise ValueError(
                f"witness policy {self.min_cosignatures} of {len(self.witnesses)} cannot be met"
            )
        for origin in self.other_log_keys:
            if origin not in self.logs:
                raise ValueError(f"log {origin!r} has other keys but no current key")

    @classmethod
    def from_keys(
        cls,
        vkeys: Iterable[str] = (),
        witnesses: Iterable[str] = (),
        min_cosignatures: int | None = None,
    ) -> Trust:
        """Trust the logs of ``vkeys`` and the cosigners ``witnesses``.

        Several keys with one name are keys of one log (a key rotation): the
        first is its current key, the others go to ``other_log_keys``.
        ``min_cosignatures`` defaults to 0; raises ``ValueError`` for a
        malformed key (the message names it) or an impossible policy.
        """
        logs: dict[str, Verifier] = {}
        others: dict[str, tuple[Verifier, ...]] = {}
        for vkey in vkeys:
            try:
                verifier = Verifier.from_vkey(vkey)
            except LedgerError as e:
                raise ValueError(f"log verifier key {vkey!r}: {e}") from e
            known = logs.get(verifier.name)
            if known is None:
                logs[verifier.name] = verifier
            elif all(v.key_id != verifier.key_id for v in (known, *others.get(known.name, ()))):
                others[verifier.name] = (*others.get(verifier.name, ()), verifier)
        cosigners = []
        for vkey in witnesses:
            try:
                cosigners.append(CosignatureVerifier.from_vkey(vkey))
            except LedgerError as e:
                raise ValueError(f"witness key {vkey!r}: {e}") from e
        return cls(logs, tuple(cosigners), min_cosignatures or 0, other_log_keys=others)

    @classmethod
    def from_network(cls, path: Path, min_cosignatures: int | None = None) -> Trust:
        """Trust every member of the network file at ``path``.

        The witness policy defaults to a majority of the members' witnesses
        other than the origin itself (a log does not witness its own
        checkpoints): ``(n - 1) // 2 + 1`` of them, or 0 if there is no other.
        Raises :class:`~exchange.config.ConfigError` for a bad file.
        """
        from exchange.network import load_network  # the network module pulls in grpc

        network = load_network(path)
        witnesses = tuple(
            CosignatureVerifier.from_vkey(m.witness_vkey) for m in network.members if m.witness_vkey
        )
        others = max(len(witnesses) - 1, 0)
        k = (others // 2 + 1 if others else 0) if min_cosignatures is None else min_cosignatures
        return cls(
            logs={m.name: m.verifier() for m in network.members},
            other_log_keys={m.name: m.verifiers()[1:] for m in network.members if m.other_vkeys},
            witnesses=witnesses,
            min_cosignatures=k,
            register_public_key=network.register_public_key,
            operator_keys={m.name: m.operator_public_key for m in network.members},
        )

    def log(self, origin: str) -> Verifier:
        """The current key of ``origin``'s log; :class:`CheckpointVerificationError` if unknown."""
        try:
            return self.logs[origin]
        except KeyError:
            raise CheckpointVerificationError(
                f"no verifier key is configured for log {origin!r}; "
                f"known: {', '.join(sorted(self.logs)) or 'none'}"
            ) from None

    def log_keys(self, origin: str) -> tuple[Verifier, ...]:
        """Every key of ``origin``'s log, the current one first.

        Raises :class:`CheckpointVerificationError` if the origin is unknown.
        """
        return (self.log(origin), *self.other_log_keys.get(origin, ()))

    def vkeys(self) -> dict[str, tuple[str, ...]]:
        """Every origin's log keys as verifier key strings, the current one first.

        What :func:`clients.audit.build_bundle` and the ``pinned_vkeys`` of
        :func:`clients.audit.verify_bundle` take.
        """
        return {o: tuple(v.verifier_key() for v in self.log_keys(o)) for o in self.logs}


def open_witnessed(
    note: str,
    log: Verifier | Sequence[Verifier],
    witnesses: Sequence[CosignatureVerifier],
    min_cosignatures: int,
    *,
    origin: str | None = None,
) -> Witnessed:
    """Verify a checkpoint signed by ``log`` and cosigned by at least k ``witnesses``.

    ``log`` is the log's key, or its keys (a key rotation): a valid signature
    by at least one of them is required. A signature by a listed log key or
    witness that does not verify rejects the note (C2SP signed-note rule);
    signatures by keys not listed are ignored. The origin must be ``origin``
    (default: the (first) log key's name).

    Raises :class:`CheckpointVerificationError` if the log's signature or the
    body fails, :class:`WitnessPolicyError` if fewer than
    ``min_cosignatures`` listed witnesses cosigned.
    """
    keys = (log,) if isinstance(log, Verifier) else tuple(log)
    if not keys:
        raise CheckpointVerificationError("no key of the log to verify its checkpoint with")
    name = keys[0].name
    # Each key once; a witness whose key is also the log's (same name and id)
    # would count the log's own signature as a cosignature: leave it out.
    ids = {(k.name, k.key_id): k for k in keys}
    keys = tuple(ids.values())
    cosigners = [w for w in witnesses if (w.name, w.key_id) not in ids]
    try:
        parsed, verified = open_note(note, [*keys, *cosigners])
    except (LedgerError, ValueError) as e:
        raise CheckpointVerificationError(f"checkpoint of {name}: {e}") from e
    signed_by = tuple(v for v in verified if any(v is k for k in keys))
    if not signed_by:
        raise CheckpointVerificationError(f"checkpoint is not signed by the log key {name}")
    try:
        checkpoint = parse_checkpoint(parsed.text)
    except LedgerError as e:
        raise CheckpointVerificationError(f"checkpoint of {name}: {e}") from e
    expected = name if origin is None else origin
    if checkpoint.origin != expected:
        raise CheckpointVerificationError(
            f"checkpoint origin {checkpoint.origin!r} is not {expected!r}"
        )
    names = tuple(v.name for v in verified if not any(v is k for k in keys))
    if len(names) < min_cosignatures:
        raise WitnessPolicyError(
            f"checkpoint {checkpoint.origin} size {checkpoint.size} is cosigned by "
            f"{len(names)} trusted witness(es) ({', '.join(names) or 'none'}); "
            f"the policy requires {min_cosignatures} of {len(witnesses)}"
        )
    log_keys = tuple(k.verifier_key() for k in signed_by if isinstance(k, Verifier))
    return Witnessed(checkpoint, names, log_keys)


def verify_checkpoint(trust: Trust, note: str, origin: str, *, witnessed: bool = True) -> Witnessed:
    """Verify ``origin``'s checkpoint under ``trust``, with its witness policy if ``witnessed``."""
    k = trust.min_cosignatures if witnessed else 0
    return open_witnessed(note, trust.log_keys(origin), trust.witnesses, k)


def verify_inclusion(
    leaf: bytes, index: int, proof: Sequence[bytes], checkpoint: Checkpoint
) -> None:
    """Check that ``leaf`` is entry ``index`` of ``checkpoint``'s tree.

    Raises :class:`ReceiptVerificationError` naming the entry if the proof fails.
    """
    try:
        merkle.verify_inclusion(
            merkle.leaf_hash(leaf), index, checkpoint.size, proof, checkpoint.root_hash
        )
    except LedgerError as e:
        raise ReceiptVerificationError(
            f"entry {index} of {checkpoint.origin}: inclusion proof does not verify ({e})"
        ) from e


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt that verified: where the statement is and the checkpoint that proves it."""

    origin: str
    index: int
    entry: pb.LogEntry
    checkpoint: Checkpoint
    receipt: Receipt


def verify_submitted(
    trust: Trust, response: api.SubmitStatementResponse, statement: bytes
) -> VerifiedReceipt:
    """Check a submission's receipt: signed by the origin's key, proving an entry of ``statement``.

    The entry the receipt proves must be a ``LogEntry`` of the same origin
    and index whose statement bytes are ``statement``: a receipt for some
    other entry is refused. The witness policy is not applied here: a new
    entry's checkpoint has not been cosigned yet (histories and audit
    bundles are checked against it).
    """
    origin = response.origin
    try:
        receipt = parse_receipt(response.receipt)
    except LedgerError as e:
        raise ReceiptVerificationError(f"receipt from {origin}: {e}") from e
    if receipt.extra is None:
        raise ReceiptVerificationError(f"receipt from {origin} does not carry its entry")
    if receipt.index != response.index:
        raise ReceiptVerificationError(
            f"receipt proves entry {receipt.index}, the response says {response.index}"
        )
    witnessed = verify_checkpoint(trust, receipt.checkpoint_note, origin, witnessed=False)
    verify_inclusion(receipt.extra, receipt.index, receipt.proof, witnessed.checkpoint)
    entry = pb.LogEntry()
    try:
        entry.ParseFromString(receipt.extra)
    except Exception as e:  # protobuf raises DecodeError, a bare Exception subclass
        raise ReceiptVerificationError(f"entry {receipt.index} is not a LogEntry: {e}") from e
    if entry.origin != origin or entry.statement != statement:
        raise ReceiptVerificationError(
            f"the receipt proves entry {receipt.index} of {origin}, which is not this statement"
        )
    if hashlib.sha256(statement).digest() != response.statement_id:
        raise ReceiptVerificationError("the statement id returned is not this statement's")
    return VerifiedReceipt(origin, receipt.index, entry, witnessed.checkpoint, receipt)


@dataclass(frozen=True)
class VerifiedEntry:
    """One history entry whose inclusion proof verified."""

    index: int
    data: bytes  # the LogEntry bytes, verbatim
    entry: pb.LogEntry
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class VerifiedHistory:
    """A subject's history whose checkpoint and every inclusion proof verified."""

    origin: str
    note: str  # the checkpoint as served, cosignatures included
    witnessed: Witnessed
    entries: tuple[VerifiedEntry, ...]


def verify_history(
    trust: Trust, response: api.GetHistoryResponse, *, witnessed: bool = True
) -> VerifiedHistory:
    """Check a history: its checkpoint under ``trust`` (and its policy if ``witnessed``), every
    inclusion proof, every entry's origin.

    Raises :class:`VerificationError` (a subclass) naming the first failure.
    """
    witnessed_cp = verify_checkpoint(
        trust, response.checkpoint, response.origin, witnessed=witnessed
    )
    entries = []
    previous = -1
    for item in response.entries:
        if item.index <= previous:
            raise VerificationError(f"history entries are not in log order at {item.index}")
        previous = item.index
        verify_inclusion(item.entry, item.index, item.proof, witnessed_cp.checkpoint)
        entry = pb.LogEntry()
        try:
            entry.ParseFromString(item.entry)
        except Exception as e:  # DecodeError
            raise VerificationError(f"entry {item.index} is not a LogEntry: {e}") from e
        if entry.origin != response.origin:
            raise VerificationError(
                f"entry {item.index} names origin {entry.origin!r}, not {response.origin!r}"
            )
        entries.append(VerifiedEntry(item.index, item.entry, entry, tuple(item.proof)))
    return VerifiedHistory(response.origin, response.checkpoint, witnessed_cp, tuple(entries))
