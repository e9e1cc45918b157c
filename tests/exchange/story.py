"""Statements of the open-licence story, signed and ready to submit (shared by tests).

Built from the synthetic sample so that every identifier is valid; the
register signs patent records with the node's register key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os

from sqlalchemy import Connection, MetaData, select

from exchange.rules import REGISTER
from exchange.sample import SampleParty
from exchange.statements import sign
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.db import Database
from ledger.note import Signer

CNY_20K = pb.RoyaltyTerms(lump_sum=pb.Money(amount_minor=2_000_000, currency="CNY"))


def today() -> dt.date:
    """Today in China, the day the rules judge by."""
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=8)).date()


def date(day: dt.date) -> pb.Date:
    """``day`` as a proto Date."""
    return pb.Date(year=day.year, month=day.month, day=day.day)


def signed(
    statement: pb.Statement, *signers: tuple[str, SampleParty | Signer]
) -> pb.SignedStatement:
    """Stamp ``statement`` (fresh nonce unless set, created now) and sign it."""
    statement.nonce = statement.nonce or os.urandom(16)
    statement.created_at.GetCurrentTime()
    return sign_bytes(statement.SerializeToString(), *signers)


def registration(party: SampleParty) -> pb.SignedStatement:
    """``party`` registers itself."""
    return signed(pb.Statement(party_registered=party.registration), (party.party_id, party))


def record(
    patent: pb.PatentRecorded, owners: list[SampleParty], register: Signer
) -> pb.SignedStatement:
    """The register records ``patent`` as owned by ``owners``, in force with fees paid."""
    copy = pb.PatentRecorded()
    copy.CopyFrom(patent)
    copy.owners[:] = [o.party_id for o in owners]
    copy.status = pb.PATENT_STATUS_IN_FORCE
    if not copy.HasField("grant_date"):
        copy.grant_date.CopyFrom(copy.filing_date)
    copy.fees_paid_until.CopyFrom(date(today() + dt.timedelta(days=3 * 365)))
    copy.expiry_date.CopyFrom(date(today() + dt.timedelta(days=12 * 365)))
    return signed(pb.Statement(patent_recorded=copy), (REGISTER, register))


def offer(
    number: str, owners: list[SampleParty], terms: pb.RoyaltyTerms = CNY_20K, months: int = 24
) -> pb.SignedStatement:
    """``owners`` declare an open licence of patent ``number``."""
    body = pb.OfferPublished(
        application_number=number, terms=terms, licence_term_months=months,
        evaluation_report="EVAL-2026-001",
    )  # fmt: skip
    return signed(pb.Statement(offer_published=body), *((o.party_id, o) for o in owners))


def acceptance(
    offer_id: bytes, who: SampleParty, terms: pb.RoyaltyTerms = CNY_20K
) -> pb.SignedStatement:
    """``who`` accepts the offer on ``terms``, paying what is due up front today."""
    body = pb.LicenseAccepted(
        offer_id=offer_id, licensee=who.party_id, terms=terms, start_date=date(today())
    )
    if terms.HasField("lump_sum"):
        body.payment.CopyFrom(
            pb.Payment(amount=terms.lump_sum, reference="TX-1", paid_on=date(today()))
        )
    return signed(pb.Statement(license_accepted=body), (who.party_id, who))


def withdrawal(offer_id: bytes, owners: list[SampleParty]) -> pb.SignedStatement:
    """``owners`` withdraw the offer."""
    body = pb.OfferWithdrawn(offer_id=offer_id, reason="licensed enough")
    return signed(pb.Statement(offer_withdrawn=body), *((o.party_id, o) for o in owners))


def role(
    party: SampleParty, granted: pb.Role.ValueType, operator: Signer, origin: str
) -> pb.SignedStatement:
    """The operator of exchange ``origin`` grants ``party`` a role."""
    body = pb.RoleGranted(party_id=party.party_id, role=granted)
    return signed(pb.Statement(role_granted=body), (f"operator:{origin}", operator))


def credit_event(
    party: SampleParty, supervisor: SampleParty, evidence: pb.EntryReference
) -> pb.SignedStatement:
    """``supervisor`` records a payment default on ``party``'s credit record."""
    body = pb.CreditEventRecorded(
        evidence=[evidence],
        party_id=party.party_id, kind=pb.CREDIT_EVENT_KIND_PAYMENT_DEFAULT,
        supervisor=supervisor.party_id, summary="royalty instalment unpaid",
        occurred_on=date(today()),
    )  # fmt: skip
    return signed(pb.Statement(credit_event_recorded=body), (supervisor.party_id, supervisor))


def pledge(
    number: str, owners: list[SampleParty], pledgee: SampleParty, amount_minor: int = 50_000_000
) -> pb.SignedStatement:
    """``owners`` pledge patent ``number`` to ``pledgee`` for a one-year loan."""
    body = pb.PledgeRegistered(
        application_number=number, pledgors=[o.party_id for o in owners],
        pledgee=pledgee.party_id,
        secured_amount=pb.Money(amount_minor=amount_minor, currency="CNY"),
        debt_start=date(today()), debt_end=date(today() + dt.timedelta(days=365)),
        contract_reference="LOAN-1",
    )  # fmt: skip
    signers = [(o.party_id, o) for o in owners] + [(pledgee.party_id, pledgee)]
    return signed(pb.Statement(pledge_registered=body), *signers)


def sign_bytes(data: bytes, *signers: tuple[str, SampleParty | Signer]) -> pb.SignedStatement:
    """Sign ``data`` exactly as given (no stamping), e.g. bytes that are not a valid statement."""
    signatures = [
        sign(data, name, key if isinstance(key, Signer) else key.key) for name, key in signers
    ]
    return pb.SignedStatement(statement=data, signatures=signatures)


def signed_at(
    statement: pb.Statement, created_at: dt.datetime, *signers: tuple[str, SampleParty | Signer]
) -> pb.SignedStatement:
    """Like :func:`signed`, but created at ``created_at`` (to step outside the replay window)."""
    statement.nonce = statement.nonce or os.urandom(16)
    statement.created_at.FromDatetime(created_at)
    return sign_bytes(statement.SerializeToString(), *signers)


def _signers(*parties: SampleParty) -> list[tuple[str, SampleParty | Signer]]:
    return [(p.party_id, p) for p in parties]


def record_with(
    patent: pb.PatentRecorded,
    owners: list[SampleParty],
    register: Signer,
    *,
    status: pb.PatentStatus.ValueType = pb.PATENT_STATUS_IN_FORCE,
    **dates: dt.date,
) -> pb.SignedStatement:
    """Like :func:`record`, with ``status`` and any Date field (``expiry_date=…``) replaced."""
    copy = pb.PatentRecorded()
    copy.CopyFrom(patent)
    copy.owners[:] = [o.party_id for o in owners]
    copy.status = status
    if not copy.HasField("grant_date"):
        copy.grant_date.CopyFrom(copy.filing_date)
    copy.fees_paid_until.CopyFrom(date(today() + dt.timedelta(days=3 * 365)))
    copy.expiry_date.CopyFrom(date(today() + dt.timedelta(days=12 * 365)))
    for name, day in dates.items():
        getattr(copy, name).CopyFrom(date(day))
    return signed(pb.Statement(patent_recorded=copy), (REGISTER, register))


def status_change(
    number: str,
    change: pb.StatusChange.ValueType,
    register: Signer,
    *,
    lifted: pb.StatusChange.ValueType = pb.STATUS_CHANGE_UNSPECIFIED,
    fees_paid_until: dt.date | None = None,
) -> pb.SignedStatement:
    """The register records ``change`` of patent ``number``, effective today."""
    body = pb.PatentStatusChanged(
        application_number=number, change=change, effective_date=date(today()),
        reference="CNIPA-2026-0001", lifted=lifted,
    )  # fmt: skip
    if fees_paid_until is not None:
        body.fees_paid_until.CopyFrom(date(fees_paid_until))
    return signed(pb.Statement(patent_status_changed=body), (REGISTER, register))


def grant(
    number: str,
    licensors: list[SampleParty],
    licensee: SampleParty,
    kind: pb.LicenseType.ValueType,
    end: dt.date,
    *also: SampleParty,
) -> pb.SignedStatement:
    """``licensors`` license ``licensee`` from today to ``end``; signed by them and ``also``."""
    body = pb.LicenseGranted(
        application_number=number, licensors=[o.party_id for o in licensors],
        licensee=licensee.party_id, type=kind, start_date=date(today()), end_date=date(end),
        terms=CNY_20K, contract_reference="LIC-1",
    )  # fmt: skip
    return signed(pb.Statement(license_granted=body), *_signers(*licensors, licensee, *also))


def transfer(
    number: str, assignors: list[SampleParty], assignees: list[SampleParty], *also: SampleParty
) -> pb.SignedStatement:
    """``assignors`` assign patent ``number``; signed by both sides and ``also``."""
    body = pb.TransferRegistered(
        application_number=number, assignors=[o.party_id for o in assignors],
        assignees=[a.party_id for a in assignees], contract_reference="TR-1",
    )  # fmt: skip
    return signed(pb.Statement(transfer_registered=body), *_signers(*assignors, *assignees, *also))


def pledge_until(
    number: str, owners: list[SampleParty], pledgee: SampleParty, debt_end: dt.date
) -> pb.SignedStatement:
    """Like :func:`pledge`, for a debt that ends on ``debt_end``."""
    body = pb.PledgeRegistered(
        application_number=number, pledgors=[o.party_id for o in owners],
        pledgee=pledgee.party_id, secured_amount=pb.Money(amount_minor=50_000_000, currency="CNY"),
        debt_start=date(today()), debt_end=date(debt_end), contract_reference="LOAN-2",
    )  # fmt: skip
    return signed(pb.Statement(pledge_registered=body), *_signers(*owners, pledgee))


def dispute(
    number: str, subject_id: bytes, claimant: SampleParty, respondents: list[SampleParty]
) -> pb.SignedStatement:
    """``claimant`` brings the open licence ``subject_id`` of patent ``number`` to mediation."""
    body = pb.DisputeFiled(
        application_number=number, subject_id=subject_id, kind=pb.DISPUTE_KIND_OPEN_LICENSE,
        claimant=claimant.party_id, respondents=[r.party_id for r in respondents],
        summary="the licensor refuses the technical documents",
    )  # fmt: skip
    return signed(pb.Statement(dispute_filed=body), (claimant.party_id, claimant))


def mediation(dispute_id: bytes, mediator: SampleParty) -> pb.SignedStatement:
    """``mediator`` records an agreement in dispute ``dispute_id``."""
    body = pb.MediationRecorded(
        dispute_id=dispute_id, mediator=mediator.party_id,
        outcome=pb.MEDIATION_OUTCOME_AGREEMENT, summary="documents delivered within 30 days",
        concluded_on=date(today()),
    )  # fmt: skip
    return signed(pb.Statement(mediation_recorded=body), (mediator.party_id, mediator))


def _table_digests(conn: Connection) -> dict[str, tuple[int, str]]:
    tables = MetaData()
    tables.reflect(conn)
    digests: dict[str, tuple[int, str]] = {}
    for name, table in sorted(tables.tables.items()):
        # Sorted by value, not by the engine's row order, which may change
        # between two reads of the same rows.
        rows = sorted(repr(tuple(row)) for row in conn.execute(select(table)))
        digests[name] = (len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest())
    return digests


async def database_digest(db: Database) -> dict[str, tuple[int, str]]:
    """Every table of ``db`` (found by reflection, not from the models): its row count and hash.

    Two equal digests mean that nothing was written anywhere: the ledger's
    logs, entries and checkpoints, the views, and the migration stamp.
    """
    return await db.scan(_table_digests)
