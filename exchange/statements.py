"""Statements: parsing, ids, signing, and the structural checks every statement must pass.

Pure: bytes and messages in, values or :class:`~exchange.errors.InvalidFieldError`
out. What this module checks needs nothing but the statement itself — sizes,
presence, identifiers in canonical form, money, dates, the replay window. What
needs the state of the ledger (who owns a patent, whether it is pledged, who
must sign) belongs to the legal rules.

Statement bytes are signed and stored verbatim, never re-serialised, so
identifiers must already be in canonical form: a statement naming
``cn201310123456.2`` is refused rather than silently rewritten.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError, Message

from exchange.errors import InvalidFieldError, SignatureInvalidError
from exchange.identifiers import (
    parse_application_number,
    parse_credit_code,
    parse_currency,
    parse_ipc,
)
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.note import Signer

# Signatures cover this prefix and the statement bytes, so that they mean
# nothing to any other protocol that signs with Ed25519.
SIGNING_PREFIX = b"kaifang/statement/v1\n"
MAX_STATEMENT_BYTES = 64 * 1024
MIN_NONCE, MAX_NONCE = 16, 32
MAX_TEXT = 4000  # characters in a free-text field (titles, summaries)
MAX_IDS = 32  # parties named in one repeated field (owners, assignees, …)


def statement_id(statement: bytes) -> bytes:
    """Return a statement's id: SHA-256 of its bytes (32 bytes)."""
    return hashlib.sha256(statement).digest()


def key_fingerprint(public_key: bytes) -> bytes:
    """Return the fingerprint that names an Ed25519 public key in a signature."""
    return hashlib.sha256(public_key).digest()


def party_id_for(public_key: bytes) -> str:
    """Return the party id fixed by a party's first public key."""
    return hashlib.sha256(public_key).hexdigest()[:32]


def sign(statement: bytes, signer: str, key: Ed25519PrivateKey | Signer) -> pb.Signature:
    """Sign ``statement`` as ``signer`` (a party id, "register" or "operator:<origin>").

    ``key`` is a party's Ed25519 key, or a note-signing key file's
    :class:`~ledger.note.Signer` (the register authority's, an operator's).
    """
    public = key.public_key if isinstance(key, Signer) else key.public_key().public_bytes_raw()
    return pb.Signature(
        signer=signer,
        key_fingerprint=key_fingerprint(public),
        signature=key.sign(SIGNING_PREFIX + statement),
    )


class VerifiedSignatures:
    """A bounded memory of signatures that verified: (public key, signature, statement digest).

    Verification is a pure function of that triple, so a signature checked
    once need not be checked again. The exchange checks the signatures of a
    batch on another core, outside the transaction that admits it; admission
    then finds them here. Thread-safe: filled and read from several threads.
    """

    def __init__(self, capacity: int = 1 << 16) -> None:
        """Remember at most ``capacity`` signatures (the oldest are forgotten first)."""
        self.capacity = capacity
        self._seen: dict[tuple[bytes, bytes, bytes], None] = {}
        self._lock = threading.Lock()

    def __contains__(self, triple: tuple[bytes, bytes, bytes]) -> bool:
        """Whether the triple verified before."""
        return triple in self._seen

    def add(self, triple: tuple[bytes, bytes, bytes]) -> None:
        """Remember a triple that verified."""
        with self._lock:
            self._seen[triple] = None
            while len(self._seen) > self.capacity:
                del self._seen[next(iter(self._seen))]


VERIFIED = VerifiedSignatures()


def verify(statement: bytes, signature: pb.Signature, public_key: bytes) -> None:
    """Check ``signature`` over ``statement`` with ``public_key``.

    Raises :class:`SignatureInvalidError` if it names another key or does not
    verify. A signature that verified before (:data:`VERIFIED`) is not
    checked again.
    """
    if not hmac.compare_digest(signature.key_fingerprint, key_fingerprint(public_key)):
        raise SignatureInvalidError(f"signature by {signature.signer!r} names another key")
    triple = (public_key, signature.signature, hashlib.sha256(statement).digest())
    if triple in VERIFIED:
        return
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signature.signature, SIGNING_PREFIX + statement
        )
    except (InvalidSignature, ValueError) as e:
        raise SignatureInvalidError(f"signature by {signature.signer!r} does not verify") from e
    VERIFIED.add(triple)


def parse_statement(data: bytes, field: str = "statement") -> pb.Statement:
    """Parse statement bytes; raise :class:`InvalidFieldError` if oversized or malformed."""
    if len(data) > MAX_STATEMENT_BYTES:
        raise InvalidFieldError(field, f"{len(data)} bytes; the limit is {MAX_STATEMENT_BYTES}")
    try:
        statement = pb.Statement.FromString(data)
    except DecodeError as e:
        raise InvalidFieldError(field, f"not a kaifang.exchange.v1.Statement: {e}") from e
    if statement.WhichOneof("body") is None:
        raise InvalidFieldError(f"{field}.body", "no statement kind is set")
    return statement


def check_replay_window(
    statement: pb.Statement, now: dt.datetime, window: dt.timedelta, skew: dt.timedelta
) -> None:
    """Refuse a statement created over ``window`` before ``now`` or over ``skew`` after it."""
    if not statement.HasField("created_at"):
        raise InvalidFieldError("created_at", "is required")
    try:
        created = statement.created_at.ToDatetime(tzinfo=dt.UTC)
    except (ValueError, OverflowError) as e:
        raise InvalidFieldError("created_at", "is not a valid timestamp") from e
    if created < now - window:
        raise InvalidFieldError(
            "created_at", f"{created.isoformat()} is older than the {window} acceptance window"
        )
    if created > now + skew:
        raise InvalidFieldError("created_at", f"{created.isoformat()} is in the future")


def to_date(value: pb.Date, field: str) -> dt.date:
    """Convert a Date message; raise :class:`InvalidFieldError` for an impossible date."""
    try:
        return dt.date(value.year, value.month, value.day)
    except (ValueError, OverflowError) as e:  # OverflowError: a part beyond C's int
        raise InvalidFieldError(
            field, f"{value.year}-{value.month}-{value.day} is not a date"
        ) from e


def _require_date(message: Message, name: str, field: str) -> dt.date:
    if not message.HasField(name):
        raise InvalidFieldError(field, "is required")
    return to_date(getattr(message, name), field)


# The largest amount a statement may carry, in minor units: ten trillion
# yuan, far above any patent transaction, and low enough that totals of
# thousands of them still fit the 64-bit integers of Money and of SQL sums.
MAX_AMOUNT_MINOR = 10**15


def _check_money(money: pb.Money, field: str, *, positive: bool = False) -> None:
    if money.amount_minor < 0 or (positive and money.amount_minor == 0):
        need = "positive" if positive else "not negative"
        raise InvalidFieldError(f"{field}.amount_minor", f"{money.amount_minor} must be {need}")
    if money.amount_minor > MAX_AMOUNT_MINOR:
        raise InvalidFieldError(
            f"{field}.amount_minor",
            f"{money.amount_minor} is above the limit of {MAX_AMOUNT_MINOR} minor units",
        )
    parse_currency(money.currency, f"{field}.currency")


def _check_text(value: str, field: str, *, required: bool = False) -> None:
    if required and not value.strip():
        raise InvalidFieldError(field, "is required")
    if len(value) > MAX_TEXT:
        raise InvalidFieldError(field, f"{len(value)} characters; the limit is {MAX_TEXT}")


def _check_application(value: str, field: str) -> None:
    canonical = str(parse_application_number(value, field))
    if value != canonical:
        raise InvalidFieldError(field, f"write it in canonical form: {canonical!r}")


def _check_party(value: str, field: str) -> None:
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise InvalidFieldError(field, f"{value!r} is not a party id (32 lower-case hex digits)")


def _check_parties(values: Iterable[str], field: str, *, required: bool = True) -> None:
    ids = list(values)
    if required and not ids:
        raise InvalidFieldError(field, "names no party")
    if len(ids) > MAX_IDS:
        raise InvalidFieldError(field, f"names {len(ids)} parties; the limit is {MAX_IDS}")
    if len(set(ids)) != len(ids):
        raise InvalidFieldError(field, "names a party twice")
    for i, value in enumerate(ids):
        _check_party(value, f"{field}[{i}]")


def _check_id(value: bytes, field: str) -> None:
    if len(value) != 32:
        raise InvalidFieldError(field, f"is {len(value)} bytes; a statement id is 32")


def _check_enum(message: Message, name: str, field: str) -> None:
    # Zero is every enum's _UNSPECIFIED; unknown numbers survive parsing in proto3.
    value = getattr(message, name)
    enum = message.DESCRIPTOR.fields_by_name[name].enum_type
    assert enum is not None, f"{name} is not an enum field"
    if value == 0 or value not in enum.values_by_number:
        raise InvalidFieldError(field, f"{value} is not a valid {enum.name}")


def _check_running(royalty: pb.RunningRoyalty, field: str) -> None:
    _check_enum(royalty, "basis", f"{field}.basis")
    if royalty.basis == pb.ROYALTY_BASIS_UNITS:
        if not royalty.HasField("per_unit"):
            raise InvalidFieldError(f"{field}.per_unit", "is required for a per-unit royalty")
        _check_money(royalty.per_unit, f"{field}.per_unit", positive=True)
    elif not 1 <= royalty.rate_basis_points <= 10000:
        raise InvalidFieldError(
            f"{field}.rate_basis_points", f"{royalty.rate_basis_points} is not in 1..10000"
        )


def check_terms(terms: pb.RoyaltyTerms, field: str) -> None:
    """Check an open licence's royalty terms (Patent Law Art. 50: method and standard)."""
    method = terms.WhichOneof("method")
    if method is None:
        raise InvalidFieldError(f"{field}.method", "no payment method is set")
    if method == "lump_sum":
        _check_money(terms.lump_sum, f"{field}.lump_sum", positive=True)
    elif method == "instalments":
        plan = terms.instalments.instalments
        if not plan:
            raise InvalidFieldError(f"{field}.instalments", "has no instalment")
        for i, instalment in enumerate(plan):
            _check_money(
                instalment.amount, f"{field}.instalments.instalments[{i}].amount", positive=True
            )
        if len({i.amount.currency for i in plan}) != 1:
            raise InvalidFieldError(f"{field}.instalments", "mixes currencies")
    elif method == "running":
        _check_running(terms.running, f"{field}.running")
    elif method == "entry_fee_and_royalty":
        both = terms.entry_fee_and_royalty
        _check_money(both.entry_fee, f"{field}.entry_fee_and_royalty.entry_fee", positive=True)
        _check_running(both.royalty, f"{field}.entry_fee_and_royalty.royalty")


def check_structure(statement: pb.Statement) -> None:
    """Check everything about ``statement`` that needs no ledger state.

    Raises :class:`InvalidFieldError` naming the first offending field (a
    protobuf field path such as ``offer_published.terms.lump_sum.currency``).
    """
    if not MIN_NONCE <= len(statement.nonce) <= MAX_NONCE:
        raise InvalidFieldError("nonce", f"is {len(statement.nonce)} bytes; use 16 to 32")
    kind = statement.WhichOneof("body")
    if kind is None:
        raise InvalidFieldError("body", "no statement kind is set")
    body = getattr(statement, kind)
    check = _CHECKS[kind]
    check(body, kind)


def _party_registered(m: pb.PartyRegistered, f: str) -> None:
    if len(m.public_key) != 32:
        raise InvalidFieldError(
            f"{f}.public_key", f"is {len(m.public_key)} bytes; Ed25519 keys are 32"
        )
    if m.party_id != party_id_for(m.public_key):
        raise InvalidFieldError(f"{f}.party_id", "must be derived from the public key")
    _check_text(m.name, f"{f}.name", required=True)
    _check_enum(m, "kind", f"{f}.kind")
    if m.kind != pb.PARTY_KIND_INDIVIDUAL:
        if parse_credit_code(m.identity_code, f"{f}.identity_code") != m.identity_code:
            raise InvalidFieldError(f"{f}.identity_code", "write it in capitals")
    elif m.identity_code:
        raise InvalidFieldError(
            f"{f}.identity_code", "individuals keep identity documents off the ledger"
        )
    if len(m.region) != 6 or not m.region.isdigit():
        raise InvalidFieldError(f"{f}.region", f"{m.region!r} is not a 6-digit division code")


def _party_key_rotated(m: pb.PartyKeyRotated, f: str) -> None:
    _check_party(m.party_id, f"{f}.party_id")
    if len(m.new_public_key) != 32:
        raise InvalidFieldError(f"{f}.new_public_key", "Ed25519 keys are 32 bytes")


def _role_granted(m: pb.RoleGranted, f: str) -> None:
    _check_party(m.party_id, f"{f}.party_id")
    _check_enum(m, "role", f"{f}.role")


def _patent_recorded(m: pb.PatentRecorded, f: str) -> None:
    _check_application(m.application_number, f"{f}.application_number")
    _check_text(m.title, f"{f}.title", required=True)
    if not m.ipc:
        raise InvalidFieldError(f"{f}.ipc", "needs at least one IPC symbol")
    for i, symbol in enumerate(m.ipc):
        if str(parse_ipc(symbol, f"{f}.ipc[{i}]")) != symbol:
            raise InvalidFieldError(
                f"{f}.ipc[{i}]", f"write it in canonical form: {parse_ipc(symbol)}"
            )
    _check_parties(m.owners, f"{f}.owners")
    filed = _require_date(m, "filing_date", f"{f}.filing_date")
    expiry = _require_date(m, "expiry_date", f"{f}.expiry_date")
    if expiry <= filed:
        raise InvalidFieldError(f"{f}.expiry_date", "is not after the filing date")
    pending = m.status == pb.PATENT_STATUS_PENDING
    if m.HasField("grant_date") == pending:
        # A granted patent has a grant date; an application does not (Patent Law Art. 39).
        raise InvalidFieldError(f"{f}.grant_date", "is required exactly when the patent is granted")
    if m.HasField("grant_date"):
        granted = to_date(m.grant_date, f"{f}.grant_date")
        if not filed <= granted < expiry:
            raise InvalidFieldError(f"{f}.grant_date", "is not between filing and expiry")
    _check_enum(m, "status", f"{f}.status")
    if m.HasField("fees_paid_until"):
        to_date(m.fees_paid_until, f"{f}.fees_paid_until")


def _patent_status_changed(m: pb.PatentStatusChanged, f: str) -> None:
    _check_application(m.application_number, f"{f}.application_number")
    _check_enum(m, "change", f"{f}.change")
    _require_date(m, "effective_date", f"{f}.effective_date")
    if m.change == pb.STATUS_CHANGE_FEES_PAID:
        _require_date(m, "fees_paid_until", f"{f}.fees_paid_until")


def _offer_published(m: pb.OfferPublished, f: str) -> None:
    number = parse_application_number(m.application_number, f"{f}.application_number")
    _check_application(m.application_number, f"{f}.application_number")
    check_terms(m.terms, f"{f}.terms")
    if not 1 <= m.licence_term_months <= 600:
        raise InvalidFieldError(
            f"{f}.licence_term_months", f"{m.licence_term_months} is not in 1..600"
        )
    if number.needs_evaluation_report and not m.evaluation_report.strip():
        raise InvalidFieldError(
            f"{f}.evaluation_report",
            "utility models and designs need a patent evaluation report (Patent Law Art. 50)",
        )
    _check_text(m.description, f"{f}.description")


def _offer_withdrawn(m: pb.OfferWithdrawn, f: str) -> None:
    _check_id(m.offer_id, f"{f}.offer_id")
    _check_text(m.reason, f"{f}.reason")


def _license_accepted(m: pb.LicenseAccepted, f: str) -> None:
    _check_id(m.offer_id, f"{f}.offer_id")
    _check_party(m.licensee, f"{f}.licensee")
    check_terms(m.terms, f"{f}.terms")
    _require_date(m, "start_date", f"{f}.start_date")
    if m.HasField("payment"):
        _check_money(m.payment.amount, f"{f}.payment.amount", positive=True)
        _require_date(m.payment, "paid_on", f"{f}.payment.paid_on")


def _license_recorded(m: pb.LicenseRecorded, f: str) -> None:
    _check_id(m.license_id, f"{f}.license_id")
    _check_text(m.recordal_number, f"{f}.recordal_number", required=True)
    _require_date(m, "recorded_on", f"{f}.recorded_on")


def _license_granted(m: pb.LicenseGranted, f: str) -> None:
    _check_application(m.application_number, f"{f}.application_number")
    _check_parties(m.licensors, f"{f}.licensors")
    _check_party(m.licensee, f"{f}.licensee")
    if m.licensee in m.licensors:
        raise InvalidFieldError(f"{f}.licensee", "is also a licensor")
    _check_enum(m, "type", f"{f}.type")
    start = _require_date(m, "start_date", f"{f}.start_date")
    if _require_date(m, "end_date", f"{f}.end_date") < start:
        raise InvalidFieldError(f"{f}.end_date", "is before the start date")
    check_terms(m.terms, f"{f}.terms")


def _transfer_registered(m: pb.TransferRegistered, f: str) -> None:
    _check_application(m.application_number, f"{f}.application_number")
    _check_parties(m.assignors, f"{f}.assignors")
    _check_parties(m.assignees, f"{f}.assignees")
    if m.HasField("price"):
        _check_money(m.price, f"{f}.price")


def _pledge_registered(m: pb.PledgeRegistered, f: str) -> None:
    _check_application(m.application_number, f"{f}.application_number")
    _check_parties(m.pledgors, f"{f}.pledgors")
    _check_party(m.pledgee, f"{f}.pledgee")
    if m.pledgee in m.pledgors:
        raise InvalidFieldError(f"{f}.pledgee", "is also a pledgor")
    if not m.HasField("secured_amount"):
        raise InvalidFieldError(f"{f}.secured_amount", "is required")
    _check_money(m.secured_amount, f"{f}.secured_amount", positive=True)
    start = _require_date(m, "debt_start", f"{f}.debt_start")
    if _require_date(m, "debt_end", f"{f}.debt_end") < start:
        raise InvalidFieldError(f"{f}.debt_end", "is before the debt's start")


def _pledge_released(m: pb.PledgeReleased, f: str) -> None:
    _check_id(m.pledge_id, f"{f}.pledge_id")


def _dispute_filed(m: pb.DisputeFiled, f: str) -> None:
    _check_application(m.application_number, f"{f}.application_number")
    _check_id(m.subject_id, f"{f}.subject_id")
    _check_enum(m, "kind", f"{f}.kind")
    _check_party(m.claimant, f"{f}.claimant")
    _check_parties(m.respondents, f"{f}.respondents")
    _check_text(m.summary, f"{f}.summary", required=True)


def _mediation_recorded(m: pb.MediationRecorded, f: str) -> None:
    _check_id(m.dispute_id, f"{f}.dispute_id")
    _check_party(m.mediator, f"{f}.mediator")
    _check_enum(m, "outcome", f"{f}.outcome")
    _check_text(m.summary, f"{f}.summary", required=True)
    _require_date(m, "concluded_on", f"{f}.concluded_on")


def _credit_event_recorded(m: pb.CreditEventRecorded, f: str) -> None:
    _check_party(m.party_id, f"{f}.party_id")
    _check_enum(m, "kind", f"{f}.kind")
    _check_party(m.supervisor, f"{f}.supervisor")
    if not m.evidence:
        raise InvalidFieldError(f"{f}.evidence", "a credit event needs evidence in the ledger")
    _check_text(m.summary, f"{f}.summary", required=True)
    _require_date(m, "occurred_on", f"{f}.occurred_on")


def _credit_event_repaired(m: pb.CreditEventRepaired, f: str) -> None:
    _check_id(m.event_id, f"{f}.event_id")
    _check_party(m.supervisor, f"{f}.supervisor")
    _check_text(m.summary, f"{f}.summary", required=True)


_CHECKS: dict[str, Callable[[Any, str], None]] = {
    "party_registered": _party_registered,
    "party_key_rotated": _party_key_rotated,
    "role_granted": _role_granted,
    "patent_recorded": _patent_recorded,
    "patent_status_changed": _patent_status_changed,
    "offer_published": _offer_published,
    "offer_withdrawn": _offer_withdrawn,
    "license_accepted": _license_accepted,
    "license_recorded": _license_recorded,
    "license_granted": _license_granted,
    "transfer_registered": _transfer_registered,
    "pledge_registered": _pledge_registered,
    "pledge_released": _pledge_released,
    "dispute_filed": _dispute_filed,
    "mediation_recorded": _mediation_recorded,
    "credit_event_recorded": _credit_event_recorded,
    "credit_event_repaired": _credit_event_repaired,
}
