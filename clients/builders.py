"""Typed builders of statements, and drafts that collect their signatures.

A builder takes keyword arguments in Python types (``str``, ``datetime.date``,
integer minor units with an ISO 4217 currency, the enums of
``kaifang.exchange.v1.statements_pb2``) and returns a :class:`Draft`: the
statement serialised once, with a fresh 16-byte nonce and ``created_at`` now,
and the names of the signers it needs. Those bytes are what every party
signs and what the exchange stores, so a draft never re-serialises them.

Every builder runs :func:`exchange.statements.check_structure` on what it
built and turns a refusal into a :class:`~clients.errors.DraftError` whose
message starts with the offending field (``offer_published.licence_term_months:
0 is not in 1..600``), with the exchange's ``InvalidFieldError`` as its
cause: callers of the client library catch one error tree, and a builder
never returns a draft the exchange would refuse as malformed.

``needs`` lists the signers the rules require that a builder can know from
its own arguments (a pledge: the pledgors and the pledgee). Where the signers
depend on ledger state a client cannot see (every owner must sign a
withdrawal; a pledged patent's pledgee must consent to a licence or a
transfer), the builder takes them explicitly (``signers=`` or ``also=``).
A name appears twice in ``needs`` only for a key rotation, which the party
signs with its old key and with its new one.

A draft travels between parties as a small JSON file (:meth:`Draft.save`,
:meth:`Draft.load`)::

    {"format": "kaifang-draft/v1", "kind": "pledge_registered",
     "statement_id": "<hex SHA-256 of the statement>", "statement": "<base64>",
     "needs": ["<party id>", ...],
     "signatures": [{"signer": "...", "key_fingerprint": "<base64>",
                     "signature": "<base64>"}]}

``statement_id`` is the id the ledger will give the statement; on load it
must match, which catches a damaged or hand-edited file (it is no security:
the signatures are). A signature added with :meth:`Draft.sign` is verified at
once with the signing key. Signatures already in a loaded file are checked
for form, but can be verified only where the statement itself carries the
signer's public key (a registration, a key rotation); the others are checked
by the exchange on submission, which refuses any that does not verify.
"""

from __future__ import annotations

import binascii
import contextlib
import datetime as dt
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clients.errors import DraftError
from clients.keys import PartyKey
from exchange.errors import InvalidFieldError, SignatureInvalidError
from exchange.parties import OPERATOR_PREFIX
from exchange.rules import REGISTER
from exchange.statements import (
    check_structure,
    check_terms,
    key_fingerprint,
    parse_statement,
    party_id_for,
    sign,
    statement_id,
    verify,
)
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger.note import Signer, b64decode_canonical, b64encode

DRAFT_FORMAT = "kaifang-draft/v1"
NONCE_BYTES = 16
# A statement is at most 64 KiB; its base64 and a few signatures fit well inside this.
MAX_DRAFT_FILE_BYTES = 1024 * 1024
_FIELDS = frozenset({"format", "kind", "statement_id", "statement", "needs", "signatures"})
_SIGNATURE_FIELDS = frozenset({"signer", "key_fingerprint", "signature"})
_UINT32 = 2**32 - 1
_INT64 = 2**63 - 1


@dataclass(frozen=True)
class Draft:
    """A statement's bytes, the signatures collected so far, and the signers it needs.

    Immutable: :meth:`sign` returns a new draft. Build one with a builder of
    this module or :meth:`load`, not by hand.
    """

    statement: bytes
    needs: tuple[str, ...]
    signatures: tuple[pb.Signature, ...] = ()

    @property
    def parsed(self) -> pb.Statement:
        """The statement as a message (parsed from :attr:`statement`, never the reverse)."""
        return pb.Statement.FromString(self.statement)

    @property
    def kind(self) -> str:
        """The statement's kind: the name of its body field, e.g. ``pledge_registered``."""
        kind = self.parsed.WhichOneof("body")
        assert kind is not None, "a draft's statement has passed check_structure"
        return kind

    @property
    def statement_id(self) -> bytes:
        """The id the ledger will give the statement (SHA-256 of its bytes)."""
        return statement_id(self.statement)

    @property
    def signers(self) -> tuple[str, ...]:
        """The names on the signatures collected so far, in order."""
        return tuple(s.signer for s in self.signatures)

    @property
    def missing(self) -> tuple[str, ...]:
        """The needed signers who have not signed yet, in the order of :attr:`needs`."""
        left = Counter(self.needs) - Counter(self.signers)
        missing = []
        for name in self.needs:
            if left[name] > 0:
                missing.append(name)
                left[name] -= 1
        return tuple(missing)

    def sign(self, key: PartyKey | Signer, signer: str | None = None) -> Draft:
        """Return this draft with ``key``'s signature as ``signer`` added, verified at once.

        ``signer`` defaults to a party key's own party id, or, in a key
        rotation signed with the new key, to the rotating party's id. A note
        key (:class:`~ledger.note.Signer`: the register's, an operator's)
        must be told whom it signs for (``"register"``, ``"operator:<origin>"``).
        Raises :class:`DraftError` if the signer is not one the draft needs,
        has signed already, or the signature does not verify.
        """
        statement = self.parsed
        if signer is None:
            if not isinstance(key, PartyKey):
                raise DraftError(
                    "say whom a register or operator key signs for: "
                    f"{REGISTER!r} or '{OPERATOR_PREFIX}<origin>'"
                )
            signer = key.party_id
            rotation = statement.party_key_rotated
            if key.public_key == rotation.new_public_key:
                # The new key has no party of its own yet: it signs for the rotating party.
                signer = rotation.party_id
        if isinstance(key, PartyKey):
            signature = key.sign(self.statement, signer)
        else:
            signature = sign(self.statement, signer, key)
        _admit(statement, self.needs, self.signatures, signature)
        try:
            verify(self.statement, signature, key.public_key)
        except SignatureInvalidError as e:
            raise DraftError(f"the signature of {signer} does not verify: {e}") from e
        return replace(self, signatures=(*self.signatures, signature))

    def check_complete(self) -> None:
        """Raise :class:`DraftError` naming the needed signers who have not signed yet."""
        if self.missing:
            raise DraftError(f"{self.kind} still needs the signature of {', '.join(self.missing)}")

    def signed(self) -> pb.SignedStatement:
        """The statement and the signatures so far, as submitted (complete or not)."""
        # The constructor copies the signatures: the draft's own stay unchanged.
        return pb.SignedStatement(statement=self.statement, signatures=self.signatures)

    def describe(self) -> str:
        """A few lines for people: kind and subject, id, who signed, who is missing."""
        missing = ", ".join(self.missing) or "nobody (ready to submit)"
        return "\n".join(
            [
                f"{self.kind}: {_subject(self.parsed)}",
                f"statement id: {self.statement_id.hex()}",
                f"signed by: {', '.join(self.signers) or 'nobody yet'}",
                f"missing: {missing}",
            ]
        )

    def to_json(self) -> str:
        """The draft as the text of a draft file."""
        document = {
            "format": DRAFT_FORMAT,
            "kind": self.kind,
            "statement_id": self.statement_id.hex(),
            "statement": b64encode(self.statement),
            "needs": list(self.needs),
            "signatures": [
                {
                    "signer": s.signer,
                    "key_fingerprint": b64encode(s.key_fingerprint),
                    "signature": b64encode(s.signature),
                }
                for s in self.signatures
            ],
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "draft") -> Draft:
        """Parse a draft file's text; raise :class:`DraftError` naming ``source`` and the fault."""
        try:
            document = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DraftError(f"{source} is not JSON: {e}") from e
        try:
            return _from_document(document)
        except DraftError as e:
            raise DraftError(f"{source}: {e}") from e

    def save(self, path: Path | str) -> None:
        """Write the draft file at ``path`` atomically (readers see the old file or the new).

        The file is readable by its owner only: a draft may name prices and
        contracts. Raises :class:`DraftError` if it cannot be written.
        """
        path = Path(path)
        try:
            fd, temporary = tempfile.mkstemp(
                dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
            )
        except OSError as e:
            raise DraftError(f"{path} cannot be written: {e.strerror}") from e
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(self.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise DraftError(f"{path} cannot be written: {e.strerror}") from e

    @classmethod
    def load(cls, path: Path | str) -> Draft:
        """Read the draft file at ``path``; raise :class:`DraftError` if it is missing or bad."""
        path = Path(path)
        try:
            with path.open("rb") as f:
                data = f.read(MAX_DRAFT_FILE_BYTES + 1)
        except OSError as e:
            raise DraftError(f"{path} cannot be read: {e.strerror}") from e
        if len(data) > MAX_DRAFT_FILE_BYTES:
            raise DraftError(f"{path} is too large to be a draft")
        return cls.from_json(data, str(path))


def _from_document(document: Any) -> Draft:
    if not isinstance(document, dict):
        raise DraftError("is not a JSON object")
    if document.get("format") != DRAFT_FORMAT:
        raise DraftError(f"format is {document.get('format')!r}, not {DRAFT_FORMAT!r}")
    unknown = sorted(set(document) - _FIELDS)
    if unknown:
        raise DraftError(f"unknown field {unknown[0]!r}")
    absent = sorted(_FIELDS - {"statement_id"} - set(document))
    if absent:
        raise DraftError(f"the field {absent[0]!r} is missing")
    data = _base64(document["statement"], "statement")
    try:
        statement = parse_statement(data)
        check_structure(statement)
    except InvalidFieldError as e:
        raise DraftError(f"the statement is malformed: {e}") from e
    kind = statement.WhichOneof("body")
    if document["kind"] != kind:
        raise DraftError(f"kind is {document['kind']!r}, but the statement is a {kind}")
    if "statement_id" in document and document["statement_id"] != statement_id(data).hex():
        raise DraftError("statement_id does not match the statement: the file was altered")
    needs = document["needs"]
    if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
        raise DraftError("needs is not a list of signer names")
    for name in needs:
        _check_signer_name(name, "needs")
    if not isinstance(document["signatures"], list):
        raise DraftError("signatures is not a list")
    known = _keys_in(statement)
    signatures: list[pb.Signature] = []
    for i, entry in enumerate(document["signatures"]):
        where = f"signatures[{i}]"
        signature = _signature(entry, where)
        try:
            _admit(statement, tuple(needs), tuple(signatures), signature)
            public = known.get((signature.signer, signature.key_fingerprint))
            if public is not None:
                verify(data, signature, public)
        except (DraftError, SignatureInvalidError) as e:
            raise DraftError(f"{where}: {e}") from e
        signatures.append(signature)
    return Draft(data, tuple(needs), tuple(signatures))


def _signature(entry: Any, where: str) -> pb.Signature:
    if not isinstance(entry, dict) or set(entry) != _SIGNATURE_FIELDS:
        raise DraftError(f"{where} must have exactly the fields {sorted(_SIGNATURE_FIELDS)}")
    signer = entry["signer"]
    if not isinstance(signer, str):
        raise DraftError(f"{where}.signer is not a string")
    _check_signer_name(signer, f"{where}.signer")
    fingerprint = _base64(entry["key_fingerprint"], f"{where}.key_fingerprint")
    if len(fingerprint) != 32:
        raise DraftError(f"{where}.key_fingerprint is {len(fingerprint)} bytes, not 32")
    raw = _base64(entry["signature"], f"{where}.signature")
    if len(raw) != 64:
        raise DraftError(f"{where}.signature is {len(raw)} bytes; Ed25519 signatures are 64")
    return pb.Signature(signer=signer, key_fingerprint=fingerprint, signature=raw)


def _base64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise DraftError(f"{where} is not a base64 string")
    try:
        return b64decode_canonical(value)
    except (ValueError, binascii.Error) as e:
        raise DraftError(f"{where} is not canonical base64") from e


def _keys_in(statement: pb.Statement) -> dict[tuple[str, bytes], bytes]:
    """The (signer, fingerprint) → public key pairs the statement itself reveals."""
    kind = statement.WhichOneof("body")
    if kind == "party_registered":
        r = statement.party_registered
        return {(r.party_id, key_fingerprint(r.public_key)): r.public_key}
    if kind == "party_key_rotated":
        k = statement.party_key_rotated
        return {(k.party_id, key_fingerprint(k.new_public_key)): k.new_public_key}
    return {}


def _admit(
    statement: pb.Statement,
    needs: tuple[str, ...],
    existing: tuple[pb.Signature, ...],
    signature: pb.Signature,
) -> None:
    """Refuse ``signature`` if its signer is not needed or has signed already."""
    name = signature.signer
    if name not in needs:
        raise DraftError(f"{name} is not among the signers this draft needs: {', '.join(needs)}")
    earlier = [s for s in existing if s.signer == name]
    if any(s.key_fingerprint == signature.key_fingerprint for s in earlier):
        raise DraftError(f"{name} has already signed this draft with this key")
    if len(earlier) >= needs.count(name):
        raise DraftError(f"{name} has already signed this draft")
    if earlier and statement.HasField("party_key_rotated"):
        # The two signatures of a rotation are the old key's and the new key's.
        new = key_fingerprint(statement.party_key_rotated.new_public_key)
        if new not in {signature.key_fingerprint, *(s.key_fingerprint for s in earlier)}:
            raise DraftError(f"{name} must sign a key rotation with the new key too")


def _check_signer_name(name: str, where: str) -> None:
    party = len(name) == 32 and all(c in "0123456789abcdef" for c in name)
    operator = name.startswith(OPERATOR_PREFIX) and len(name) > len(OPERATOR_PREFIX)
    if not (party or operator or name == REGISTER):
        raise DraftError(
            f"{where}: {name!r} is not a signer: a party id (32 lower-case hex digits), "
            f"{REGISTER!r} or '{OPERATOR_PREFIX}<origin>'"
        )


def _subject(statement: pb.Statement) -> str:
    """What a statement is about, in a few words."""
    kind = statement.WhichOneof("body")
    body = getattr(statement, kind or "")
    if hasattr(body, "application_number"):
        return f"patent {body.application_number}"
    by_id = {
        "offer_withdrawn": ("offer", "offer_id"),
        "license_accepted": ("offer", "offer_id"),
        "license_recorded": ("licence", "license_id"),
        "pledge_released": ("pledge", "pledge_id"),
        "mediation_recorded": ("dispute", "dispute_id"),
        "credit_event_repaired": ("credit event", "event_id"),
    }
    if kind in by_id:
        what, field = by_id[kind]
        return f"{what} {getattr(body, field).hex()}"
    if kind == "party_registered":
        return f"party {body.party_id} ({body.name})"
    if kind == "role_granted":
        return f"party {body.party_id}, role {pb.Role.Name(body.role)}"
    return f"party {body.party_id}"


# Royalty terms and money.


def money(amount_minor: int, currency: str) -> pb.Money:
    """An amount in minor units (fen for CNY) of the ISO 4217 ``currency``."""
    _in_range(amount_minor, "amount_minor", 0, _INT64)
    return pb.Money(amount_minor=amount_minor, currency=currency)


def lump_sum(amount_minor: int, currency: str) -> pb.RoyaltyTerms:
    """One payment at acceptance."""
    return _terms(pb.RoyaltyTerms(lump_sum=money(amount_minor, currency)))


def instalments(plan: Sequence[tuple[int, int]], currency: str) -> pb.RoyaltyTerms:
    """Payments on a schedule: ``(due_after_months, amount_minor)`` pairs in order due."""
    entries = []
    for months, amount in plan:
        _in_range(months, "due_after_months", 0, _UINT32)
        entries.append(pb.Instalment(due_after_months=months, amount=money(amount, currency)))
    terms = pb.RoyaltyTerms(instalments=pb.InstalmentPlan(instalments=entries))
    return _terms(terms)


def running(
    basis: pb.RoyaltyBasis.ValueType,
    *,
    rate_basis_points: int | None = None,
    per_unit: pb.Money | None = None,
) -> pb.RoyaltyTerms:
    """A running royalty: a rate in basis points on sales or profit, or ``per_unit`` money."""
    return _terms(pb.RoyaltyTerms(running=_running(basis, rate_basis_points, per_unit)))


def entry_fee_and_royalty(
    entry_fee_minor: int,
    currency: str,
    basis: pb.RoyaltyBasis.ValueType,
    *,
    rate_basis_points: int | None = None,
    per_unit: pb.Money | None = None,
) -> pb.RoyaltyTerms:
    """An entry fee at acceptance, then a running royalty (as :func:`running`)."""
    both = pb.EntryFeeAndRoyalty(
        entry_fee=money(entry_fee_minor, currency),
        royalty=_running(basis, rate_basis_points, per_unit),
    )
    return _terms(pb.RoyaltyTerms(entry_fee_and_royalty=both))


def free() -> pb.RoyaltyTerms:
    """No royalty."""
    return pb.RoyaltyTerms(free=pb.Free())


def paid(amount_minor: int, currency: str, paid_on: dt.date, reference: str = "") -> pb.Payment:
    """Evidence of a payment made on ``paid_on`` (for an acceptance)."""
    return pb.Payment(
        amount=money(amount_minor, currency), reference=reference, paid_on=_date(paid_on)
    )


def _running(
    basis: pb.RoyaltyBasis.ValueType, rate_basis_points: int | None, per_unit: pb.Money | None
) -> pb.RunningRoyalty:
    if (rate_basis_points is None) == (per_unit is None):
        raise DraftError("a running royalty has either a rate in basis points or a per-unit amount")
    royalty = pb.RunningRoyalty(basis=basis)
    if rate_basis_points is not None:
        _in_range(rate_basis_points, "rate_basis_points", 0, _UINT32)
        royalty.rate_basis_points = rate_basis_points
    if per_unit is not None:
        royalty.per_unit.CopyFrom(per_unit)
    return royalty


def _terms(terms: pb.RoyaltyTerms) -> pb.RoyaltyTerms:
    try:
        check_terms(terms, "terms")
    except InvalidFieldError as e:
        raise DraftError(str(e)) from e
    return terms


# The builders, one per statement kind, in the order of the Statement message.


def register_party(
    *,
    public_key: bytes,
    name: str,
    kind: pb.PartyKind.ValueType,
    region: str,
    identity_code: str = "",
) -> Draft:
    """A party joins the network with ``public_key``; the party (that key) signs.

    ``identity_code`` is the unified social credit code of an organisation;
    individuals leave it empty. ``region`` is a 6-digit GB/T 2260 code.
    """
    party = pb.PartyRegistered(
        party_id=party_id_for(public_key), name=name, kind=kind,
        identity_code=identity_code, public_key=public_key, region=region,
    )  # fmt: skip
    return _draft(pb.Statement(party_registered=party), [party.party_id])


def rotate_key(*, party_id: str, new_public_key: bytes) -> Draft:
    """``party_id`` replaces its key; signed with the current key and with the new one."""
    body = pb.PartyKeyRotated(party_id=party_id, new_public_key=new_public_key)
    return _draft(pb.Statement(party_key_rotated=body), [party_id, party_id], unique=False)


def grant_role(*, party_id: str, role: pb.Role.ValueType, origin: str) -> Draft:
    """The operator of the exchange whose log is ``origin`` grants ``party_id`` a role."""
    body = pb.RoleGranted(party_id=party_id, role=role)
    return _draft(pb.Statement(role_granted=body), [OPERATOR_PREFIX + origin])


def record_patent(
    *,
    application_number: str,
    title: str,
    ipc: Sequence[str],
    owners: Sequence[str],
    filing_date: dt.date,
    expiry_date: dt.date,
    status: pb.PatentStatus.ValueType,
    grant_date: dt.date | None = None,
    fees_paid_until: dt.date | None = None,
    region: str = "",
) -> Draft:
    """The register authority records a patent (signed by ``"register"``).

    A granted patent has a ``grant_date``; a pending application has none.
    """
    body = pb.PatentRecorded(
        application_number=application_number, title=title, ipc=_list(ipc, "ipc"),
        owners=_list(owners, "owners"), filing_date=_date(filing_date),
        expiry_date=_date(expiry_date), status=status, region=region,
    )  # fmt: skip
    if grant_date is not None:
        body.grant_date.CopyFrom(_date(grant_date))
    if fees_paid_until is not None:
        body.fees_paid_until.CopyFrom(_date(fees_paid_until))
    return _draft(pb.Statement(patent_recorded=body), [REGISTER])


def change_patent_status(
    *,
    application_number: str,
    change: pb.StatusChange.ValueType,
    effective_date: dt.date,
    fees_paid_until: dt.date | None = None,
    reference: str = "",
    lifted: pb.StatusChange.ValueType = pb.STATUS_CHANGE_UNSPECIFIED,
) -> Draft:
    """The register authority records a change of status (signed by ``"register"``).

    ``fees_paid_until`` goes with ``STATUS_CHANGE_FEES_PAID``; ``lifted``
    with ``STATUS_CHANGE_SUSPENSION_LIFTED``.
    """
    body = pb.PatentStatusChanged(
        application_number=application_number, change=change,
        effective_date=_date(effective_date), reference=reference, lifted=lifted,
    )  # fmt: skip
    if fees_paid_until is not None:
        body.fees_paid_until.CopyFrom(_date(fees_paid_until))
    return _draft(pb.Statement(patent_status_changed=body), [REGISTER])


def publish_offer(
    *,
    application_number: str,
    terms: pb.RoyaltyTerms,
    licence_term_months: int,
    signers: Sequence[str],
    evaluation_report: str = "",
    description: str = "",
) -> Draft:
    """An open-licence declaration, signed by ``signers``.

    ``signers`` are every owner of the patent, and its pledgee if it is
    pledged: the statement names neither, the ledger knows them.
    """
    _in_range(licence_term_months, "licence_term_months", 0, _UINT32)
    body = pb.OfferPublished(
        application_number=application_number, terms=terms,
        licence_term_months=licence_term_months, evaluation_report=evaluation_report,
        description=description,
    )  # fmt: skip
    return _draft(pb.Statement(offer_published=body), _list(signers, "signers"))


def withdraw_offer(*, offer_id: bytes, signers: Sequence[str], reason: str = "") -> Draft:
    """Withdrawal of the declaration ``offer_id``, signed by ``signers`` (every owner)."""
    body = pb.OfferWithdrawn(offer_id=offer_id, reason=reason)
    return _draft(pb.Statement(offer_withdrawn=body), _list(signers, "signers"))


def accept_offer(
    *,
    offer_id: bytes,
    licensee: str,
    terms: pb.RoyaltyTerms,
    start_date: dt.date,
    payment: pb.Payment | None = None,
) -> Draft:
    """``licensee`` accepts the declaration ``offer_id`` on its published ``terms``.

    ``payment`` (see :func:`paid`) is what the terms require at acceptance:
    the lump sum or the entry fee; none for free licences and running royalties.
    """
    body = pb.LicenseAccepted(
        offer_id=offer_id, licensee=licensee, terms=terms, start_date=_date(start_date)
    )
    if payment is not None:
        body.payment.CopyFrom(payment)
    return _draft(pb.Statement(license_accepted=body), [licensee])


def record_licence(
    *, license_id: bytes, recordal_number: str, recorded_on: dt.date, signers: Sequence[str]
) -> Draft:
    """Recordal of the licence ``license_id``, signed by ``signers`` (a licensor or licensee)."""
    body = pb.LicenseRecorded(
        license_id=license_id, recordal_number=recordal_number, recorded_on=_date(recorded_on)
    )
    return _draft(pb.Statement(license_recorded=body), _list(signers, "signers"))


def grant_licence(
    *,
    application_number: str,
    licensors: Sequence[str],
    licensee: str,
    type: pb.LicenseType.ValueType,
    start_date: dt.date,
    end_date: dt.date,
    terms: pb.RoyaltyTerms,
    contract_reference: str = "",
    also: Sequence[str] = (),
) -> Draft:
    """A negotiated licence, signed by the licensors, the licensee and ``also``.

    ``also``: the pledgee, if the patent is pledged (its consent is required).
    """
    body = pb.LicenseGranted(
        application_number=application_number, licensors=_list(licensors, "licensors"),
        licensee=licensee, type=type, start_date=_date(start_date), end_date=_date(end_date),
        terms=terms, contract_reference=contract_reference,
    )  # fmt: skip
    needs = [*body.licensors, licensee, *_list(also, "also")]
    return _draft(pb.Statement(license_granted=body), needs)


def register_transfer(
    *,
    application_number: str,
    assignors: Sequence[str],
    assignees: Sequence[str],
    price: pb.Money | None = None,
    contract_reference: str = "",
    also: Sequence[str] = (),
) -> Draft:
    """A transfer of the patent right, signed by assignors, assignees and ``also``.

    ``also``: the pledgee, if the patent is pledged (its consent is required).
    ``price`` (see :func:`money`) only if the parties disclose it.
    """
    body = pb.TransferRegistered(
        application_number=application_number, assignors=_list(assignors, "assignors"),
        assignees=_list(assignees, "assignees"), contract_reference=contract_reference,
    )  # fmt: skip
    if price is not None:
        body.price.CopyFrom(price)
    needs = [*body.assignors, *body.assignees, *_list(also, "also")]
    return _draft(pb.Statement(transfer_registered=body), needs)


def register_pledge(
    *,
    application_number: str,
    pledgors: Sequence[str],
    pledgee: str,
    secured_minor: int,
    currency: str,
    debt_start: dt.date,
    debt_end: dt.date,
    contract_reference: str = "",
) -> Draft:
    """A pledge of the patent right securing a debt, signed by the pledgors and the pledgee."""
    body = pb.PledgeRegistered(
        application_number=application_number, pledgors=_list(pledgors, "pledgors"),
        pledgee=pledgee, secured_amount=money(secured_minor, currency),
        debt_start=_date(debt_start), debt_end=_date(debt_end),
        contract_reference=contract_reference,
    )  # fmt: skip
    return _draft(pb.Statement(pledge_registered=body), [*body.pledgors, pledgee])


def release_pledge(*, pledge_id: bytes, pledgee: str, reason: str = "") -> Draft:
    """Release of the pledge ``pledge_id`` by its ``pledgee`` (whom the statement does not name)."""
    body = pb.PledgeReleased(pledge_id=pledge_id, reason=reason)
    return _draft(pb.Statement(pledge_released=body), [pledgee])


def file_dispute(
    *,
    application_number: str,
    subject_id: bytes,
    kind: pb.DisputeKind.ValueType,
    claimant: str,
    respondents: Sequence[str],
    summary: str,
) -> Draft:
    """``claimant`` brings the transaction ``subject_id`` to mediation; the claimant signs."""
    body = pb.DisputeFiled(
        application_number=application_number, subject_id=subject_id, kind=kind,
        claimant=claimant, respondents=_list(respondents, "respondents"), summary=summary,
    )  # fmt: skip
    return _draft(pb.Statement(dispute_filed=body), [claimant])


def record_mediation(
    *,
    dispute_id: bytes,
    mediator: str,
    outcome: pb.MediationOutcome.ValueType,
    summary: str,
    concluded_on: dt.date,
) -> Draft:
    """The record of a mediation in ``dispute_id``, signed by the (registered) ``mediator``."""
    body = pb.MediationRecorded(
        dispute_id=dispute_id, mediator=mediator, outcome=outcome, summary=summary,
        concluded_on=_date(concluded_on),
    )  # fmt: skip
    return _draft(pb.Statement(mediation_recorded=body), [mediator])


def record_credit_event(
    *,
    party_id: str,
    kind: pb.CreditEventKind.ValueType,
    supervisor: str,
    evidence: Sequence[tuple[str, int]],
    summary: str,
    occurred_on: dt.date,
) -> Draft:
    """A credit event on ``party_id``, signed by the (registered) ``supervisor``.

    ``evidence``: the ledger entries that show it, as ``(origin, index)`` pairs.
    """
    references = []
    for origin, index in evidence:
        _in_range(index, "evidence index", 0, 2**64 - 1)
        references.append(pb.EntryReference(origin=origin, index=index))
    body = pb.CreditEventRecorded(
        party_id=party_id, kind=kind, supervisor=supervisor, evidence=references,
        summary=summary, occurred_on=_date(occurred_on),
    )  # fmt: skip
    return _draft(pb.Statement(credit_event_recorded=body), [supervisor])


def repair_credit_event(*, event_id: bytes, supervisor: str, summary: str) -> Draft:
    """Repair of the credit event ``event_id``, signed by the (registered) ``supervisor``."""
    body = pb.CreditEventRepaired(event_id=event_id, supervisor=supervisor, summary=summary)
    return _draft(pb.Statement(credit_event_repaired=body), [supervisor])


def _draft(statement: pb.Statement, needs: Iterable[str], *, unique: bool = True) -> Draft:
    """Stamp ``statement`` (fresh nonce, created now), check it, and serialise it once."""
    statement.nonce = os.urandom(NONCE_BYTES)
    statement.created_at.GetCurrentTime()
    try:
        check_structure(statement)
    except InvalidFieldError as e:
        raise DraftError(str(e)) from e
    names = list(needs)
    if unique:
        # A party named twice (a licensee who is also the pledgee) signs once.
        names = list(dict.fromkeys(names))
    for name in names:
        _check_signer_name(name, "signers")
    return Draft(statement.SerializeToString(), tuple(names))


def _date(day: dt.date) -> pb.Date:
    return pb.Date(year=day.year, month=day.month, day=day.day)


def _list(values: Sequence[str], field: str) -> list[str]:
    # A lone string is a Sequence[str] too; its letters are not a list of names.
    if isinstance(values, str):
        raise DraftError(f"{field}: give a list of names, not one string")
    return list(values)


def _in_range(value: int, field: str, low: int, high: int) -> None:
    if not low <= value <= high:
        raise DraftError(f"{field}: {value} is not in {low}..{high}")
