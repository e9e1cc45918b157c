"""The legal rules for statements about a patent, as a pure state machine.

:func:`check` decides whether a statement may be sequenced given the
patent's current :class:`PatentState` and who signed it; :func:`apply` gives
the state after it is sequenced. Both are pure (values in, values out), so
every replica that applies one log in order reaches the same state, and the
rules can be tested exhaustively without a database.

A refusal is a :class:`~exchange.errors.RuleViolationError` carrying a stable
reason code, the offending field and the provision relied on, or a
:class:`~exchange.errors.SignerError` naming whose signature the law requires.
Sources: PRC Patent Law (2020) Arts. 10, 14, 50-52; its Implementing
Regulations (2023) Arts. 85-87 and 103-104; Civil Code Arts. 444 and 865;
the Patent Pledge Registration Measures.

This module covers the patent-scoped statements (the register feed, offers,
acceptances, licences, transfers, pledges); parties, roles, disputes and
credit events are the next step.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, TypeVar

from exchange.errors import RuleViolationError, SignerError
from exchange.identifiers import PatentType, parse_application_number
from exchange.statements import to_date
from kaifang.exchange.v1 import statements_pb2 as pb

REGISTER = "register"
S = TypeVar("S")
SUSPENSIONS = frozenset(
    {
        pb.STATUS_CHANGE_SUSPENDED_OWNERSHIP_DISPUTE,
        pb.STATUS_CHANGE_SUSPENDED_COURT_PRESERVATION,
    }
)
# An acceptance may start on the day its notice was signed, before sequencing.
START_GRACE = dt.timedelta(days=1)
RECORDAL_MONTHS = 3

ART_10 = "Patent Law Art. 10"
ART_39 = "Patent Law Art. 39 (grant, registration and announcement)"
ART_14 = "Patent Law Art. 14"
ART_43 = "Patent Law Art. 43 (annual fees)"
ART_44 = "Patent Law Art. 44 (termination for unpaid annual fees)"
ART_45 = "Patent Law Art. 45 (invalidation)"
REGS_6 = "Patent Law Implementing Regulations Art. 6 (restoration of rights)"
ART_50 = "Patent Law Art. 50"
ART_51 = "Patent Law Art. 51"
REGS_86 = "Patent Law Implementing Regulations Art. 86"
REGS_103 = "Patent Law Implementing Regulations Arts. 103-104"
CIVIL_444 = "Civil Code Art. 444"
CIVIL_865 = "Civil Code Art. 865"
# Defines ordinary, sole and exclusive licences (普通、排他、独占实施许可).
SPC_LICENCES = "SPC Interpretation on Technology Contract Disputes Art. 25"
RECORDAL = "Patent Law Implementing Regulations, recordal of licence contracts (3 months)"
PLEDGE_MEASURES = "Patent Pledge Registration Measures"
ART_52 = "Patent Law Art. 52"


@dataclass(frozen=True)
class Offer:
    """An active open-licence declaration."""

    offer_id: bytes
    terms: bytes  # the serialised RoyaltyTerms: the same for every licensee
    licence_term_months: int


@dataclass(frozen=True)
class Licence:
    """A licence in force (open-licence acceptance or negotiated)."""

    license_id: bytes
    licensee: str
    type: pb.LicenseType.ValueType  # open-licence acceptances are ORDINARY
    start: dt.date
    end: dt.date
    recordal_due: dt.date
    recorded: bool = False


@dataclass(frozen=True)
class Pledge:
    """A registered pledge."""

    pledge_id: bytes
    pledgee: str
    debt_end: dt.date


@dataclass(frozen=True)
class PatentState:
    """What the ledger knows about one patent."""

    application_number: str
    type: PatentType
    owners: tuple[str, ...]
    status: pb.PatentStatus.ValueType
    expiry: dt.date
    fees_paid_until: dt.date | None
    suspended: frozenset[pb.StatusChange.ValueType] = frozenset()  # suspensions in force
    offer: Offer | None = None
    licences: tuple[Licence, ...] = field(default=())
    pledge: Pledge | None = None


# What refuses a statement whose referenced id names no known statement.
UNKNOWN_REFERENCE: dict[str, tuple[str, str, str, str]] = {
    "offer_withdrawn": ("OFFER_NOT_ACTIVE", "offer_withdrawn.offer_id", "no such offer", ART_50),
    "license_accepted": ("OFFER_NOT_ACTIVE", "license_accepted.offer_id", "no such offer", ART_50),
    "pledge_released": (
        "PLEDGE_NOT_ACTIVE", "pledge_released.pledge_id", "no such pledge", PLEDGE_MEASURES
    ),
    "license_recorded": (
        "LICENSE_UNKNOWN", "license_recorded.license_id", "no such licence", RECORDAL
    ),
}  # fmt: skip


_GRANTED = frozenset(
    {pb.PATENT_STATUS_IN_FORCE, pb.PATENT_STATUS_FEE_UNPAID, pb.PATENT_STATUS_LAPSED,
     pb.PATENT_STATUS_EXPIRED}
)  # fmt: skip
# The register's status changes, each with the statuses it may follow and the
# provision: a grant follows examination, fees fall due on a right in force, a
# right lapses for fees unpaid and may be restored, any granted right may be
# declared invalid. Suspensions and their lifting follow any status but an
# invalidated right's (checked apart: the lifting must name one in force).
STATUS_TRANSITIONS: dict[int, tuple[frozenset[int], str]] = {
    pb.STATUS_CHANGE_GRANTED: (frozenset({pb.PATENT_STATUS_PENDING}), ART_39),
    pb.STATUS_CHANGE_FEES_PAID: (
        frozenset({pb.PATENT_STATUS_IN_FORCE, pb.PATENT_STATUS_FEE_UNPAID}),
        ART_43,
    ),
    pb.STATUS_CHANGE_FEE_UNPAID: (frozenset({pb.PATENT_STATUS_IN_FORCE}), ART_43),
    pb.STATUS_CHANGE_LAPSED: (
        frozenset({pb.PATENT_STATUS_IN_FORCE, pb.PATENT_STATUS_FEE_UNPAID}),
        ART_44,
    ),
    pb.STATUS_CHANGE_RESTORED: (frozenset({pb.PATENT_STATUS_LAPSED}), REGS_6),
    pb.STATUS_CHANGE_INVALIDATED: (_GRANTED, ART_45),
    **{
        c: (frozenset(pb.PatentStatus.values()) - {pb.PATENT_STATUS_INVALIDATED}, REGS_103)
        for c in (
            pb.STATUS_CHANGE_SUSPENDED_OWNERSHIP_DISPUTE,
            pb.STATUS_CHANGE_SUSPENDED_COURT_PRESERVATION,
        )
    },
}


def _replace(obj: S, **changes: Any) -> S:
    """``dataclasses.replace`` for these states, whose fields are all init fields.

    A rebuild applies a million statements; the generic replace's checks cost
    more than building the new state.
    """
    return type(obj)(**{**obj.__dict__, **changes})


def _refuse(code: str, where: str, message: str, basis: str) -> RuleViolationError:
    return RuleViolationError(code, where, message, basis)


def require_signed(signers: frozenset[str], signer: str, reason: str, basis: str) -> None:
    """Raise :class:`SignerError` unless ``signer`` is among ``signers``."""
    _require(signers, {signer}, reason, basis)


def _require(signers: frozenset[str], needed: set[str], reason: str, basis: str) -> None:
    missing = frozenset(needed - signers)
    if missing:
        raise SignerError(missing, reason, basis)


def _owners_must_sign(state: PatentState, signers: frozenset[str], what: str) -> None:
    _require(signers, set(state.owners), f"every owner must sign {what}", ART_14)


def _pledgee_must_sign(state: PatentState, signers: frozenset[str], what: str, basis: str) -> None:
    if state.pledge is not None:
        _require(signers, {state.pledge.pledgee}, f"the pledgee must consent to {what}", basis)


def _in_force(state: PatentState, where: str, basis: str, today: dt.date) -> None:
    if state.status == pb.PATENT_STATUS_FEE_UNPAID:
        raise _refuse("FEES_UNPAID", where, "an annual fee is overdue", basis)
    if state.status != pb.PATENT_STATUS_IN_FORCE:
        name = pb.PatentStatus.Name(state.status)
        raise _refuse("PATENT_NOT_IN_FORCE", where, f"the patent is {name}", basis)
    if today > state.expiry:
        raise _refuse("PATENT_EXPIRED", where, f"the term ended on {state.expiry}", basis)
    if state.fees_paid_until is None or today > state.fees_paid_until:
        paid = state.fees_paid_until or "no date the register has recorded"
        raise _refuse("FEES_UNPAID", where, f"annual fees are paid only to {paid}", basis)


def _not_suspended(state: PatentState, where: str, basis: str) -> None:
    if state.suspended:
        names = ", ".join(sorted(pb.StatusChange.Name(c) for c in state.suspended))
        raise _refuse("PROCEDURES_SUSPENDED", where, names, basis)


def _add_months(day: dt.date, months: int) -> dt.date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for d in (day.day, 30, 29, 28):  # clamp to the month's last day
        try:
            return dt.date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def check(
    state: PatentState | None,
    statement: pb.Statement,
    signers: frozenset[str],
    today: dt.date,
) -> None:
    """Refuse ``statement`` if the law does not allow it on ``state``, signed by ``signers``.

    ``signers`` are the names on signatures that verified; ``today`` is the
    sequencing date. Requires a structurally valid statement
    (:func:`exchange.statements.check_structure`).
    """
    kind = statement.WhichOneof("body")
    if kind in ("patent_recorded", "patent_status_changed"):
        _require(signers, {REGISTER}, "only the register authority records patents", ART_39)
        if kind == "patent_recorded" and state is not None:
            raise _refuse(
                "PATENT_ALREADY_RECORDED", "patent_recorded.application_number",
                "the patent is already recorded", ART_39,
            )  # fmt: skip
        if kind == "patent_status_changed":
            if state is None:
                raise _refuse(
                    "PATENT_UNKNOWN", "patent_status_changed.application_number",
                    "no such patent is recorded", ART_39,
                )  # fmt: skip
            change = statement.patent_status_changed
            allowed = STATUS_TRANSITIONS.get(change.change)
            if allowed is not None and state.status not in allowed[0]:
                raise _refuse(
                    "STATUS_TRANSITION", "patent_status_changed.change",
                    f"{pb.StatusChange.Name(change.change)} does not follow "
                    f"{pb.PatentStatus.Name(state.status)}", allowed[1],
                )  # fmt: skip
            if change.change == pb.STATUS_CHANGE_SUSPENSION_LIFTED and (
                change.lifted not in state.suspended
            ):
                raise _refuse(
                    "NOT_SUSPENDED", "patent_status_changed.lifted",
                    "that suspension is not in force", REGS_103,
                )  # fmt: skip
        return
    if state is None:
        # A statement that names an earlier one by id is refused at that id:
        # the id is unknown, so no patent could be found through it.
        unknown = UNKNOWN_REFERENCE.get(kind or "")
        if unknown is not None:
            raise _refuse(*unknown)
        raise _refuse("PATENT_UNKNOWN", f"{kind}.application_number", "not recorded", ART_39)
    if kind == "offer_published":
        _check_offer(state, statement.offer_published, signers, today)
    elif kind == "offer_withdrawn":
        if state.offer is None or state.offer.offer_id != statement.offer_withdrawn.offer_id:
            raise _refuse(
                "OFFER_NOT_ACTIVE", "offer_withdrawn.offer_id", "no such active offer", ART_50
            )
        _owners_must_sign(state, signers, "a withdrawal")
    elif kind == "license_accepted":
        _check_acceptance(state, statement.license_accepted, signers, today)
    elif kind == "license_granted":
        _check_grant(state, statement.license_granted, signers, today)
    elif kind == "transfer_registered":
        _check_transfer(state, statement.transfer_registered, signers)
    elif kind == "pledge_registered":
        _check_pledge(state, statement.pledge_registered, signers, today)
    elif kind == "license_recorded":
        _check_recordal(state, statement.license_recorded, signers)
    elif kind == "pledge_released":
        if state.pledge is None or state.pledge.pledge_id != statement.pledge_released.pledge_id:
            raise _refuse(
                "PLEDGE_NOT_ACTIVE", "pledge_released.pledge_id", "no such pledge", PLEDGE_MEASURES
            )
        _require(signers, {state.pledge.pledgee}, "only the pledgee releases", PLEDGE_MEASURES)
    else:
        raise AssertionError(f"{kind} is not a patent-scoped statement")


def _check_recordal(
    state: PatentState, recorded: pb.LicenseRecorded, signers: frozenset[str]
) -> None:
    licence = next((x for x in state.licences if x.license_id == recorded.license_id), None)
    if licence is None:
        raise _refuse(
            "LICENSE_UNKNOWN",
            "license_recorded.license_id",
            "no such licence of this patent",
            RECORDAL,
        )
    if licence.recorded:
        raise _refuse(
            "ALREADY_RECORDED", "license_recorded.license_id", "already recorded", RECORDAL
        )
    if not signers & ({licence.licensee} | set(state.owners)):
        raise SignerError(
            frozenset({licence.licensee, *state.owners}),
            "the licensor or the licensee records a licence",
            RECORDAL,
        )


def _check_offer(
    state: PatentState, offer: pb.OfferPublished, signers: frozenset[str], today: dt.date
) -> None:
    where = "offer_published.application_number"
    _in_force(
        state, where, REGS_86 if state.status == pb.PATENT_STATUS_FEE_UNPAID else ART_50, today
    )
    _not_suspended(state, where, REGS_86)
    if state.offer is not None:
        raise _refuse("OFFER_ALREADY_ACTIVE", where, "withdraw the active offer first", ART_50)
    for licence in state.licences:
        if (
            licence.type in (pb.LICENSE_TYPE_EXCLUSIVE, pb.LICENSE_TYPE_SOLE)
            and licence.end >= today
        ):
            raise _refuse(
                "EXCLUSIVE_LICENSE_IN_FORCE", where,
                "an exclusive or sole licence is in force", REGS_86,
            )  # fmt: skip
    _owners_must_sign(state, signers, "an open-licence declaration")
    _pledgee_must_sign(state, signers, "an open-licence declaration", REGS_86)


def _check_acceptance(
    state: PatentState, accepted: pb.LicenseAccepted, signers: frozenset[str], today: dt.date
) -> None:
    if state.offer is None or state.offer.offer_id != accepted.offer_id:
        raise _refuse(
            "OFFER_NOT_ACTIVE", "license_accepted.offer_id",
            "the offer is withdrawn or is not this patent's active offer", ART_50,
        )  # fmt: skip
    if accepted.terms.SerializeToString(deterministic=True) != state.offer.terms:
        raise _refuse(
            "TERMS_NOT_IN_FORCE", "license_accepted.terms",
            "acceptance must be on the published terms, the same for every licensee", ART_51,
        )  # fmt: skip
    _in_force(state, "license_accepted.offer_id", ART_51, today)
    start = to_date(accepted.start_date, "license_accepted.start_date")
    if not today - START_GRACE <= start <= state.expiry:
        raise _refuse(
            "START_OUT_OF_TERM", "license_accepted.start_date",
            f"a licence starts from its acceptance and within the patent's term, {state.expiry}",
            CIVIL_865,
        )  # fmt: skip
    _check_payment(accepted)
    if accepted.licensee in state.owners:
        raise _refuse(
            "LICENSEE_IS_OWNER", "license_accepted.licensee", "owners need no licence", ART_51
        )
    _require(signers, {accepted.licensee}, "the licensee's signed notice", ART_51)


def up_front(terms: pb.RoyaltyTerms) -> tuple[int, str] | None:
    """What the terms require paid at acceptance: (minor units, currency), or None."""
    method = terms.WhichOneof("method")
    if method == "lump_sum":
        return terms.lump_sum.amount_minor, terms.lump_sum.currency
    if method == "entry_fee_and_royalty":
        fee = terms.entry_fee_and_royalty.entry_fee
        return fee.amount_minor, fee.currency
    if method == "instalments":
        due = [i.amount for i in terms.instalments.instalments if i.due_after_months == 0]
        if due:
            return sum(m.amount_minor for m in due), due[0].currency
    return None


def _check_payment(accepted: pb.LicenseAccepted) -> None:
    """The licence is obtained by notice *and* payment on the published terms (Art. 51)."""
    owed = up_front(accepted.terms)
    if owed is None:
        if accepted.HasField("payment"):
            raise _refuse(
                "PAYMENT_NOT_DUE", "license_accepted.payment",
                "these terms require no payment at acceptance", ART_51,
            )  # fmt: skip
        return
    paid = accepted.payment.amount
    if not accepted.HasField("payment") or (paid.amount_minor, paid.currency) != owed:
        raise _refuse(
            "PAYMENT_MISMATCH", "license_accepted.payment",
            f"acceptance requires payment of {owed[0]} {owed[1]} (minor units)", ART_51,
        )  # fmt: skip


def _overlaps(licence: Licence, start: dt.date, end: dt.date) -> bool:
    return licence.start <= end and start <= licence.end


def _check_grant(
    state: PatentState, grant: pb.LicenseGranted, signers: frozenset[str], today: dt.date
) -> None:
    exclusive = grant.type in (pb.LICENSE_TYPE_EXCLUSIVE, pb.LICENSE_TYPE_SOLE)
    licensors = set(grant.licensors)
    # A co-owner may grant an ordinary licence alone; sole and exclusive
    # licences bind every owner (Patent Law Art. 14).
    if not licensors <= set(state.owners) or (exclusive and licensors != set(state.owners)):
        raise _refuse(
            "LICENSORS_NOT_OWNERS", "license_granted.licensors",
            "licensors must be registered owners (all of them for a sole or exclusive licence)",
            ART_14,
        )  # fmt: skip
    _in_force(state, "license_granted.application_number", CIVIL_865, today)
    start = to_date(grant.start_date, "license_granted.start_date")
    end = to_date(grant.end_date, "license_granted.end_date")
    if end > state.expiry:
        raise _refuse(
            "TERM_BEYOND_EXPIRY", "license_granted.end_date",
            f"a licence ends no later than the patent, {state.expiry}", CIVIL_865,
        )  # fmt: skip
    if exclusive and state.offer is not None:
        raise _refuse(
            "OPEN_LICENSE_ACTIVE", "license_granted.type",
            "no exclusive or sole licence while an open-licence declaration is active", ART_51,
        )  # fmt: skip
    for licence in state.licences:
        if not _overlaps(licence, start, end):
            continue
        held_exclusive = licence.type in (pb.LICENSE_TYPE_EXCLUSIVE, pb.LICENSE_TYPE_SOLE)
        if exclusive or held_exclusive:
            raise _refuse(
                "EXCLUSIVE_LICENSE_CONFLICT", "license_granted.type",
                "a sole or exclusive licence admits no other licensee for its term",
                SPC_LICENCES,
            )  # fmt: skip
    _require(signers, licensors, "every licensor signs the licence", ART_14)
    _require(signers, {grant.licensee}, "the licensee must sign the licence", CIVIL_865)
    _pledgee_must_sign(state, signers, "a licence", CIVIL_444)


def _check_transfer(
    state: PatentState, transfer: pb.TransferRegistered, signers: frozenset[str]
) -> None:
    where = "transfer_registered.assignors"
    if set(transfer.assignors) != set(state.owners):
        raise _refuse("ASSIGNORS_NOT_OWNERS", where, "every registered owner must assign", ART_14)
    if state.status in (
        pb.PATENT_STATUS_LAPSED,
        pb.PATENT_STATUS_INVALIDATED,
        pb.PATENT_STATUS_EXPIRED,
    ):
        name = pb.PatentStatus.Name(state.status)
        raise _refuse(
            "PATENT_NOT_IN_FORCE", "transfer_registered.application_number",
            f"a {name} right cannot be transferred", ART_10,
        )  # fmt: skip
    _not_suspended(state, "transfer_registered.application_number", REGS_103)
    _owners_must_sign(state, signers, "a transfer")
    _require(signers, set(transfer.assignees), "every assignee must sign", ART_10)
    _pledgee_must_sign(state, signers, "a transfer", CIVIL_444)


def _check_pledge(
    state: PatentState, pledge: pb.PledgeRegistered, signers: frozenset[str], today: dt.date
) -> None:
    where = "pledge_registered.application_number"
    if set(pledge.pledgors) != set(state.owners):
        raise _refuse(
            "PLEDGORS_NOT_OWNERS", "pledge_registered.pledgors",
            "only the registered owners may pledge", PLEDGE_MEASURES,
        )  # fmt: skip
    _in_force(state, where, PLEDGE_MEASURES, today)
    _not_suspended(state, where, PLEDGE_MEASURES)
    if state.pledge is not None:
        raise _refuse("PATENT_PLEDGED", where, "the patent is already pledged", PLEDGE_MEASURES)
    if to_date(pledge.debt_end, "pledge_registered.debt_end") > state.expiry:
        raise _refuse(
            "TERM_BEYOND_EXPIRY", "pledge_registered.debt_end",
            f"the debt's term must end within the patent's, {state.expiry}", PLEDGE_MEASURES,
        )  # fmt: skip
    _owners_must_sign(state, signers, "a pledge")
    _require(signers, {pledge.pledgee}, "the pledgee must sign", CIVIL_444)


def apply(
    state: PatentState | None, statement: pb.Statement, statement_id: bytes, today: dt.date
) -> PatentState:
    """Return the patent's state after ``statement`` (which :func:`check` accepted) is sequenced."""
    kind = statement.WhichOneof("body")
    if kind == "patent_recorded":
        r = statement.patent_recorded
        return PatentState(
            application_number=r.application_number,
            type=parse_application_number(r.application_number).type,
            owners=tuple(r.owners),
            status=r.status,
            expiry=to_date(r.expiry_date, "expiry_date"),
            fees_paid_until=to_date(r.fees_paid_until, "fees_paid_until")
            if r.HasField("fees_paid_until")
            else None,
        )
    assert state is not None, "check() refuses statements about unrecorded patents"
    if kind == "patent_status_changed":
        return _status_changed(state, statement.patent_status_changed)
    if kind == "offer_published":
        o = statement.offer_published
        terms = o.terms.SerializeToString(deterministic=True)
        return _replace(state, offer=Offer(statement_id, terms, o.licence_term_months))
    if kind == "offer_withdrawn":
        return _replace(state, offer=None)  # licences already granted stand (Art. 50)
    if kind == "license_accepted":
        a = statement.license_accepted
        assert state.offer is not None
        start = to_date(a.start_date, "start_date")
        end = min(_add_months(start, state.offer.licence_term_months), state.expiry)
        licence = Licence(
            statement_id, a.licensee, pb.LICENSE_TYPE_ORDINARY, start, end,
            _add_months(today, RECORDAL_MONTHS),
        )  # fmt: skip
        return _replace(state, licences=(*state.licences, licence))
    if kind == "license_granted":
        g = statement.license_granted
        licence = Licence(
            statement_id, g.licensee, g.type, to_date(g.start_date, "start_date"),
            to_date(g.end_date, "end_date"), _add_months(today, RECORDAL_MONTHS),
        )  # fmt: skip
        return _replace(state, licences=(*state.licences, licence))
    if kind == "license_recorded":
        wanted = statement.license_recorded.license_id
        return _replace(
            state,
            licences=tuple(
                _replace(x, recorded=True) if x.license_id == wanted else x for x in state.licences
            ),
        )
    if kind == "transfer_registered":
        return _replace(state, owners=tuple(statement.transfer_registered.assignees))
    if kind == "pledge_registered":
        p = statement.pledge_registered
        return _replace(
            state, pledge=Pledge(statement_id, p.pledgee, to_date(p.debt_end, "debt_end"))
        )
    if kind == "pledge_released":
        return _replace(state, pledge=None)
    raise AssertionError(f"{kind} is not a patent-scoped statement")


def _status_changed(state: PatentState, change: pb.PatentStatusChanged) -> PatentState:
    c = change.change
    if c in (pb.STATUS_CHANGE_GRANTED, pb.STATUS_CHANGE_RESTORED):
        return _replace(state, status=pb.PATENT_STATUS_IN_FORCE)
    if c == pb.STATUS_CHANGE_FEES_PAID:
        paid = to_date(change.fees_paid_until, "fees_paid_until")
        status = (
            pb.PATENT_STATUS_IN_FORCE
            if state.status == pb.PATENT_STATUS_FEE_UNPAID
            else state.status
        )
        return _replace(state, fees_paid_until=paid, status=status)
    if c == pb.STATUS_CHANGE_FEE_UNPAID:
        return _replace(state, status=pb.PATENT_STATUS_FEE_UNPAID)
    if c == pb.STATUS_CHANGE_LAPSED:
        # A lapse ends the declaration; a restored patent needs a new one.
        return _replace(state, status=pb.PATENT_STATUS_LAPSED, offer=None)
    if c == pb.STATUS_CHANGE_INVALIDATED:
        return _replace(state, status=pb.PATENT_STATUS_INVALIDATED, offer=None)
    if c in SUSPENSIONS:
        return _replace(state, suspended=state.suspended | {c})
    if c == pb.STATUS_CHANGE_SUSPENSION_LIFTED:
        return _replace(state, suspended=state.suspended - {change.lifted})
    return state


def check_dispute(
    state: PatentState | None,
    filed: pb.DisputeFiled,
    subject_patent: str | None,
    signers: frozenset[str],
) -> None:
    """Refuse a dispute filing that is not about a transaction of this patent by one of its parties.

    ``subject_patent`` is the patent the disputed statement is about (None if unknown).
    """
    if state is None:
        raise _refuse("PATENT_UNKNOWN", "dispute_filed.application_number", "not recorded", ART_52)
    if subject_patent != state.application_number:
        raise _refuse(
            "SUBJECT_UNKNOWN", "dispute_filed.subject_id",
            "the disputed statement is not a transaction of this patent", ART_52,
        )  # fmt: skip
    involved = set(state.owners) | {lic.licensee for lic in state.licences}
    if state.pledge is not None:
        involved.add(state.pledge.pledgee)
    if filed.claimant not in involved:
        raise _refuse(
            "NOT_A_PARTY", "dispute_filed.claimant",
            "only an owner, licensee or pledgee of the patent may file", ART_52,
        )  # fmt: skip
    _require(signers, {filed.claimant}, "the claimant files the dispute", ART_52)


def check_mediation(
    mediator_is_registered_mediator: bool,
    recorded: pb.MediationRecorded,
    dispute_known: bool,
    signers: frozenset[str],
) -> None:
    """Refuse a mediation record not signed by a registered mediator or about no known dispute."""
    if not dispute_known:
        raise _refuse("DISPUTE_UNKNOWN", "mediation_recorded.dispute_id", "no such dispute", ART_52)
    if not mediator_is_registered_mediator:
        raise _refuse(
            "NOT_A_MEDIATOR", "mediation_recorded.mediator",
            "only a party granted the mediator role records a mediation", ART_52,
        )  # fmt: skip
    _require(signers, {recorded.mediator}, "the mediator signs the record", ART_52)
