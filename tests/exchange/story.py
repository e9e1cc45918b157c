"""Statements of the open-licence story, signed and ready to submit (shared by tests).

Built from the synthetic sample so that every identifier is valid; the
register signs patent records with the node's register key.
"""

from __future__ import annotations

import datetime as dt
import os

from exchange.rules import REGISTER
from exchange.sample import SampleParty
from exchange.statements import SIGNING_PREFIX, key_fingerprint, sign
from kaifang.exchange.v1 import statements_pb2 as pb
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
    data = statement.SerializeToString()
    signatures = []
    for name, key in signers:
        if isinstance(key, Signer):  # the register's note key
            signatures.append(
                pb.Signature(
                    signer=name, key_fingerprint=key_fingerprint(key.public_key),
                    signature=key.sign(SIGNING_PREFIX + data),
                )
            )  # fmt: skip
        else:
            signatures.append(sign(data, name, key.key))
    return pb.SignedStatement(statement=data, signatures=signatures)


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
