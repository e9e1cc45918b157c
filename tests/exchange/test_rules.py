"""The legal rules, each tested both ways: the lawful case accepted, the unlawful one refused."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pytest

from exchange.errors import RuleViolationError, SignerError
from exchange.identifiers import application_check_character
from exchange.rules import REGISTER, PatentState, apply, check
from exchange.statements import statement_id
from kaifang.exchange.v1 import statements_pb2 as pb

TODAY = dt.date(2026, 11, 27)
OWNER, CO_OWNER, LICENSEE, OTHER, BANK = ("a" * 32, "b" * 32, "c" * 32, "d" * 32, "e" * 32)
DIGITS = "202310123456"
NUMBER = f"{DIGITS}.{application_check_character(DIGITS)}"
UTILITY_DIGITS = "202320000007"


def d(day: dt.date) -> pb.Date:
    return pb.Date(year=day.year, month=day.month, day=day.day)


def lump(fen: int) -> pb.RoyaltyTerms:
    return pb.RoyaltyTerms(lump_sum=pb.Money(amount_minor=fen, currency="CNY"))


def stmt(**body: object) -> pb.Statement:
    return pb.Statement(nonce=b"n" * 16, **body)  # type: ignore[arg-type]


@dataclass
class Ledger:
    """Applies statements through check() and apply(), as the exchange will."""

    state: PatentState | None = None
    ids: dict[str, bytes] = field(default_factory=dict)

    def submit(self, statement: pb.Statement, *signers: str, name: str | None = None) -> bytes:
        check(self.state, statement, frozenset(signers), TODAY)
        sid = statement_id(statement.SerializeToString())
        self.state = apply(self.state, statement, sid, TODAY)
        if name:
            self.ids[name] = sid
        return sid

    def refused(self, statement: pb.Statement, *signers: str) -> RuleViolationError:
        before = self.state
        with pytest.raises(RuleViolationError) as raised:
            check(self.state, statement, frozenset(signers), TODAY)
        assert self.state == before
        return raised.value

    def unsigned(self, statement: pb.Statement, *signers: str) -> SignerError:
        with pytest.raises(SignerError) as raised:
            check(self.state, statement, frozenset(signers), TODAY)
        return raised.value


def recorded(owners: tuple[str, ...] = (OWNER,), **changes: object) -> pb.Statement:
    record = pb.PatentRecorded(
        application_number=NUMBER, title="A method", ipc=["H04L 9/32"], owners=list(owners),
        filing_date=d(dt.date(2023, 1, 5)), grant_date=d(dt.date(2025, 3, 1)),
        expiry_date=d(dt.date(2043, 1, 5)), status=pb.PATENT_STATUS_IN_FORCE,
        fees_paid_until=d(dt.date(2027, 1, 4)), region="110108",
    )  # fmt: skip
    for key, value in changes.items():
        if isinstance(value, pb.Date):
            getattr(record, key).CopyFrom(value)
        else:
            setattr(record, key, value)
    return stmt(patent_recorded=record)


def offer(fen: int = 5_000_000) -> pb.Statement:
    return stmt(
        offer_published=pb.OfferPublished(
            application_number=NUMBER, terms=lump(fen), licence_term_months=36
        )
    )


def accept(
    offer_id: bytes, fen: int = 5_000_000, licensee: str = LICENSEE, paid: int | None = None
) -> pb.Statement:
    payment = pb.Payment(
        amount=pb.Money(amount_minor=fen if paid is None else paid, currency="CNY"),
        reference="TX", paid_on=d(TODAY),
    )  # fmt: skip
    return stmt(
        license_accepted=pb.LicenseAccepted(
            offer_id=offer_id, licensee=licensee, terms=lump(fen), start_date=d(TODAY),
            payment=payment,
        )
    )  # fmt: skip


def grant(kind: pb.LicenseType.ValueType, end: dt.date = dt.date(2030, 1, 1)) -> pb.Statement:
    return stmt(
        license_granted=pb.LicenseGranted(
            application_number=NUMBER, licensors=[OWNER], licensee=OTHER, type=kind,
            start_date=d(TODAY), end_date=d(end), terms=lump(1),
        )
    )  # fmt: skip


def status(change: pb.StatusChange.ValueType) -> pb.Statement:
    return stmt(
        patent_status_changed=pb.PatentStatusChanged(
            application_number=NUMBER,
            change=change,
            effective_date=d(TODAY),
        )
    )


def pledge(debt_end: dt.date = dt.date(2029, 1, 1)) -> pb.Statement:
    return stmt(
        pledge_registered=pb.PledgeRegistered(
            application_number=NUMBER, pledgors=[OWNER], pledgee=BANK,
            secured_amount=pb.Money(amount_minor=10**8, currency="CNY"),
            debt_start=d(TODAY), debt_end=d(debt_end),
        )
    )  # fmt: skip


def transfer() -> pb.Statement:
    return stmt(
        transfer_registered=pb.TransferRegistered(
            application_number=NUMBER, assignors=[OWNER], assignees=[OTHER]
        )
    )


@pytest.fixture
def ledger() -> Ledger:
    book = Ledger()
    book.submit(recorded(), REGISTER)
    return book


def test_open_licence_scenario(ledger: Ledger) -> None:
    offer_id = ledger.submit(offer(), OWNER)
    first = ledger.submit(accept(offer_id), LICENSEE)
    ledger.submit(accept(offer_id, licensee=OTHER), OTHER)
    ledger.submit(stmt(offer_withdrawn=pb.OfferWithdrawn(offer_id=offer_id)), OWNER)
    third = accept(offer_id, licensee=BANK)
    assert ledger.refused(third, BANK).code == "OFFER_NOT_ACTIVE"
    assert ledger.state is not None
    licences = ledger.state.licences
    assert [lic.licensee for lic in licences] == [LICENSEE, OTHER]  # they stand (Art. 50)
    assert licences[0].license_id == first
    assert licences[0].end == dt.date(2029, 11, 27)  # 36 months
    assert licences[0].recordal_due == dt.date(2027, 2, 27)  # three months


def test_only_the_register_records_patents() -> None:
    assert Ledger().unsigned(recorded(), OWNER).missing == {REGISTER}


def test_acceptance_on_stale_terms_is_refused(ledger: Ledger) -> None:
    offer_id = ledger.submit(offer(5_000_000), OWNER)
    error = ledger.refused(accept(offer_id, fen=4_000_000), LICENSEE)
    assert (error.code, error.field) == ("TERMS_NOT_IN_FORCE", "license_accepted.terms")
    assert error.legal_basis == "Patent Law Art. 51"


def test_acceptance_needs_the_licensees_signature(ledger: Ledger) -> None:
    offer_id = ledger.submit(offer(), OWNER)
    assert ledger.unsigned(accept(offer_id), OTHER).missing == {LICENSEE}


def test_declaration_by_one_co_owner_is_refused() -> None:
    book = Ledger()
    book.submit(recorded(owners=(OWNER, CO_OWNER)), REGISTER)
    assert book.unsigned(offer(), OWNER).missing == {CO_OWNER}
    book.submit(offer(), OWNER, CO_OWNER)


def test_exclusive_licence_blocks_a_declaration(ledger: Ledger) -> None:
    ledger.submit(grant(pb.LICENSE_TYPE_EXCLUSIVE), OWNER, OTHER)
    assert ledger.refused(offer(), OWNER).code == "EXCLUSIVE_LICENSE_IN_FORCE"


def test_ordinary_licence_does_not_block_a_declaration(ledger: Ledger) -> None:
    ledger.submit(grant(pb.LICENSE_TYPE_ORDINARY), OWNER, OTHER)
    ledger.submit(offer(), OWNER)


@pytest.mark.parametrize("kind", [pb.LICENSE_TYPE_EXCLUSIVE, pb.LICENSE_TYPE_SOLE])
def test_declaration_blocks_exclusive_and_sole_licences(
    ledger: Ledger, kind: pb.LicenseType.ValueType
) -> None:
    ledger.submit(offer(), OWNER)
    error = ledger.refused(grant(kind), OWNER, OTHER)
    assert (error.code, error.legal_basis) == ("OPEN_LICENSE_ACTIVE", "Patent Law Art. 51")
    ledger.submit(grant(pb.LICENSE_TYPE_ORDINARY), OWNER, OTHER)


def test_pledge_blocks_a_transfer_until_the_pledgee_co_signs(ledger: Ledger) -> None:
    ledger.submit(pledge(), OWNER, BANK)
    error = ledger.unsigned(transfer(), OWNER, OTHER)
    assert (error.missing, error.legal_basis) == ({BANK}, "Civil Code Art. 444")
    ledger.submit(transfer(), OWNER, OTHER, BANK)
    assert ledger.state is not None
    assert ledger.state.owners == (OTHER,)


def test_pledge_blocks_a_declaration_without_the_pledgees_consent(ledger: Ledger) -> None:
    ledger.submit(pledge(), OWNER, BANK)
    assert ledger.unsigned(offer(), OWNER).missing == {BANK}
    ledger.submit(offer(), OWNER, BANK)


def test_a_patent_cannot_be_pledged_twice_and_only_the_pledgee_releases(ledger: Ledger) -> None:
    pledge_id = ledger.submit(pledge(), OWNER, BANK)
    assert ledger.refused(pledge(), OWNER, BANK).code == "PATENT_PLEDGED"
    release = stmt(pledge_released=pb.PledgeReleased(pledge_id=pledge_id))
    assert ledger.unsigned(release, OWNER).missing == {BANK}
    ledger.submit(release, BANK)
    ledger.submit(pledge(), OWNER, BANK)


@pytest.mark.parametrize(
    "suspension",
    [pb.STATUS_CHANGE_SUSPENDED_OWNERSHIP_DISPUTE, pb.STATUS_CHANGE_SUSPENDED_COURT_PRESERVATION],
)
def test_suspension_blocks_declarations_transfers_and_pledges(
    ledger: Ledger, suspension: pb.StatusChange.ValueType
) -> None:
    ledger.submit(status(suspension), REGISTER)
    for statement, signers in (
        (offer(), (OWNER,)),
        (transfer(), (OWNER, OTHER)),
        (pledge(), (OWNER, BANK)),
    ):
        assert ledger.refused(statement, *signers).code == "PROCEDURES_SUSPENDED"
    lift = status(pb.STATUS_CHANGE_SUSPENSION_LIFTED)
    lift.patent_status_changed.lifted = suspension
    ledger.submit(lift, REGISTER)
    ledger.submit(offer(), OWNER)


def test_unpaid_fees_block_a_declaration_until_paid(ledger: Ledger) -> None:
    ledger.submit(status(pb.STATUS_CHANGE_FEE_UNPAID), REGISTER)
    assert ledger.refused(offer(), OWNER).code == "FEES_UNPAID"
    paid = status(pb.STATUS_CHANGE_FEES_PAID)
    paid.patent_status_changed.fees_paid_until.CopyFrom(d(dt.date(2028, 1, 4)))
    ledger.submit(paid, REGISTER)
    ledger.submit(offer(), OWNER)


def test_fees_paid_only_to_the_past_block_a_declaration() -> None:
    book = Ledger()
    book.submit(recorded(fees_paid_until=d(dt.date(2026, 1, 4))), REGISTER)
    assert book.refused(offer(), OWNER).code == "FEES_UNPAID"


def test_lapsed_patent_cannot_be_offered_until_restored(ledger: Ledger) -> None:
    ledger.submit(status(pb.STATUS_CHANGE_LAPSED), REGISTER)
    assert ledger.refused(offer(), OWNER).code == "PATENT_NOT_IN_FORCE"
    ledger.submit(status(pb.STATUS_CHANGE_RESTORED), REGISTER)
    ledger.submit(offer(), OWNER)


def test_pending_patent_cannot_be_offered() -> None:
    book = Ledger()
    book.submit(recorded(status=pb.PATENT_STATUS_PENDING), REGISTER)
    assert book.refused(offer(), OWNER).code == "PATENT_NOT_IN_FORCE"


def test_licence_or_debt_term_beyond_expiry_is_refused(ledger: Ledger) -> None:
    error = ledger.refused(grant(pb.LICENSE_TYPE_ORDINARY, end=dt.date(2043, 1, 6)), OWNER, OTHER)
    assert (error.code, error.legal_basis) == ("TERM_BEYOND_EXPIRY", "Civil Code Art. 865")
    ledger.submit(grant(pb.LICENSE_TYPE_ORDINARY, end=dt.date(2043, 1, 5)), OWNER, OTHER)
    assert ledger.refused(pledge(dt.date(2044, 1, 1)), OWNER, BANK).code == "TERM_BEYOND_EXPIRY"


def test_open_licence_ends_with_the_patent() -> None:
    book = Ledger()
    book.submit(recorded(expiry_date=d(dt.date(2027, 6, 1))), REGISTER)
    offer_id = book.submit(offer(), OWNER)
    book.submit(accept(offer_id), LICENSEE)
    assert book.state is not None
    assert book.state.licences[0].end == dt.date(2027, 6, 1)


def test_only_owners_transfer_pledge_or_license(ledger: Ledger) -> None:
    wrong = transfer()
    wrong.transfer_registered.assignors[:] = [OTHER]
    assert ledger.refused(wrong, OTHER).code == "ASSIGNORS_NOT_OWNERS"
    wrong_pledge = pledge()
    wrong_pledge.pledge_registered.pledgors[:] = [OTHER]
    assert ledger.refused(wrong_pledge, OTHER, BANK).code == "PLEDGORS_NOT_OWNERS"
    wrong_grant = grant(pb.LICENSE_TYPE_ORDINARY)
    wrong_grant.license_granted.licensors[:] = [LICENSEE]
    assert ledger.refused(wrong_grant, LICENSEE, OTHER).code == "LICENSORS_NOT_OWNERS"


def test_statements_about_unrecorded_patents_are_refused() -> None:
    assert Ledger().refused(offer(), OWNER).code == "PATENT_UNKNOWN"


def test_acceptance_without_the_published_payment_is_refused(ledger: Ledger) -> None:
    offer_id = ledger.submit(offer(5_000_000), OWNER)
    unpaid = accept(offer_id)
    unpaid.license_accepted.ClearField("payment")
    assert ledger.refused(unpaid, LICENSEE).code == "PAYMENT_MISMATCH"
    assert ledger.refused(accept(offer_id, paid=1), LICENSEE).code == "PAYMENT_MISMATCH"
    ledger.submit(accept(offer_id), LICENSEE)


def test_free_licences_take_no_payment(ledger: Ledger) -> None:
    free = offer()
    free.offer_published.terms.CopyFrom(pb.RoyaltyTerms(free=pb.Free()))
    offer_id = ledger.submit(free, OWNER)
    taken = accept(offer_id)
    taken.license_accepted.terms.CopyFrom(pb.RoyaltyTerms(free=pb.Free()))
    assert ledger.refused(taken, LICENSEE).code == "PAYMENT_NOT_DUE"
    taken.license_accepted.ClearField("payment")
    ledger.submit(taken, LICENSEE)


def test_acceptance_must_start_now_and_within_the_term(ledger: Ledger) -> None:
    offer_id = ledger.submit(offer(), OWNER)
    for start in (dt.date(2003, 1, 1), dt.date(2099, 1, 1)):
        late = accept(offer_id)
        late.license_accepted.start_date.CopyFrom(d(start))
        assert ledger.refused(late, LICENSEE).code == "START_OUT_OF_TERM"


def test_a_licence_is_recorded_once_by_a_party_to_it(ledger: Ledger) -> None:
    offer_id = ledger.submit(offer(), OWNER)
    license_id = ledger.submit(accept(offer_id), LICENSEE)
    recordal = stmt(
        license_recorded=pb.LicenseRecorded(
            license_id=license_id, recordal_number="2026990000123", recorded_on=d(TODAY)
        )
    )
    with pytest.raises(SignerError):
        check(ledger.state, recordal, frozenset({OTHER}), TODAY)
    ledger.submit(recordal, LICENSEE)
    assert ledger.state is not None
    assert ledger.state.licences[0].recorded
    assert ledger.refused(recordal, OWNER).code == "ALREADY_RECORDED"
    stray = stmt(license_recorded=pb.LicenseRecorded(license_id=bytes(32), recorded_on=d(TODAY)))
    assert ledger.refused(stray, LICENSEE).code == "LICENSE_UNKNOWN"


def test_lifting_one_suspension_leaves_the_other(ledger: Ledger) -> None:
    ledger.submit(status(pb.STATUS_CHANGE_SUSPENDED_OWNERSHIP_DISPUTE), REGISTER)
    ledger.submit(status(pb.STATUS_CHANGE_SUSPENDED_COURT_PRESERVATION), REGISTER)
    lift = status(pb.STATUS_CHANGE_SUSPENSION_LIFTED)
    lift.patent_status_changed.lifted = pb.STATUS_CHANGE_SUSPENDED_OWNERSHIP_DISPUTE
    ledger.submit(lift, REGISTER)
    assert ledger.refused(transfer(), OWNER, OTHER).code == "PROCEDURES_SUSPENDED"
    assert ledger.refused(lift, REGISTER).code == "NOT_SUSPENDED"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (pb.LICENSE_TYPE_SOLE, pb.LICENSE_TYPE_SOLE),
        (pb.LICENSE_TYPE_SOLE, pb.LICENSE_TYPE_EXCLUSIVE),
        (pb.LICENSE_TYPE_EXCLUSIVE, pb.LICENSE_TYPE_ORDINARY),
        (pb.LICENSE_TYPE_ORDINARY, pb.LICENSE_TYPE_EXCLUSIVE),
    ],
)
def test_sole_and_exclusive_licences_admit_no_other_licensee(
    ledger: Ledger, first: pb.LicenseType.ValueType, second: pb.LicenseType.ValueType
) -> None:
    ledger.submit(grant(first), OWNER, OTHER)
    again = grant(second)
    again.license_granted.licensee = LICENSEE
    assert ledger.refused(again, OWNER, LICENSEE).code == "EXCLUSIVE_LICENSE_CONFLICT"
    later = grant(second, end=dt.date(2035, 1, 1))
    later.license_granted.licensee = LICENSEE
    later.license_granted.start_date.CopyFrom(d(dt.date(2031, 1, 1)))
    ledger.submit(later, OWNER, LICENSEE)  # after the first ends: no overlap


def test_one_co_owner_may_grant_an_ordinary_licence_but_not_an_exclusive_one() -> None:
    book = Ledger()
    book.submit(recorded(owners=(OWNER, CO_OWNER)), REGISTER)
    book.submit(grant(pb.LICENSE_TYPE_ORDINARY), OWNER, OTHER)
    exclusive = grant(pb.LICENSE_TYPE_EXCLUSIVE)
    exclusive.license_granted.licensee = LICENSEE
    assert book.refused(exclusive, OWNER, LICENSEE).code == "LICENSORS_NOT_OWNERS"


def test_unknown_fee_status_blocks_a_declaration() -> None:
    book = Ledger()
    unknown = recorded()
    unknown.patent_recorded.ClearField("fees_paid_until")
    book.submit(unknown, REGISTER)
    assert book.refused(offer(), OWNER).code == "FEES_UNPAID"


def test_a_lapsed_right_is_not_transferred_and_its_declaration_ends(ledger: Ledger) -> None:
    ledger.submit(offer(), OWNER)
    ledger.submit(status(pb.STATUS_CHANGE_LAPSED), REGISTER)
    assert ledger.refused(transfer(), OWNER, OTHER).code == "PATENT_NOT_IN_FORCE"
    ledger.submit(status(pb.STATUS_CHANGE_RESTORED), REGISTER)
    assert ledger.state is not None
    assert ledger.state.offer is None


def test_register_status_changes_follow_the_patents_status(ledger: Ledger) -> None:
    # In force: a grant or a restoration makes no sense; a lapse does.
    for change in (pb.STATUS_CHANGE_GRANTED, pb.STATUS_CHANGE_RESTORED):
        refused = ledger.refused(status(change), REGISTER)
        assert (refused.code, refused.field) == (
            "STATUS_TRANSITION",
            "patent_status_changed.change",
        )
    ledger.submit(status(pb.STATUS_CHANGE_LAPSED), REGISTER)
    assert ledger.refused(status(pb.STATUS_CHANGE_FEE_UNPAID), REGISTER).code == "STATUS_TRANSITION"
    ledger.submit(status(pb.STATUS_CHANGE_RESTORED), REGISTER)
    ledger.submit(status(pb.STATUS_CHANGE_INVALIDATED), REGISTER)
    # Invalidated is final: nothing revives it, nothing suspends it.
    for change in (
        pb.STATUS_CHANGE_GRANTED, pb.STATUS_CHANGE_RESTORED, pb.STATUS_CHANGE_FEES_PAID,
        pb.STATUS_CHANGE_INVALIDATED, pb.STATUS_CHANGE_SUSPENDED_COURT_PRESERVATION,
    ):  # fmt: skip
        refused = ledger.refused(status(change), REGISTER)
        assert refused.code == "STATUS_TRANSITION"
        assert refused.legal_basis


def test_a_pending_application_is_granted_once() -> None:
    book = Ledger()
    book.submit(recorded(status=pb.PATENT_STATUS_PENDING), REGISTER)
    book.submit(status(pb.STATUS_CHANGE_GRANTED), REGISTER)
    assert book.state is not None
    assert book.state.status == pb.PATENT_STATUS_IN_FORCE
    assert book.refused(status(pb.STATUS_CHANGE_GRANTED), REGISTER).code == "STATUS_TRANSITION"
