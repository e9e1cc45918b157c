"""The rules for statements about parties: registration, keys, roles, credit records.

Pure, like :mod:`exchange.rules`: :func:`check` refuses what may not be
sequenced, :func:`apply` returns the party's next :class:`PartyState`.

Who may sign: a party registers itself (with the key it registers); a key
rotation is signed by the old and the new key; roles are granted by an
exchange operator's key, never by the party itself; credit events are
recorded and repaired by a party holding the supervisor role, with evidence
in the ledger (CNIPA IP Credit Management Provisions).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from exchange.errors import RuleViolationError, SignerError
from exchange.statements import key_fingerprint
from kaifang.exchange.v1 import statements_pb2 as pb

OPERATOR_PREFIX = "operator:"
CREDIT_PROVISIONS = "CNIPA IP Credit Management Provisions"
REGISTRATION = "Kaifang network rules: parties sign for themselves"


@dataclass(frozen=True)
class PartyState:
    """What the ledger knows about one party."""

    party_id: str
    name: str
    kind: pb.PartyKind.ValueType
    public_key: bytes  # the key in force; earlier ones are refused
    roles: frozenset[pb.Role.ValueType] = frozenset()
    credit_events: frozenset[bytes] = frozenset()  # ids of events not repaired

    def has_role(self, role: pb.Role.ValueType) -> bool:
        """Whether an operator granted the party ``role``."""
        return role in self.roles


@dataclass(frozen=True)
class Signed:
    """A signature that verified: who signed, and with which key (fingerprint)."""

    signer: str
    fingerprint: bytes


def _signed_by(signatures: frozenset[Signed], signer: str, public_key: bytes) -> bool:
    return Signed(signer, key_fingerprint(public_key)) in signatures


def check(
    state: PartyState | None,
    statement: pb.Statement,
    signatures: frozenset[Signed],
    supervisor: PartyState | None = None,
) -> None:
    """Refuse a party-scoped ``statement`` that the rules do not allow.

    ``state`` is the subject party's state (None if unregistered);
    ``supervisor`` the signing supervisor's state for credit events.
    """
    kind = statement.WhichOneof("body")
    if kind == "party_registered":
        registered = statement.party_registered
        if state is not None:
            raise RuleViolationError(
                "PARTY_ALREADY_REGISTERED", "party_registered.party_id",
                "the party is already registered", REGISTRATION,
            )  # fmt: skip
        if not _signed_by(signatures, registered.party_id, registered.public_key):
            raise SignerError(
                frozenset({registered.party_id}), "a party registers itself", REGISTRATION
            )
        return
    if state is None:
        if kind == "credit_event_repaired":  # found through the event: the event is unknown
            raise RuleViolationError(
                "CREDIT_EVENT_UNKNOWN", "credit_event_repaired.event_id",
                "no such credit event is recorded", CREDIT_PROVISIONS,
            )  # fmt: skip
        raise RuleViolationError(
            "PARTY_UNKNOWN", f"{kind}.party_id", "no such party is registered", REGISTRATION
        )
    if kind == "party_key_rotated":
        new = statement.party_key_rotated.new_public_key
        if not _signed_by(signatures, state.party_id, state.public_key):
            raise SignerError(
                frozenset({state.party_id}), "the current key must sign", REGISTRATION
            )
        if not _signed_by(signatures, state.party_id, new):
            raise SignerError(
                frozenset({state.party_id}), "the new key must sign too", REGISTRATION
            )
    elif kind == "role_granted":
        operators = {s.signer for s in signatures if s.signer.startswith(OPERATOR_PREFIX)}
        if not operators:
            raise SignerError(
                frozenset({OPERATOR_PREFIX + "*"}),
                "roles are granted by an exchange operator; nobody appoints themself",
                REGISTRATION,
            )
    elif kind in ("credit_event_recorded", "credit_event_repaired"):
        body = getattr(statement, kind)
        if supervisor is None or not supervisor.has_role(pb.ROLE_SUPERVISOR):
            raise RuleViolationError(
                "NOT_A_SUPERVISOR", f"{kind}.supervisor",
                "only a party granted the supervisor role records credit events",
                CREDIT_PROVISIONS,
            )  # fmt: skip
        if not _signed_by(signatures, supervisor.party_id, supervisor.public_key):
            raise SignerError(
                frozenset({body.supervisor}), "the supervisor signs", CREDIT_PROVISIONS
            )
        if kind == "credit_event_repaired" and body.event_id not in state.credit_events:
            raise RuleViolationError(
                "CREDIT_EVENT_UNKNOWN", "credit_event_repaired.event_id",
                "no such unrepaired event on this party's record", CREDIT_PROVISIONS,
            )  # fmt: skip


def apply(state: PartyState | None, statement: pb.Statement, statement_id: bytes) -> PartyState:
    """Return the party's state after ``statement`` (accepted by :func:`check`) is sequenced."""
    kind = statement.WhichOneof("body")
    if kind == "party_registered":
        r = statement.party_registered
        return PartyState(r.party_id, r.name, r.kind, r.public_key)
    assert state is not None, "check() refuses statements about unregistered parties"
    if kind == "party_key_rotated":
        return replace(state, public_key=statement.party_key_rotated.new_public_key)
    if kind == "role_granted":
        return replace(state, roles=state.roles | {statement.role_granted.role})
    if kind == "credit_event_recorded":
        return replace(state, credit_events=state.credit_events | {statement_id})
    if kind == "credit_event_repaired":
        event = statement.credit_event_repaired.event_id
        return replace(state, credit_events=state.credit_events - {event})
    return state
