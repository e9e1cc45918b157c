"""Statement structure: every kind accepted when well formed, refused field by field otherwise."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.errors import InvalidFieldError, SignatureInvalidError
from exchange.identifiers import application_check_character
from exchange.statements import (
    MAX_STATEMENT_BYTES,
    check_replay_window,
    check_structure,
    parse_statement,
    party_id_for,
    sign,
    statement_id,
    verify,
)
from kaifang.exchange.v1 import statements_pb2 as pb

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes_raw()
ALICE = party_id_for(PUBLIC)
BOB = party_id_for(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
DIGITS = "202310123456"
INVENTION = f"{DIGITS}.{application_check_character(DIGITS)}"
UTILITY = "202320000007.8"
ID = bytes(range(32))


def date(y: int, m: int, d: int) -> pb.Date:
    return pb.Date(year=y, month=m, day=d)


def cny(fen: int) -> pb.Money:
    return pb.Money(amount_minor=fen, currency="CNY")


def lump(fen: int) -> pb.RoyaltyTerms:
    return pb.RoyaltyTerms(lump_sum=cny(fen))


def statement(**body: object) -> pb.Statement:
    s = pb.Statement(nonce=b"n" * 16, **body)  # type: ignore[arg-type]
    s.created_at.FromDatetime(dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    return s


VALID: dict[str, Callable[[], pb.Statement]] = {
    "party_registered": lambda: statement(
        party_registered=pb.PartyRegistered(
            party_id=ALICE, name="Acme", kind=pb.PARTY_KIND_ENTERPRISE,
            identity_code="91350100M000100Y43", public_key=PUBLIC, region="350100",
        )
    ),
    "party_key_rotated": lambda: statement(
        party_key_rotated=pb.PartyKeyRotated(party_id=ALICE, new_public_key=bytes(32))
    ),
    "role_granted": lambda: statement(
        role_granted=pb.RoleGranted(party_id=ALICE, role=pb.ROLE_MEDIATOR)
    ),
    "patent_recorded": lambda: statement(
        patent_recorded=pb.PatentRecorded(
            application_number=INVENTION, title="A method", ipc=["H04L 9/32"], owners=[ALICE],
            filing_date=date(2023, 1, 5), grant_date=date(2025, 3, 1),
            expiry_date=date(2043, 1, 5), status=pb.PATENT_STATUS_IN_FORCE, region="110108",
        )
    ),
    "patent_status_changed": lambda: statement(
        patent_status_changed=pb.PatentStatusChanged(
            application_number=INVENTION, change=pb.STATUS_CHANGE_FEES_PAID,
            effective_date=date(2026, 1, 5), fees_paid_until=date(2027, 1, 4),
        )
    ),
    "offer_published": lambda: statement(
        offer_published=pb.OfferPublished(
            application_number=INVENTION, terms=lump(5_000_000), licence_term_months=36
        )
    ),
    "offer_withdrawn": lambda: statement(offer_withdrawn=pb.OfferWithdrawn(offer_id=ID)),
    "license_accepted": lambda: statement(
        license_accepted=pb.LicenseAccepted(
            offer_id=ID, licensee=BOB, terms=lump(5_000_000), start_date=date(2026, 12, 1),
            payment=pb.Payment(amount=cny(5_000_000), reference="TX1", paid_on=date(2026, 11, 30)),
        )
    ),
    "license_recorded": lambda: statement(
        license_recorded=pb.LicenseRecorded(
            license_id=ID, recordal_number="2026990000123", recorded_on=date(2027, 1, 10)
        )
    ),
    "license_granted": lambda: statement(
        license_granted=pb.LicenseGranted(
            application_number=INVENTION, licensors=[ALICE], licensee=BOB,
            type=pb.LICENSE_TYPE_ORDINARY, start_date=date(2026, 1, 1),
            end_date=date(2028, 12, 31),
            terms=pb.RoyaltyTerms(
                running=pb.RunningRoyalty(basis=pb.ROYALTY_BASIS_SALES, rate_basis_points=250)
            ),
        )
    ),
    "transfer_registered": lambda: statement(
        transfer_registered=pb.TransferRegistered(
            application_number=INVENTION, assignors=[ALICE], assignees=[BOB]
        )
    ),
    "pledge_registered": lambda: statement(
        pledge_registered=pb.PledgeRegistered(
            application_number=INVENTION, pledgors=[ALICE], pledgee=BOB,
            secured_amount=cny(100_000_000), debt_start=date(2026, 1, 1), debt_end=date(2028, 1, 1),
        )
    ),
    "pledge_released": lambda: statement(pledge_released=pb.PledgeReleased(pledge_id=ID)),
    "dispute_filed": lambda: statement(
        dispute_filed=pb.DisputeFiled(
            application_number=INVENTION, subject_id=ID, kind=pb.DISPUTE_KIND_OPEN_LICENSE,
            claimant=BOB, respondents=[ALICE], summary="royalty unpaid",
        )
    ),
    "mediation_recorded": lambda: statement(
        mediation_recorded=pb.MediationRecorded(
            dispute_id=ID, mediator=BOB, outcome=pb.MEDIATION_OUTCOME_AGREEMENT,
            summary="settled", concluded_on=date(2027, 2, 1),
        )
    ),
    "credit_event_recorded": lambda: statement(
        credit_event_recorded=pb.CreditEventRecorded(
            party_id=ALICE, kind=pb.CREDIT_EVENT_KIND_PAYMENT_DEFAULT, supervisor=BOB,
            evidence=[pb.EntryReference(origin="east.example/log", index=7)],
            summary="did not pay", occurred_on=date(2027, 3, 1),
        )
    ),
    "credit_event_repaired": lambda: statement(
        credit_event_repaired=pb.CreditEventRepaired(event_id=ID, supervisor=BOB, summary="paid")
    ),
}  # fmt: skip


def test_every_statement_kind_has_a_valid_example() -> None:
    kinds = {f.name for f in pb.Statement.DESCRIPTOR.oneofs_by_name["body"].fields}
    assert set(VALID) == kinds


@pytest.mark.parametrize("kind", sorted(VALID))
def test_well_formed_statements_pass(kind: str) -> None:
    built = VALID[kind]()
    check_structure(built)
    check_structure(parse_statement(built.SerializeToString()))


def _mutated(kind: str, change: Callable[[pb.Statement], None]) -> pb.Statement:
    built = VALID[kind]()
    change(built)
    return built


@pytest.mark.parametrize(
    ("kind", "change", "field"),
    [
        ("offer_published", lambda s: setattr(s, "nonce", b"short"), "nonce"),
        ("party_registered", lambda s: setattr(s.party_registered, "party_id", BOB),
         "party_registered.party_id"),
        ("party_registered",
         lambda s: setattr(s.party_registered, "identity_code", "91350100M000100Y44"),
         "party_registered.identity_code"),
        ("party_registered", lambda s: setattr(s.party_registered, "kind", 99),
         "party_registered.kind"),
        ("patent_recorded",
         lambda s: setattr(s.patent_recorded, "application_number", "cn" + INVENTION),
         "patent_recorded.application_number"),
        ("patent_recorded", lambda s: s.patent_recorded.ipc.append("H04L9/32"),
         "patent_recorded.ipc[1]"),
        ("patent_recorded", lambda s: s.patent_recorded.owners.append(ALICE),
         "patent_recorded.owners"),
        ("patent_recorded", lambda s: s.patent_recorded.expiry_date.CopyFrom(date(2022, 1, 1)),
         "patent_recorded.expiry_date"),
        ("patent_recorded", lambda s: s.patent_recorded.filing_date.CopyFrom(date(2023, 2, 30)),
         "patent_recorded.filing_date"),
        ("patent_recorded",
         lambda s: setattr(s.patent_recorded, "status", pb.PATENT_STATUS_PENDING),
         "patent_recorded.grant_date"),
        ("patent_recorded", lambda s: s.patent_recorded.ClearField("grant_date"),
         "patent_recorded.grant_date"),
        ("offer_published", lambda s: s.offer_published.terms.lump_sum.CopyFrom(cny(-1)),
         "offer_published.terms.lump_sum.amount_minor"),
        ("offer_published", lambda s: setattr(s.offer_published.terms.lump_sum, "currency", "RMB"),
         "offer_published.terms.lump_sum.currency"),
        ("offer_published", lambda s: s.offer_published.ClearField("terms"),
         "offer_published.terms.method"),
        ("offer_published", lambda s: setattr(s.offer_published, "application_number", UTILITY),
         "offer_published.evaluation_report"),
        ("offer_published", lambda s: setattr(s.offer_published, "licence_term_months", 0),
         "offer_published.licence_term_months"),
        ("license_granted",
         lambda s: setattr(s.license_granted.terms.running, "rate_basis_points", 10001),
         "license_granted.terms.running.rate_basis_points"),
        ("license_granted", lambda s: setattr(s.license_granted, "licensee", ALICE),
         "license_granted.licensee"),
        ("license_accepted", lambda s: setattr(s.license_accepted, "offer_id", b"x"),
         "license_accepted.offer_id"),
        ("pledge_registered", lambda s: s.pledge_registered.debt_end.CopyFrom(date(2025, 1, 1)),
         "pledge_registered.debt_end"),
        ("credit_event_recorded", lambda s: s.credit_event_recorded.ClearField("evidence"),
         "credit_event_recorded.evidence"),
        ("transfer_registered", lambda s: s.transfer_registered.ClearField("assignees"),
         "transfer_registered.assignees"),
    ],
)  # fmt: skip
def test_malformed_statements_name_the_field(
    kind: str, change: Callable[[pb.Statement], None], field: str
) -> None:
    with pytest.raises(InvalidFieldError) as raised:
        check_structure(_mutated(kind, change))
    assert raised.value.field == field


def test_unparseable_oversized_and_empty_statements_are_refused() -> None:
    with pytest.raises(InvalidFieldError, match="not a kaifang"):
        parse_statement(b"\xff\xff\xff")
    with pytest.raises(InvalidFieldError, match="limit"):
        parse_statement(b"\x00" * (MAX_STATEMENT_BYTES + 1))
    with pytest.raises(InvalidFieldError, match="no statement kind"):
        parse_statement(pb.Statement(nonce=b"n" * 16).SerializeToString())


def test_replay_window_refuses_old_and_future_statements() -> None:
    built = VALID["offer_published"]()
    created = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    window, skew = dt.timedelta(hours=24), dt.timedelta(minutes=5)
    check_replay_window(built, created + dt.timedelta(hours=23), window, skew)
    with pytest.raises(InvalidFieldError, match="older"):
        check_replay_window(built, created + dt.timedelta(hours=25), window, skew)
    with pytest.raises(InvalidFieldError, match="future"):
        check_replay_window(built, created - dt.timedelta(minutes=6), window, skew)


def test_signatures_verify_and_forgeries_do_not() -> None:
    data = VALID["offer_published"]().SerializeToString()
    signature = sign(data, ALICE, KEY)
    verify(data, signature, PUBLIC)
    with pytest.raises(SignatureInvalidError):
        verify(data + b"\x00", signature, PUBLIC)
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(SignatureInvalidError, match="another key"):
        verify(data, signature, other)
    assert len(statement_id(data)) == 32
