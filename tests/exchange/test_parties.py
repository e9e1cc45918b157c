"""Party rules, both ways: registration, key rotation, roles, credit events."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.errors import RuleViolationError, SignerError
from exchange.parties import PartyState, Signed, apply, check
from exchange.statements import key_fingerprint, party_id_for
from kaifang.exchange.v1 import statements_pb2 as pb


def key() -> bytes:
    return Ed25519PrivateKey.generate().public_key().public_bytes_raw()


OLD, NEW, BOSS = key(), key(), key()
PARTY = party_id_for(OLD)
SUPERVISOR = party_id_for(BOSS)


def signed(signer: str, public: bytes) -> Signed:
    return Signed(signer, key_fingerprint(public))


def stmt(**body: object) -> pb.Statement:
    return pb.Statement(nonce=b"n" * 16, **body)  # type: ignore[arg-type]


def registration(public: bytes = OLD) -> pb.Statement:
    return stmt(
        party_registered=pb.PartyRegistered(
            party_id=party_id_for(public), name="Acme", kind=pb.PARTY_KIND_ENTERPRISE,
            identity_code="91350100M000100Y43", public_key=public, region="350100",
        )
    )  # fmt: skip


def registered(public: bytes = OLD) -> PartyState:
    statement = registration(public)
    check(None, statement, frozenset({signed(party_id_for(public), public)}))
    return apply(None, statement, b"id")


def test_a_party_registers_itself_with_its_own_key() -> None:
    with pytest.raises(SignerError):
        check(None, registration(), frozenset({signed(PARTY, NEW)}))
    state = registered()
    assert state.public_key == OLD
    with pytest.raises(RuleViolationError, match="PARTY_ALREADY_REGISTERED"):
        check(state, registration(), frozenset({signed(PARTY, OLD)}))


def test_key_rotation_needs_old_and_new_key_and_retires_the_old() -> None:
    state = registered()
    rotation = stmt(party_key_rotated=pb.PartyKeyRotated(party_id=PARTY, new_public_key=NEW))
    with pytest.raises(SignerError, match="new key"):
        check(state, rotation, frozenset({signed(PARTY, OLD)}))
    with pytest.raises(SignerError, match="current key"):
        check(state, rotation, frozenset({signed(PARTY, NEW)}))
    check(state, rotation, frozenset({signed(PARTY, OLD), signed(PARTY, NEW)}))
    rotated = apply(state, rotation, b"r")
    assert rotated.public_key == NEW
    # The revoked key can no longer rotate (or sign anything for the party).
    again = stmt(party_key_rotated=pb.PartyKeyRotated(party_id=PARTY, new_public_key=key()))
    with pytest.raises(SignerError):
        check(rotated, again, frozenset({signed(PARTY, OLD)}))


def test_nobody_appoints_themself() -> None:
    state = registered()
    grant = stmt(role_granted=pb.RoleGranted(party_id=PARTY, role=pb.ROLE_MEDIATOR))
    with pytest.raises(SignerError, match="nobody appoints themself"):
        check(state, grant, frozenset({signed(PARTY, OLD)}))
    check(state, grant, frozenset({signed("operator:east.example/log", key())}))
    assert apply(state, grant, b"g").has_role(pb.ROLE_MEDIATOR)


def _event(supervisor: str = SUPERVISOR) -> pb.Statement:
    return stmt(
        credit_event_recorded=pb.CreditEventRecorded(
            party_id=PARTY, kind=pb.CREDIT_EVENT_KIND_PAYMENT_DEFAULT, supervisor=supervisor,
            evidence=[pb.EntryReference(origin="east.example/log", index=3)],
            summary="unpaid", occurred_on=pb.Date(year=2026, month=10, day=1),
        )
    )  # fmt: skip


def test_only_a_granted_supervisor_records_and_repairs_credit_events() -> None:
    party = registered()
    boss = registered(BOSS)
    event = _event()
    with pytest.raises(RuleViolationError, match="NOT_A_SUPERVISOR"):
        check(party, event, frozenset({signed(SUPERVISOR, BOSS)}), supervisor=boss)
    boss = apply(
        boss, stmt(role_granted=pb.RoleGranted(party_id=SUPERVISOR, role=pb.ROLE_SUPERVISOR)), b""
    )
    with pytest.raises(SignerError):
        check(party, event, frozenset({signed(SUPERVISOR, OLD)}), supervisor=boss)
    check(party, event, frozenset({signed(SUPERVISOR, BOSS)}), supervisor=boss)
    party = apply(party, event, b"e" * 32)
    repair = stmt(
        credit_event_repaired=pb.CreditEventRepaired(
            event_id=b"e" * 32, supervisor=SUPERVISOR, summary="paid"
        )
    )
    check(party, repair, frozenset({signed(SUPERVISOR, BOSS)}), supervisor=boss)
    repaired = apply(party, repair, b"x")
    assert repaired.credit_events == frozenset()
    with pytest.raises(RuleViolationError, match="CREDIT_EVENT_UNKNOWN"):
        check(repaired, repair, frozenset({signed(SUPERVISOR, BOSS)}), supervisor=boss)


def test_statements_about_unregistered_parties_are_refused() -> None:
    grant = stmt(role_granted=pb.RoleGranted(party_id=PARTY, role=pb.ROLE_MEDIATOR))
    with pytest.raises(RuleViolationError, match="PARTY_UNKNOWN"):
        check(None, grant, frozenset({signed("operator:x", key())}))
