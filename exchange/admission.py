"""Admission: everything between a client's SignedStatement and the log, as a pure function.

:func:`admit` parses and checks the statement (:mod:`exchange.statements`),
refuses it outside the replay window, verifies every signature against the
key registered for its signer, and applies the legal rules
(:mod:`exchange.rules`, :mod:`exchange.parties`) to the current state, which
it reads through a :class:`World`. It returns what the exchange needs to
sequence the statement: its bytes and id, its kind, the subjects it is
about, and who signed it. It writes nothing: the caller sequences and then
updates the views with ``apply``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from zoneinfo import ZoneInfo

from exchange import parties, rules
from exchange.errors import InvalidFieldError, RuleViolationError, SignatureInvalidError
from exchange.parties import OPERATOR_PREFIX, PartyState, Signed
from exchange.rules import REGISTER, PatentState
from exchange.statements import (
    MAX_IDS,
    check_replay_window,
    check_structure,
    key_fingerprint,
    parse_statement,
    statement_id,
    verify,
)
from kaifang.exchange.v1 import statements_pb2 as pb

# Enough for the largest lawful signer set: every owner, assignee and a pledgee.
MAX_SIGNATURES = 2 * MAX_IDS + 2
# Legal dates (fees paid until, terms) are dates in China.
LEGAL_TIME_ZONE = ZoneInfo("Asia/Shanghai")
# Statements a dispute may be about: transactions between parties.
DISPUTABLE = frozenset(
    {"offer_published", "license_accepted", "license_granted", "transfer_registered",
     "pledge_registered"}
)  # fmt: skip

PATENT_KINDS = frozenset(
    {
        "patent_recorded",
        "patent_status_changed",
        "offer_published",
        "offer_withdrawn",
        "license_accepted",
        "license_granted",
        "transfer_registered",
        "pledge_registered",
        "pledge_released",
        "license_recorded",
    }
)
PARTY_KINDS = frozenset(
    {
        "party_registered",
        "party_key_rotated",
        "role_granted",
        "credit_event_recorded",
        "credit_event_repaired",
    }
)


class Subjects(Protocol):
    """What finding a statement's subject reads: what earlier statements are about."""

    def patent_of(self, statement_id: bytes) -> str | None:
        """The application number of the patent a sequenced statement is about."""

    def party_of_event(self, event_id: bytes) -> str | None:
        """The party whose record holds credit event ``event_id``."""


class World(Subjects, Protocol):
    """What admission reads: the current state, as the views hold it."""

    def register_key(self) -> bytes:
        """The register authority's Ed25519 public key."""

    def operator_key(self, origin: str) -> bytes | None:
        """The Ed25519 public key of the operator of exchange ``origin``, if known."""

    def party(self, party_id: str) -> PartyState | None:
        """The party's state, or None if unregistered."""

    def patent(self, application_number: str) -> PatentState | None:
        """The patent's state, or None if unrecorded."""

    def patent_of(self, statement_id: bytes) -> str | None:
        """The application number of the patent a sequenced statement is about."""

    def kind_of(self, statement_id: bytes) -> str | None:
        """The kind (``offer_published``, …) of a sequenced statement, or None if unknown."""

    def party_of_event(self, event_id: bytes) -> str | None:
        """The party whose record holds credit event ``event_id``."""

    def entry_known(self, origin: str, index: int) -> bool:
        """Whether this node holds entry ``index`` of ``origin``'s log (applied to its views)."""


@dataclass(frozen=True)
class Admitted:
    """A statement that may be sequenced."""

    data: bytes
    statement: pb.Statement
    statement_id: bytes
    kind: str
    patent: str | None  # the patent it is about, if patent-scoped
    party: str | None  # the party it is about, if party-scoped
    signatures: frozenset[Signed]


def _candidate_keys(signer: str, statement: pb.Statement, world: World) -> list[bytes]:
    """The keys that may stand behind ``signer`` on this statement."""
    if signer == REGISTER:
        return [world.register_key()]
    if signer.startswith(OPERATOR_PREFIX):
        key = world.operator_key(signer.removeprefix(OPERATOR_PREFIX))
        return [] if key is None else [key]
    keys: list[bytes] = []
    party = world.party(signer)
    if party is not None:
        keys.append(party.public_key)
    kind = statement.WhichOneof("body")
    if kind == "party_registered" and statement.party_registered.party_id == signer:
        keys.append(statement.party_registered.public_key)  # it signs with the key it registers
    if kind == "party_key_rotated" and statement.party_key_rotated.party_id == signer:
        keys.append(statement.party_key_rotated.new_public_key)
    return keys


def signature_checks(
    signeds: Sequence[pb.SignedStatement], world: World
) -> list[tuple[bytes, pb.Signature, bytes]]:
    """The (statement, signature, key) checks that admitting ``signeds`` now would make.

    Read from the world as it is; admission looks again inside its
    transaction, so a key rotated in between is simply checked then.
    Statements that do not parse are skipped (admission refuses them).
    """
    checks: list[tuple[bytes, pb.Signature, bytes]] = []
    for signed in signeds:
        try:
            statement = parse_statement(signed.statement)
        except InvalidFieldError:
            continue
        for signature in signed.signatures[:MAX_SIGNATURES]:
            for key in _candidate_keys(signature.signer, statement, world):
                if key_fingerprint(key) == signature.key_fingerprint:
                    checks.append((signed.statement, signature, key))
    return checks


def run_signature_checks(checks: Sequence[tuple[bytes, pb.Signature, bytes]]) -> None:
    """Verify each check, remembering those that hold (:data:`statements.VERIFIED`).

    Failures are ignored here: admission meets them again and refuses.
    """
    for statement, signature, key in checks:
        with contextlib.suppress(SignatureInvalidError):
            verify(statement, signature, key)


def verify_signatures(
    data: bytes, statement: pb.Statement, signatures: Sequence[pb.Signature], world: World
) -> frozenset[Signed]:
    """Verify each signature against a key registered for its signer.

    Raises :class:`SignatureInvalidError` for a signature by an unknown signer
    or key (a revoked key included) or one that does not verify: a statement
    carrying a forged signature is refused whole; :class:`InvalidFieldError`
    for a signer's key signing twice.
    """
    if len(signatures) > MAX_SIGNATURES:
        raise InvalidFieldError("signatures", f"{len(signatures)} is more than {MAX_SIGNATURES}")
    verified: set[Signed] = set()
    for i, signature in enumerate(signatures):
        if Signed(signature.signer, signature.key_fingerprint) in verified:
            # A second signature by the same key adds nothing but bytes to the log.
            raise InvalidFieldError(
                f"signatures[{i}]", f"a second signature by {signature.signer[:80]!r}"
            )
        keys = [
            k
            for k in _candidate_keys(signature.signer, statement, world)
            if key_fingerprint(k) == signature.key_fingerprint
        ]
        if not keys:
            raise SignatureInvalidError(
                f"signatures[{i}]: {signature.signer[:80]!r} has no registered key "
                "with that fingerprint (unknown signer, or a key rotated out)"
            )
        verify(data, signature, keys[0])
        verified.add(Signed(signature.signer, signature.key_fingerprint))
    return frozenset(verified)


def _patent_number(statement: pb.Statement, kind: str, world: Subjects) -> str | None:
    body = getattr(statement, kind)
    if getattr(body, "application_number", ""):
        return str(body.application_number)
    for name in ("offer_id", "pledge_id", "license_id", "dispute_id"):
        if hasattr(body, name):
            return world.patent_of(getattr(body, name))
    return None


def subject_of(statement: pb.Statement, world: Subjects) -> tuple[str | None, str | None]:
    """The (patent, party) a statement is about: exactly one of them is set when known."""
    kind = statement.WhichOneof("body")
    assert kind is not None
    if kind in PARTY_KINDS:
        body = getattr(statement, kind)
        if kind == "credit_event_repaired":
            return None, world.party_of_event(body.event_id)
        return None, str(body.party_id)
    return _patent_number(statement, kind, world), None


def _check_evidence(event: pb.CreditEventRecorded, world: World) -> None:
    """A credit event cites entries the network holds: a record must rest on the ledger."""
    for i, reference in enumerate(event.evidence):
        if not world.entry_known(reference.origin, reference.index):
            raise RuleViolationError(
                "EVIDENCE_UNKNOWN", f"credit_event_recorded.evidence[{i}]",
                f"entry {reference.index} of {reference.origin[:200]!r} is not held here",
                parties.CREDIT_PROVISIONS,
            )  # fmt: skip


def admit(
    signed: pb.SignedStatement,
    world: World,
    now: dt.datetime,
    *,
    window: dt.timedelta = dt.timedelta(hours=24),
    skew: dt.timedelta = dt.timedelta(minutes=5),
) -> Admitted:
    """Decide whether ``signed`` may be sequenced now; raise the first reason it may not.

    Raises :class:`InvalidFieldError` (malformed), :class:`SignatureInvalidError`
    or :class:`~exchange.errors.SignerError` (signatures), or
    :class:`~exchange.errors.RuleViolationError` (the law). Dedup is the
    caller's: the same bytes are found by their id before admission.
    """
    data = signed.statement
    statement = parse_statement(data)
    check_structure(statement)
    check_replay_window(statement, now, window, skew)
    signatures = verify_signatures(data, statement, signed.signatures, world)
    kind = statement.WhichOneof("body")
    assert kind is not None  # check_structure refuses an empty body
    sid = statement_id(data)
    names = frozenset(s.signer for s in signatures)
    today = now.astimezone(LEGAL_TIME_ZONE).date()
    if kind in PATENT_KINDS:
        number = _patent_number(statement, kind, world)
        state = world.patent(number) if number else None
        rules.check(state, statement, names, today)
        return Admitted(data, statement, sid, kind, number, None, signatures)
    if kind in PARTY_KINDS:
        body = getattr(statement, kind)
        if kind == "credit_event_repaired":
            party_id = world.party_of_event(body.event_id)
        else:
            party_id = body.party_id
        supervisor = world.party(body.supervisor) if hasattr(body, "supervisor") else None
        if supervisor is not None and supervisor.party_id == party_id:
            raise RuleViolationError(
                "OWN_RECORD", f"{kind}.supervisor",
                "a supervisor acts on other parties' credit records, not their own",
                parties.CREDIT_PROVISIONS,
            )  # fmt: skip
        subject = world.party(party_id) if party_id else None
        parties.check(subject, statement, signatures, supervisor)
        if kind == "credit_event_recorded":
            _check_evidence(statement.credit_event_recorded, world)
        return Admitted(data, statement, sid, kind, None, party_id, signatures)
    if kind == "dispute_filed":
        filed = statement.dispute_filed
        number = filed.application_number
        if world.kind_of(filed.subject_id) not in DISPUTABLE:
            raise RuleViolationError(
                "SUBJECT_UNKNOWN", "dispute_filed.subject_id",
                "a dispute is about an offer, licence, transfer or pledge", rules.ART_52,
            )  # fmt: skip
        if filed.kind == pb.DISPUTE_KIND_OWNERSHIP:
            # Anyone may claim ownership (Regs Art. 103); they must be registered and sign.
            if world.party(filed.claimant) is None:
                raise RuleViolationError(
                    "PARTY_UNKNOWN", "dispute_filed.claimant", "not registered", rules.REGS_103
                )
            rules.require_signed(names, filed.claimant, "the claimant files", rules.REGS_103)
        else:
            state = world.patent(number)
            rules.check_dispute(state, filed, world.patent_of(filed.subject_id), names)
        return Admitted(data, statement, sid, kind, number, None, signatures)
    if kind == "mediation_recorded":
        recorded = statement.mediation_recorded
        known = world.kind_of(recorded.dispute_id) == "dispute_filed"
        mediator = world.party(recorded.mediator)
        is_mediator = mediator is not None and mediator.has_role(pb.ROLE_MEDIATOR)
        rules.check_mediation(is_mediator, recorded, known, names)
        number = world.patent_of(recorded.dispute_id)
        return Admitted(data, statement, sid, kind, number, None, signatures)
    raise InvalidFieldError("body", f"{kind} statements are not admitted")
