"""The ``kaifang`` user commands: what licensees, patentees, banks, mediators and supervisors run.

Grouped by task: ``keys``, ``party``, ``patent``, ``offer``, ``license``,
``transfer``, ``pledge``, ``dispute``, ``credit``, ``stats``, ``audit`` and
``draft`` (the operator commands live in :mod:`clients.cli`). Each command
is a thin shell over the client library: it parses arguments into a
builder's or a query's typed arguments, calls :class:`~clients.client.Client`
(which verifies every receipt and proof before returning), and prints a
table, or one JSON document with ``--json``.

Where a command needs to know who must sign (every owner, and the pledgee of
a pledged patent), it asks the exchange and fills the signer list in; it
signs with each ``--key`` given, and submits when nobody is missing. A
statement that others must still sign is written with ``--draft FILE``;
``kaifang draft sign`` adds their signatures in turn and ``kaifang draft
submit`` submits it.

Which exchange and which keys to believe: ``--server`` (or
``KAIFANG_SERVER``; default 127.0.0.1:50051), and either ``--network FILE``
(every member's log key and witness key; ``KAIFANG_NETWORK``) or ``--vkey``
(a log's C2SP verifier key; ``KAIFANG_VKEY``, several separated by spaces).
Encrypted key files take their passphrase from ``KAIFANG_PASSPHRASE``.

Exit status: 0 success; 1 configuration or I/O error; 2 bad usage or a
malformed request; 3 not found; 5 a key file problem; 6 a verification
failed; 7 a signature is missing or invalid; 8 a legal rule refused; 9 the
exchange is unavailable; 10 any other server failure
(:mod:`clients.errors`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import decimal
import getpass
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from clients import audit, builders
from clients.builders import Draft
from clients.client import Client, ClientOptions, Submitted
from clients.errors import ClientError, DraftError, KeyFileError
from clients.keys import PartyKey, generate_key, load_key, save_key
from clients.trust import Trust
from exchange.identifiers import parse_currency
from exchange.statements import statement_id
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import statements_pb2 as pb

DEFAULT_SERVER = "127.0.0.1:50051"
PASSPHRASE_ENV = "KAIFANG_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
CHINA = dt.timezone(dt.timedelta(hours=8))

# Piped output (scripts, logs) is not cut to 80 columns: ids stay whole.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 250)
err = Console(stderr=True, highlight=False)


class UsageError(ClientError):
    """The arguments make no sense together (exit status 2)."""

    exit_code = 2


# -- arguments -------------------------------------------------------------


def parse_amount(text: str) -> pb.Money:
    """``"20000.00 CNY"`` (or ``20000CNY``) as Money in the currency's minor units."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]{3})\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount like '20000.00 CNY'")
    try:
        currency = parse_currency(match.group(2).upper())
    except Exception as e:  # IdentifierError: the message says which code and why
        raise argparse.ArgumentTypeError(str(e)) from e
    minor = decimal.Decimal(match.group(1)).scaleb(currency.exponent or 0)
    if minor != minor.to_integral_value():
        raise argparse.ArgumentTypeError(
            f"{text!r} has more decimals than {currency.code} has minor units"
        )
    return pb.Money(amount_minor=int(minor), currency=currency.code)


def parse_day(text: str) -> dt.date:
    """An ISO date, ``2026-12-01``."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-12-01") from None


def parse_id(text: str) -> bytes:
    """A statement id: 64 hex digits."""
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise argparse.ArgumentTypeError(f"{text!r} is not a statement id (64 hex digits)")
    return value


def _enum(enum: Any, prefix: str) -> Callable[[str], int]:
    names = {n[len(prefix) :].lower().replace("_", "-"): v for n, v in enum.items() if v}

    def parse(text: str) -> int:
        try:
            return int(names[text.lower()])
        except KeyError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not one of {', '.join(sorted(names))}"
            ) from None

    parse.__name__ = prefix.lower().rstrip("_")
    return parse


def today() -> dt.date:
    """Today in China, the day the exchange judges by."""
    return dt.datetime.now(CHINA).date()


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def _load(path: Path) -> PartyKey:
    return load_key(path, _passphrase())


def trust_of(args: argparse.Namespace) -> Trust:
    """The keys to believe, from ``--network`` or ``--vkey``/``--witness`` (or the environment)."""
    network = args.network or os.environ.get("KAIFANG_NETWORK")
    try:
        if network:
            return Trust.from_network(Path(network), args.min_cosignatures)
        vkeys = list(args.vkey or os.environ.get("KAIFANG_VKEY", "").split())
        return Trust.from_keys(vkeys, args.witness or (), args.min_cosignatures)
    except ValueError as e:
        raise UsageError(str(e)) from e


def client_of(args: argparse.Namespace) -> Client:
    """A client of the exchange the arguments name."""
    options = ClientOptions(
        deadline_s=args.deadline,
        tls_root=args.tls_ca.read_bytes() if args.tls_ca else None,
        tls_server_name=args.tls_name,
    )
    network = args.network or os.environ.get("KAIFANG_NETWORK")
    server = args.server or os.environ.get("KAIFANG_SERVER")
    if network:
        return Client.for_network(
            Path(network),
            target=server,
            options=options,
            min_cosignatures=args.min_cosignatures,
            tls=args.tls and args.tls_ca is None,
        )
    return Client(server or DEFAULT_SERVER, trust_of(args), options)


def _connection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("exchange and trust")
    g.add_argument("--server", metavar="HOST:PORT", help=f"exchange (default {DEFAULT_SERVER})")
    g.add_argument("--network", metavar="FILE", help="trust every member of this network file")
    g.add_argument("--vkey", action="append", metavar="VKEY", help="a log's verifier key")
    g.add_argument("--witness", action="append", metavar="VKEY", help="a witness cosigner key")
    g.add_argument(
        "--min-cosignatures", type=int, metavar="K", help="witnesses that must cosign histories"
    )
    g.add_argument("--tls", action="store_true", help="use TLS (with --network: its CA)")
    g.add_argument("--tls-ca", type=Path, metavar="PEM", help="CA of the exchange's TLS cert")
    g.add_argument("--tls-name", metavar="NAME", help="name in the exchange's TLS certificate")
    g.add_argument("--deadline", type=float, default=10.0, metavar="S", help="per call (s)")


def _json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _signing(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("signing")
    g.add_argument(
        "--key", action="append", type=Path, default=[], metavar="FILE", help="sign with this key"
    )
    g.add_argument(
        "--as",
        dest="as_party",
        metavar="PARTY",
        help="sign the first key as PARTY (after a rotation)",
    )
    g.add_argument(
        "--draft", type=Path, metavar="FILE", help="write the draft here for others to sign"
    )


def _terms_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("royalty terms (one kind)")
    g.add_argument("--lump-sum", type=parse_amount, metavar="AMOUNT", help="e.g. '20000.00 CNY'")
    g.add_argument("--free", action="store_true", help="no royalty")
    g.add_argument(
        "--instalment", action="append", metavar="MONTHS:AMOUNT", help="repeat: '0:5000 CNY'"
    )
    g.add_argument("--entry-fee", type=parse_amount, metavar="AMOUNT", help="with a running rate")
    g.add_argument("--rate", type=decimal.Decimal, metavar="PERCENT", help="running royalty rate")
    g.add_argument("--per-unit", type=parse_amount, metavar="AMOUNT", help="running, per unit")
    g.add_argument(
        "--basis",
        type=_enum(pb.RoyaltyBasis, "ROYALTY_BASIS_"),
        default=pb.ROYALTY_BASIS_SALES,
        help="sales (default), profit or units",
    )


def terms_of(args: argparse.Namespace) -> pb.RoyaltyTerms:
    """The royalty terms the options describe."""
    rate = None if args.rate is None else int(args.rate * 100)
    chosen = [
        args.lump_sum is not None,
        args.free,
        bool(args.instalment),
        args.entry_fee is None and (rate is not None or args.per_unit is not None),
        args.entry_fee is not None,
    ]
    if sum(chosen) != 1:
        raise UsageError(
            "give one kind of terms: --lump-sum, --free, --instalment, "
            "--rate/--per-unit, or --entry-fee with --rate/--per-unit"
        )
    if args.lump_sum is not None:
        return builders.lump_sum(args.lump_sum.amount_minor, args.lump_sum.currency)
    if args.free:
        return builders.free()
    if args.instalment:
        plan, currency = [], ""
        for item in args.instalment:
            months, _, amount = item.partition(":")
            money = parse_amount(amount)
            currency = currency or money.currency
            plan.append((int(months), money.amount_minor))
        return builders.instalments(plan, currency)
    if args.entry_fee is not None:
        return builders.entry_fee_and_royalty(
            args.entry_fee.amount_minor,
            args.entry_fee.currency,
            args.basis,
            rate_basis_points=rate,
            per_unit=args.per_unit,
        )
    return builders.running(args.basis, rate_basis_points=rate, per_unit=args.per_unit)


# -- output ------------------------------------------------------------------


def as_json(value: Any) -> Any:
    """A JSON-ready form of a message, a list of them, or plain data."""
    if isinstance(value, Message):
        return MessageToDict(value, preserving_proto_field_name=True)
    if isinstance(value, list | tuple):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.hex()
    return value


def emit_json(value: Any) -> None:
    """Print ``value`` as one JSON document on stdout."""
    print(json.dumps(as_json(value), ensure_ascii=False, indent=2, sort_keys=True))


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Print a table."""
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*(str(v) for v in row))
    out.print(t)


def fields(title: str, pairs: Iterable[tuple[str, object]]) -> None:
    """Print name/value pairs."""
    t = Table(title=title, title_justify="left", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    for name, value in pairs:
        t.add_row(name, str(value))
    out.print(t)


def _day(d: pb.Date) -> str:
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}" if d.year else ""


def _label(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value))[len(prefix) :].lower().replace("_", " ")


def submitted_json(s: Submitted) -> dict[str, Any]:
    """A submission's outcome for ``--json``."""
    return {
        "statement_id": s.statement_id.hex(),
        "origin": s.origin,
        "index": s.index,
        "duplicate": s.duplicate,
        "checkpoint_size": s.receipt.checkpoint.size,
        "receipt": s.text,
        "verified": True,
    }


def _report_submitted(args: argparse.Namespace, what: str, s: Submitted) -> None:
    if args.json:
        emit_json(submitted_json(s))
        return
    again = " (it was already recorded: this is the first receipt)" if s.duplicate else ""
    out.print(f"{what}: recorded as statement {s.statement_id.hex()}{again}")
    out.print(
        f"  sequenced by {s.origin} at index {s.index}; receipt verified against "
        f"{s.origin}'s key (checkpoint size {s.receipt.checkpoint.size})"
    )


# -- signing and submitting ----------------------------------------------------


def _sign(draft: Draft, args: argparse.Namespace) -> Draft:
    for i, path in enumerate(args.key):
        key = _load(path)
        signer = args.as_party if i == 0 and args.as_party else None
        draft = draft.sign(key, signer)
    return draft


async def _finish(client: Client, args: argparse.Namespace, what: str, draft: Draft) -> int:
    """Sign ``draft`` with the keys given; save it or submit it."""
    draft = _sign(draft, args)
    if args.draft:
        draft.save(args.draft)
        missing = ", ".join(draft.missing) or "nobody"
        if args.json:
            emit_json(
                {
                    "draft": str(args.draft),
                    "statement_id": draft.statement_id.hex(),
                    "signed_by": list(draft.signers),
                    "missing": list(draft.missing),
                }
            )
        else:
            out.print(f"{what}: draft written to {args.draft}; still to sign: {missing}")
        return 0
    if draft.missing:
        raise DraftError(
            f"{what} still needs the signature of {', '.join(draft.missing)}: give their --key, "
            "or write it with --draft FILE for them to sign with `kaifang draft sign`"
        )
    _report_submitted(args, what, await client.submit(draft.signed()))
    return 0


async def _holders(client: Client, number: str) -> tuple[list[str], list[str]]:
    """A patent's owners, and its pledgee (a list of at most one) if it is pledged."""
    patent = await client.patent(number)
    return list(patent.owners), [patent.pledgee] if patent.pledgee else []


def _first_key_party(args: argparse.Namespace) -> str:
    if args.as_party:
        return str(args.as_party)
    if not args.key:
        raise UsageError("give --key FILE (the signer's key)")
    return _load(args.key[0]).party_id


# -- commands ------------------------------------------------------------------

Command = Callable[[Client, argparse.Namespace], Awaitable[int]]


def _run(body: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        async def main() -> int:
            async with client_of(args) as client:
                return await body(client, args)

        return asyncio.run(main())

    return run


def cmd_keys_generate(args: argparse.Namespace) -> int:
    passphrase = None
    if args.encrypt:
        passphrase = _passphrase()
        if passphrase is None:
            first = getpass.getpass("passphrase: ")
            if first != getpass.getpass("again: "):
                raise KeyFileError("the two passphrases differ")
            passphrase = first.encode()
    key = generate_key()
    save_key(args.file, key, passphrase)
    return _show_key(args, key, args.file)


def cmd_keys_show(args: argparse.Namespace) -> int:
    return _show_key(args, _load(args.file), args.file)


def _show_key(args: argparse.Namespace, key: PartyKey, path: Path) -> int:
    if args.json:
        emit_json({"file": str(path), "party_id": key.party_id, "public_key": key.verifier_key})
    else:
        fields(str(path), [("party id", key.party_id), ("public key", key.verifier_key)])
    return 0


async def cmd_party_register(client: Client, args: argparse.Namespace) -> int:
    key = _load(args.key[0]) if args.key else None
    if key is None:
        raise UsageError("give --key FILE: a party registers itself with its key")
    draft = builders.register_party(
        public_key=key.public_key,
        name=args.name,
        kind=args.kind,
        region=args.region,
        identity_code=args.identity_code,
    )
    return await _finish(client, args, f"registration of party {key.party_id}", draft)


async def cmd_party_rotate(client: Client, args: argparse.Namespace) -> int:
    party = _first_key_party(args)
    new = _load(args.new_key)
    draft = builders.rotate_key(party_id=party, new_public_key=new.public_key)
    draft = draft.sign(new, party)  # the new key signs too, proving it is held
    return await _finish(client, args, f"key rotation of party {party}", draft)


async def cmd_party_grant_role(client: Client, args: argparse.Namespace) -> int:
    from ledger.keys import load_key_file  # the operator's key is a note key file

    operator = load_key_file(args.operator_key)
    origin = args.origin or (next(iter(client.trust.logs)) if len(client.trust.logs) == 1 else "")
    if not origin:
        raise UsageError("give --origin: the exchange whose operator key this is")
    draft = builders.grant_role(party_id=args.party, role=args.role, origin=origin)
    draft = draft.sign(operator, f"operator:{origin}")
    return await _finish(client, args, f"role grant to party {args.party}", draft)


async def cmd_party_show(client: Client, args: argparse.Namespace) -> int:
    record = await client.credit_record(args.party)
    if args.json:
        emit_json(record)
        return 0
    fields(
        f"party {record.party_id}",
        [
            ("name", record.name),
            ("credit events", len(record.events)),
            ("outstanding", record.outstanding),
        ],
    )
    return 0


async def cmd_patent_show(client: Client, args: argparse.Namespace) -> int:
    p = await client.patent(args.number)
    if args.json:
        emit_json(p)
        return 0
    fields(
        f"patent {p.application_number}",
        [
            ("title", p.title),
            ("status", _label(pb.PatentStatus, p.status, "PATENT_STATUS_")),
            ("owners", ", ".join(p.owners)),
            ("IPC", ", ".join(p.ipc)),
            ("region", p.region),
            ("expires", _day(p.expiry_date)),
            ("fees paid until", _day(p.fees_paid_until)),
            ("home exchange", p.home),
            ("open licence", p.active_offer_id.hex() if p.active_offer_id else "none"),
            ("licences", p.licence_count),
            ("pledged to", p.pledgee or "not pledged"),
            (
                "suspended",
                ", ".join(_label(pb.StatusChange, s, "STATUS_CHANGE_") for s in p.suspensions)
                or "no",
            ),
        ],
    )
    return 0


async def cmd_history(client: Client, args: argparse.Namespace) -> int:
    """A subject's verified history, as the audit report shows it."""
    subject = ("patent", args.number) if hasattr(args, "number") else ("party", args.party)
    verified = await _bundle_verified(client, subject, args)
    if args.json:
        emit_json(timeline_json(verified))
        return 0
    for line in audit.report(verified):
        out.print(line)
    return 0


def _offer_rows(offers: Iterable[api.Offer]) -> list[list[str]]:
    return [
        [
            o.offer_id.hex(),
            o.application_number,
            o.title[:30],
            audit.terms(o.terms),
            f"{o.licence_term_months} months",
            _label(api.OfferStatus, o.status, "OFFER_STATUS_"),
            o.origin,
        ]
        for o in offers
    ]


OFFER_COLUMNS = ["offer", "patent", "title", "terms", "term", "status", "exchange"]


async def cmd_offer_publish(client: Client, args: argparse.Namespace) -> int:
    owners, pledgee = await _holders(client, args.number)
    draft = builders.publish_offer(
        application_number=args.number,
        terms=terms_of(args),
        licence_term_months=args.months,
        signers=owners + pledgee,
        evaluation_report=args.evaluation_report,
        description=args.description,
    )
    return await _finish(client, args, f"open licence of {args.number}", draft)


async def cmd_offer_withdraw(client: Client, args: argparse.Namespace) -> int:
    offer = await client.offer(args.offer)
    owners, _ = await _holders(client, offer.application_number)
    draft = builders.withdraw_offer(offer_id=args.offer, signers=owners, reason=args.reason)
    return await _finish(client, args, f"withdrawal of offer {args.offer.hex()}", draft)


async def cmd_offer_show(client: Client, args: argparse.Namespace) -> int:
    o = await client.offer(args.offer)
    if args.json:
        emit_json(o)
        return 0
    fields(
        "offer",
        [
            ("id", o.offer_id.hex()),
            ("patent", o.application_number),
            ("title", o.title),
            ("IPC", ", ".join(o.ipc)),
            ("region", o.region),
            ("terms", audit.terms(o.terms)),
            ("licence term", f"{o.licence_term_months} months"),
            ("up front", audit.money(o.upfront_fee) if o.HasField("upfront_fee") else "nothing"),
            ("status", _label(api.OfferStatus, o.status, "OFFER_STATUS_")),
            ("patentees", ", ".join(o.patentees)),
            ("licences granted", o.acceptances),
            (
                "published",
                f"{o.origin} #{o.index}, {o.published_at.ToDatetime(CHINA):%Y-%m-%d %H:%M}",
            ),
        ],
    )
    return 0


async def cmd_offer_search(client: Client, args: argparse.Namespace) -> int:
    request = api.SearchOffersRequest(
        ipc_prefix=args.ipc or "", keyword=args.keyword or "", region=args.region or ""
    )
    if args.method:
        request.method = args.method
    if args.status:
        request.status = args.status
    if args.max_fee is not None:
        request.max_upfront_fee.CopyFrom(args.max_fee)
    offers = await client.search_offers(request, limit=args.limit)
    if args.json:
        emit_json(offers)
    else:
        table(f"{len(offers)} offer(s)", OFFER_COLUMNS, _offer_rows(offers))
    return 0


async def cmd_offer_watch(client: Client, args: argparse.Namespace) -> int:
    count = 0
    async for offer in client.watch_offers(
        ipc_prefixes=args.ipc or (), keywords=args.keyword or (), after_cursor=args.after
    ):
        if args.json:
            print(json.dumps(as_json(offer), ensure_ascii=False, sort_keys=True), flush=True)
        else:
            row = _offer_rows([offer])[0]
            out.print(" | ".join([*row, f"cursor {offer.cursor}"]))
        count += 1
        if args.count and count >= args.count:
            return 0
    return 0


async def cmd_license_accept(client: Client, args: argparse.Namespace) -> int:
    offer = await client.offer(args.offer)
    licensee = _first_key_party(args)
    start = args.start or today()
    payment = None
    if offer.HasField("upfront_fee"):
        fee = offer.upfront_fee
        payment = builders.paid(
            fee.amount_minor, fee.currency, args.paid_on or today(), args.payment_reference
        )
    draft = builders.accept_offer(
        offer_id=args.offer,
        licensee=licensee,
        terms=offer.terms,
        start_date=start,
        payment=payment,
    )
    return await _finish(
        client, args, f"acceptance of the open licence of {offer.application_number}", draft
    )


async def cmd_license_record(client: Client, args: argparse.Namespace) -> int:
    draft = builders.record_licence(
        license_id=args.license,
        recordal_number=args.number,
        recorded_on=args.date or today(),
        signers=[_first_key_party(args)],
    )
    return await _finish(client, args, "recordal of the licence", draft)


async def cmd_license_grant(client: Client, args: argparse.Namespace) -> int:
    owners, pledgee = await _holders(client, args.number)
    draft = builders.grant_licence(
        application_number=args.number,
        licensors=owners,
        licensee=args.licensee,
        type=args.type,
        start_date=args.start or today(),
        end_date=args.end,
        terms=terms_of(args),
        contract_reference=args.contract,
        also=pledgee,
    )
    return await _finish(client, args, f"licence of {args.number}", draft)


async def cmd_license_list(client: Client, args: argparse.Namespace) -> int:
    if bool(args.patent) == bool(args.licensee):
        raise UsageError("give one of --patent NUMBER and --licensee PARTY")
    licences = await client.licences(
        application_number=args.patent or "", licensee=args.licensee or ""
    )
    if args.json:
        emit_json(licences)
        return 0
    rows = [
        [
            lic.license_id.hex(),
            lic.application_number,
            lic.licensee[:12],
            _label(pb.LicenseType, lic.type, "LICENSE_TYPE_"),
            f"{_day(lic.start_date)} .. {_day(lic.end_date)}",
            audit.terms(lic.terms),
            "open licence" if lic.offer_id else "negotiated",
            lic.recordal_number or f"due {_day(lic.recordal_due)}",
        ]
        for lic in licences
    ]
    columns = ["licence", "patent", "licensee", "type", "term", "terms", "how", "recordal"]
    table(f"{len(licences)} licence(s)", columns, rows)
    return 0


async def cmd_transfer(client: Client, args: argparse.Namespace) -> int:
    owners, pledgee = await _holders(client, args.number)
    draft = builders.register_transfer(
        application_number=args.number,
        assignors=owners,
        assignees=args.to,
        price=args.price,
        contract_reference=args.contract,
        also=pledgee,
    )
    return await _finish(client, args, f"transfer of {args.number}", draft)


async def cmd_pledge_register(client: Client, args: argparse.Namespace) -> int:
    owners, _ = await _holders(client, args.number)
    draft = builders.register_pledge(
        application_number=args.number,
        pledgors=owners,
        pledgee=args.pledgee,
        secured_minor=args.amount.amount_minor,
        currency=args.amount.currency,
        debt_start=args.start or today(),
        debt_end=args.until,
        contract_reference=args.contract,
    )
    return await _finish(client, args, f"pledge of {args.number}", draft)


async def cmd_pledge_release(client: Client, args: argparse.Namespace) -> int:
    draft = builders.release_pledge(
        pledge_id=args.pledge, pledgee=_first_key_party(args), reason=args.reason
    )
    return await _finish(client, args, "release of the pledge", draft)


async def _kind_entries(
    client: Client, number: str, kinds: set[str]
) -> list[tuple[int, pb.LogEntry, pb.Statement]]:
    history = await client.history(patent=number, witnessed=False)
    found = []
    for item in history.entries:
        statement = pb.Statement.FromString(item.entry.statement)
        if statement.WhichOneof("body") in kinds:
            found.append((item.index, item.entry, statement))
    return found


async def cmd_pledge_list(client: Client, args: argparse.Namespace) -> int:
    entries = await _kind_entries(client, args.number, {"pledge_registered", "pledge_released"})
    rows: list[dict[str, Any]] = []
    for index, entry, s in entries:
        sid = statement_id(entry.statement).hex()
        if s.HasField("pledge_registered"):
            p = s.pledge_registered
            rows.append(
                {
                    "index": index,
                    "pledge_id": sid,
                    "event": "registered",
                    "pledgee": p.pledgee,
                    "secured": audit.money(p.secured_amount),
                    "until": _day(p.debt_end),
                }
            )
        else:
            rows.append(
                {
                    "index": index,
                    "pledge_id": s.pledge_released.pledge_id.hex(),
                    "event": "released",
                    "pledgee": "",
                    "secured": "",
                    "until": "",
                }
            )
    if args.json:
        emit_json(rows)
    else:
        table(
            f"pledges of {args.number}",
            ["index", "pledge", "event", "pledgee", "secured", "debt until"],
            [
                [
                    r["index"],
                    r["pledge_id"],
                    r["event"],
                    r["pledgee"][:12],
                    r["secured"],
                    r["until"],
                ]
                for r in rows
            ],
        )
    return 0


async def cmd_dispute_file(client: Client, args: argparse.Namespace) -> int:
    claimant = _first_key_party(args)
    draft = builders.file_dispute(
        application_number=args.number,
        subject_id=args.subject,
        kind=args.kind,
        claimant=claimant,
        respondents=args.respondent,
        summary=args.summary,
    )
    return await _finish(client, args, f"dispute about {args.number}", draft)


async def cmd_dispute_mediate(client: Client, args: argparse.Namespace) -> int:
    draft = builders.record_mediation(
        dispute_id=args.dispute,
        mediator=_first_key_party(args),
        outcome=args.outcome,
        summary=args.summary,
        concluded_on=args.date or today(),
    )
    return await _finish(client, args, "mediation of the dispute", draft)


async def cmd_dispute_list(client: Client, args: argparse.Namespace) -> int:
    entries = await _kind_entries(client, args.number, {"dispute_filed", "mediation_recorded"})
    rows: list[dict[str, Any]] = []
    for index, entry, s in entries:
        sid = statement_id(entry.statement).hex()
        if s.HasField("dispute_filed"):
            d = s.dispute_filed
            rows.append(
                {
                    "index": index,
                    "id": sid,
                    "event": "filed",
                    "kind": _label(pb.DisputeKind, d.kind, "DISPUTE_KIND_"),
                    "by": d.claimant,
                    "summary": d.summary,
                }
            )
        else:
            m = s.mediation_recorded
            rows.append(
                {
                    "index": index,
                    "id": m.dispute_id.hex(),
                    "event": "mediated",
                    "kind": _label(pb.MediationOutcome, m.outcome, "MEDIATION_OUTCOME_"),
                    "by": m.mediator,
                    "summary": m.summary,
                }
            )
    if args.json:
        emit_json(rows)
    else:
        table(
            f"disputes about {args.number}",
            ["index", "dispute", "event", "kind / outcome", "by", "summary"],
            [
                [r["index"], r["id"], r["event"], r["kind"], r["by"][:12], r["summary"][:50]]
                for r in rows
            ],
        )
    return 0


def _evidence(text: str) -> tuple[str, int]:
    origin, _, index = text.rpartition(":")
    if not origin or not index.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not ORIGIN:INDEX")
    return origin, int(index)


async def cmd_credit_record(client: Client, args: argparse.Namespace) -> int:
    draft = builders.record_credit_event(
        party_id=args.party,
        kind=args.kind,
        supervisor=_first_key_party(args),
        evidence=args.evidence,
        summary=args.summary,
        occurred_on=args.date or today(),
    )
    return await _finish(client, args, f"credit event on party {args.party}", draft)


async def cmd_credit_repair(client: Client, args: argparse.Namespace) -> int:
    draft = builders.repair_credit_event(
        event_id=args.event, supervisor=_first_key_party(args), summary=args.summary
    )
    return await _finish(client, args, "repair of the credit event", draft)


async def cmd_credit_show(client: Client, args: argparse.Namespace) -> int:
    record = await client.credit_record(args.party)
    if args.json:
        emit_json(record)
        return 0
    rows = [
        [
            e.event_id.hex(),
            _day(e.occurred_on),
            _label(pb.CreditEventKind, e.kind, "CREDIT_EVENT_KIND_"),
            e.summary[:50],
            e.supervisor[:12],
            "repaired" if e.repaired else "outstanding",
        ]
        for e in record.events
    ]
    table(
        f"credit record of {record.name} ({record.party_id}): {record.outstanding} outstanding",
        ["event", "date", "kind", "summary", "supervisor", "state"],
        rows,
    )
    return 0


async def cmd_stats(client: Client, args: argparse.Namespace) -> int:
    def date(day: dt.date | None) -> pb.Date | None:
        return None if day is None else pb.Date(year=day.year, month=day.month, day=day.day)

    stats = await client.statistics(date(args.since), date(args.until))
    if args.json:
        emit_json(list(stats.rows))
        return 0
    rows = [
        [
            r.month,
            r.region,
            r.ipc_section,
            r.kind.replace("_", " "),
            r.count,
            ", ".join(audit.money(m) for m in r.pledged),
        ]
        for r in stats.rows
    ]
    table("statements", ["month", "region", "IPC", "kind", "count", "pledged"], rows)
    return 0


# -- drafts ----------------------------------------------------------------------


def cmd_draft_show(args: argparse.Namespace) -> int:
    draft = Draft.load(args.file)
    if args.json:
        emit_json(
            {
                "kind": draft.kind,
                "statement_id": draft.statement_id.hex(),
                "signed_by": list(draft.signers),
                "missing": list(draft.missing),
                "statement": MessageToDict(draft.parsed, preserving_proto_field_name=True),
            }
        )
    else:
        out.print(draft.describe())
    return 0


def cmd_draft_sign(args: argparse.Namespace) -> int:
    draft = _sign(Draft.load(args.file), args)
    draft.save(args.out or args.file)
    missing = ", ".join(draft.missing) or "nobody: ready to submit"
    out.print(f"signed by {', '.join(draft.signers)}; still to sign: {missing}")
    return 0


async def cmd_draft_submit(client: Client, args: argparse.Namespace) -> int:
    draft = _sign(Draft.load(args.file), args)
    _report_submitted(args, draft.kind.replace("_", " "), await client.submit(draft.signed()))
    return 0


# -- audit -------------------------------------------------------------------------


async def _bundle_verified(
    client: Client, subject: tuple[str, str], args: argparse.Namespace
) -> audit.VerifiedBundle:
    bundle = await export_bundle(client, subject, progress=not getattr(args, "json", False))
    return audit.verify_bundle(
        bundle,
        min_cosignatures=client.trust.min_cosignatures,
        pinned_vkeys=client.trust.vkeys(),
        pinned_witnesses=[w.verifier_key() for w in client.trust.witnesses] or None,
        register_key=client.trust.register_public_key,
        operator_keys=client.trust.operator_keys,
    )


async def export_bundle(
    client: Client, subject: tuple[str, str], *, progress: bool = False
) -> dict[str, Any]:
    """Fetch a subject's history and its signers' registrations; return the bundle.

    Every history of one origin is proven at the subject history's
    checkpoint size, so that the bundle holds one checkpoint per origin.
    """
    kind, value = subject
    first = await (
        client.history(patent=value) if kind == "patent" else client.history(party=value)
    )
    parties = sorted(audit.signing_parties(_response(first)))
    histories = [_response(first)]
    sizes = {first.origin: first.witnessed.checkpoint.size}
    with Progress(console=err, disable=not progress, transient=True) as bar:
        task = bar.add_task("fetching signers' registrations", total=len(parties))
        for party in parties:
            try:
                h = await client.history(party=party, witnessed=False)
                if h.origin not in sizes:
                    # The first history of its log sets the bundle's checkpoint of
                    # that log: one the witness policy accepts, with cosignatures
                    # only the log's home keeps, so asked witnessed (of the home).
                    h = await client.history(party=party)
                elif h.witnessed.checkpoint.size != sizes[h.origin]:
                    # Every signed size of a log is held by its home.
                    home = client.at(h.origin)
                    h = await home.history(party=party, checkpoint_size=sizes[h.origin])
            except ClientError as e:
                raise ClientError(f"cannot fetch the registration of party {party}: {e}") from e
            sizes.setdefault(h.origin, h.witnessed.checkpoint.size)
            histories.append(_response(h))
            bar.advance(task)
    vkeys = client.trust.vkeys()
    witnesses = [w.verifier_key() for w in client.trust.witnesses]
    return audit.build_bundle(subject, histories, vkeys, witnesses)


def _response(history: Any) -> api.GetHistoryResponse:
    return api.GetHistoryResponse(
        origin=history.origin,
        checkpoint=history.note,
        entries=[
            api.HistoryEntry(index=e.index, entry=e.data, proof=e.proof) for e in history.entries
        ],
    )


async def cmd_audit_export(client: Client, args: argparse.Namespace) -> int:
    if bool(args.patent) == bool(args.party):
        raise UsageError("give one of --patent NUMBER and --party ID")
    subject = ("patent", args.patent) if args.patent else ("party", args.party)
    bundle = await export_bundle(client, subject, progress=True)
    data = audit.dumps(bundle)
    if args.out is None or str(args.out) == "-":
        sys.stdout.buffer.write(data)
    else:
        args.out.write_bytes(data)
        err.print(
            f"wrote {len(bundle['entries'])} entries of {subject[0]} {subject[1]} to {args.out}"
        )
    return 0


def _read_bundle(path: str) -> dict[str, Any]:
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    return audit.load(data)


def _verify_file(args: argparse.Namespace) -> audit.VerifiedBundle:
    bundle = _read_bundle(args.bundle)
    pinned: dict[str, tuple[str, ...]] | None = None
    register_key = None
    operator_keys = None
    network = args.network or os.environ.get("KAIFANG_NETWORK")
    vkeys = args.vkey or os.environ.get("KAIFANG_VKEY")
    trust = trust_of(args) if (network or vkeys) else None
    witnesses = None
    policy = args.min_cosignatures
    if trust is not None:
        if policy is None and trust.witnesses:
            policy = trust.min_cosignatures  # the network's: a majority of the others
        pinned = trust.vkeys()
        register_key = trust.register_public_key
        operator_keys = dict(trust.operator_keys)
        witnesses = [w.verifier_key() for w in trust.witnesses] or None
    total = len(bundle.get("entries", []))
    with Progress(console=err, disable=args.json or total < 1000, transient=True) as bar:
        task = bar.add_task("verifying", total=total)
        return audit.verify_bundle(
            bundle,
            min_cosignatures=policy,
            pinned_vkeys=pinned,
            pinned_witnesses=witnesses,
            register_key=register_key,
            operator_keys=operator_keys,
            progress=lambda n: bar.update(task, completed=n),
        )


def verification_summary(verified: audit.VerifiedBundle) -> dict[str, Any]:
    """What a verification checked, for ``--json`` and for people."""
    kind, value = verified.subject
    c = verified.counts
    return {
        "verified": True,
        "subject": {kind: value},
        "logs": {
            o: {
                "size": log.checkpoint.size,
                "cosigned_by": list(log.cosigned_by),
                "vkey": log.vkey,
                "pinned": log.pinned,
            }
            for o, log in sorted(verified.logs.items())
        },
        "policy": f"{verified.min_cosignatures} of {len(verified.witnesses)} witnesses",
        "entries": c.entries,
        "subject_entries": c.subject_entries,
        "key_entries": c.key_entries,
        "signatures_verified": c.signatures_verified,
        "signatures_attested": c.signatures_attested,
        "proof_hashes": c.proof_hashes,
    }


def cmd_audit_verify(args: argparse.Namespace) -> int:
    verified = _verify_file(args)
    summary = verification_summary(verified)
    if args.json:
        emit_json(summary)
        return 0
    kind, value = verified.subject
    out.print(f"bundle of {kind} {value}: verified")
    for origin, log in summary["logs"].items():
        witnesses = ", ".join(log["cosigned_by"]) or "no witness"
        pinned = "pinned key" if log["pinned"] else "the bundle's own key (not pinned)"
        out.print(
            f"  log {origin}: checkpoint size {log['size']} signed ({pinned}), "
            f"cosigned by {witnesses}"
        )
    out.print(f"  witness policy: {summary['policy']}")
    out.print(
        f"  {summary['entries']} entries ({summary['subject_entries']} about the subject, "
        f"chain complete; {summary['key_entries']} registrations and key rotations), "
        f"{summary['proof_hashes']} proof hashes"
    )
    attested = summary["signatures_attested"]
    out.print(
        f"  {summary['signatures_verified']} signatures verified"
        + (
            f"; {attested} by the register or an operator attested by the log only "
            "(give --network to check them)"
            if attested
            else ""
        )
    )
    return 0


def timeline_json(verified: audit.VerifiedBundle) -> list[dict[str, Any]]:
    """The timeline rows for ``--json``."""
    return [
        {
            "sequenced_at": row.sequenced_at.isoformat(),
            "place": row.place,
            "kind": row.kind,
            "description": row.description,
            "signed": list(row.signed),
            "verified": True,
        }
        for row in audit.timeline(verified)
    ]


def cmd_audit_report(args: argparse.Namespace) -> int:
    verified = _verify_file(args)
    if args.json:
        emit_json(timeline_json(verified))
        return 0
    for line in audit.report(verified):
        out.print(line)
    return 0


# -- the parser ------------------------------------------------------------------


def _cmd(
    sub: Any,
    name: str,
    help_: str,
    example: str,
    func: Callable[[argparse.Namespace], int],
    *,
    connect: bool = True,
    json_out: bool = True,
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_,
        description=help_[0].upper() + help_[1:] + ".",
        epilog=f"example: {example}",
    )
    if connect:
        _connection(p)
    if json_out:
        _json_flag(p)
    p.set_defaults(func=func)
    return p


def add_user_commands(commands: Any) -> None:
    """Add the user command groups to the ``kaifang`` parser's subcommands."""
    kind = _enum(pb.PartyKind, "PARTY_KIND_")

    keys = commands.add_parser("keys", help="create and show a party's signing key")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    p = _cmd(
        sub,
        "generate",
        "create a key file (mode 0600) and print its party id",
        "kaifang keys generate alice.key --encrypt",
        cmd_keys_generate,
        connect=False,
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument(
        "--encrypt",
        action="store_true",
        help=f"encrypt with a passphrase (from {PASSPHRASE_ENV}, else asked)",
    )
    p = _cmd(
        sub,
        "show",
        "print a key file's party id and public key",
        "kaifang keys show alice.key",
        cmd_keys_show,
        connect=False,
    )
    p.add_argument("file", type=Path, metavar="FILE")

    party = commands.add_parser("party", help="register a party, rotate its key, show it")
    sub = party.add_subparsers(dest="party_command", required=True)
    p = _cmd(
        sub,
        "register",
        "register the party whose key signs",
        "kaifang party register --key alice.key --name 'Alice Ltd' --kind enterprise "
        "--region 110108 --identity-code 91110108MA01ABCD2X",
        _run(cmd_party_register),
    )
    _signing(p)
    p.add_argument("--name", required=True)
    p.add_argument(
        "--kind",
        type=kind,
        required=True,
        help="enterprise, individual, bank, research or public-body",
    )
    p.add_argument("--region", required=True, help="GB/T 2260 code, 6 digits")
    p.add_argument("--identity-code", default="", help="unified social credit code")
    p = _cmd(
        sub,
        "rotate-key",
        "replace the party's key (old and new key sign)",
        "kaifang party rotate-key --key old.key --new-key new.key",
        _run(cmd_party_rotate),
    )
    _signing(p)
    p.add_argument("--new-key", type=Path, required=True, metavar="FILE")
    p = _cmd(
        sub,
        "grant-role",
        "grant a party the mediator or supervisor role (an exchange operator signs)",
        "kaifang party grant-role PARTY --role mediator --operator-key var/operator.key "
        "--origin east",
        _run(cmd_party_grant_role),
    )
    _signing(p)
    p.add_argument("party", metavar="PARTY")
    p.add_argument(
        "--role", type=_enum(pb.Role, "ROLE_"), required=True, help="mediator or supervisor"
    )
    p.add_argument("--operator-key", type=Path, required=True, metavar="FILE")
    p.add_argument("--origin", help="the operator's exchange (default: the one log trusted)")
    p = _cmd(
        sub,
        "show",
        "show a party's name and credit summary",
        "kaifang party show 3f2a…",
        _run(cmd_party_show),
    )
    p.add_argument("party", metavar="PARTY_ID")

    patent = commands.add_parser("patent", help="a patent's state and its verified history")
    sub = patent.add_subparsers(dest="patent_command", required=True)
    p = _cmd(
        sub,
        "show",
        "show a patent's state: owners, status, offer, licences, pledge",
        "kaifang patent show 202310123456.X",
        _run(cmd_patent_show),
    )
    p.add_argument("number", metavar="NUMBER")
    p = _cmd(
        sub,
        "history",
        "print a patent's history, every entry verified",
        "kaifang patent history 202310123456.X",
        _run(cmd_history),
    )
    p.add_argument("number", metavar="NUMBER")

    offer = commands.add_parser("offer", help="open-licence offers: publish, find, watch")
    sub = offer.add_subparsers(dest="offer_command", required=True)
    p = _cmd(
        sub,
        "publish",
        "publish an open licence of a patent (every owner signs)",
        "kaifang offer publish 202310123456.X --lump-sum '20000.00 CNY' --months 36 "
        "--key owner.key",
        _run(cmd_offer_publish),
    )
    _signing(p)
    _terms_options(p)
    p.add_argument("number", metavar="NUMBER")
    p.add_argument("--months", type=int, required=True, help="length of each licence")
    p.add_argument("--evaluation-report", default="", help="the evaluation report's reference")
    p.add_argument("--description", default="")
    p = _cmd(
        sub,
        "withdraw",
        "withdraw an open licence (every owner signs)",
        "kaifang offer withdraw OFFER_ID --key owner.key",
        _run(cmd_offer_withdraw),
    )
    _signing(p)
    p.add_argument("offer", type=parse_id, metavar="OFFER_ID")
    p.add_argument("--reason", default="")
    p = _cmd(sub, "show", "show one offer", "kaifang offer show OFFER_ID", _run(cmd_offer_show))
    p.add_argument("offer", type=parse_id, metavar="OFFER_ID")
    p = _cmd(
        sub,
        "search",
        "find offers in the whole network, newest first",
        "kaifang offer search --ipc H04L --max-fee '50000 CNY'",
        _run(cmd_offer_search),
    )
    p.add_argument("--ipc", help="IPC prefix, e.g. H04L")
    p.add_argument("--keyword", help="text in the title")
    p.add_argument(
        "--method",
        type=_enum(api.RoyaltyMethod, "ROYALTY_METHOD_"),
        help="lump-sum, instalments, running, entry-fee-and-royalty or free",
    )
    p.add_argument("--max-fee", type=parse_amount, metavar="AMOUNT", help="up-front ceiling")
    p.add_argument("--region", help="GB/T 2260 prefix")
    p.add_argument(
        "--status", type=_enum(api.OfferStatus, "OFFER_STATUS_"), help="active, withdrawn or ended"
    )
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p = _cmd(
        sub,
        "watch",
        "print matching offers as they arrive from anywhere in the network",
        "kaifang offer watch --ipc H04L --keyword battery",
        _run(cmd_offer_watch),
    )
    p.add_argument("--ipc", action="append", help="IPC prefix (repeat for any of several)")
    p.add_argument("--keyword", action="append", help="title keyword (repeat)")
    p.add_argument("--after", type=int, default=0, metavar="CURSOR", help="resume after")
    p.add_argument("--count", type=int, default=0, help="stop after this many (default: never)")

    lic = commands.add_parser("license", help="licences: accept an offer, record, grant, list")
    sub = lic.add_subparsers(dest="license_command", required=True)
    p = _cmd(
        sub,
        "accept",
        "accept an open licence on its published terms (the licensee signs)",
        "kaifang license accept OFFER_ID --key licensee.key --payment-reference TX-1",
        _run(cmd_license_accept),
    )
    _signing(p)
    p.add_argument("offer", type=parse_id, metavar="OFFER_ID")
    p.add_argument("--start", type=parse_day, help="first day (default today)")
    p.add_argument("--paid-on", type=parse_day, help="day the up-front fee was paid")
    p.add_argument("--payment-reference", default="", help="bank reference of the payment")
    p = _cmd(
        sub,
        "record",
        "register the administration's recordal of a licence",
        "kaifang license record LICENSE_ID --number 2026990000123 --key licensee.key",
        _run(cmd_license_record),
    )
    _signing(p)
    p.add_argument("license", type=parse_id, metavar="LICENSE_ID")
    p.add_argument("--number", required=True, help="the recordal number")
    p.add_argument("--date", type=parse_day, help="recordal day (default today)")
    p = _cmd(
        sub,
        "grant",
        "grant a negotiated licence (owners, licensee, pledgee sign)",
        "kaifang license grant NUMBER --licensee ID --type exclusive --end 2028-12-31 "
        "--lump-sum '1 CNY' --key owner.key --key licensee.key",
        _run(cmd_license_grant),
    )
    _signing(p)
    _terms_options(p)
    p.add_argument("number", metavar="NUMBER")
    p.add_argument("--licensee", required=True, metavar="PARTY")
    p.add_argument(
        "--type",
        type=_enum(pb.LicenseType, "LICENSE_TYPE_"),
        required=True,
        help="ordinary, sole or exclusive",
    )
    p.add_argument("--start", type=parse_day)
    p.add_argument("--end", type=parse_day, required=True)
    p.add_argument("--contract", default="", help="contract reference")
    p = _cmd(
        sub,
        "list",
        "list the licences of a patent or of a licensee",
        "kaifang license list --patent 202310123456.X",
        _run(cmd_license_list),
    )
    p.add_argument("--patent", metavar="NUMBER")
    p.add_argument("--licensee", metavar="PARTY")

    p = _cmd(
        commands,
        "transfer",
        "register a transfer of a patent (owners, assignees and any pledgee sign)",
        "kaifang transfer NUMBER --to BUYER_ID --key owner.key --key buyer.key",
        _run(cmd_transfer),
    )
    _signing(p)
    p.add_argument("number", metavar="NUMBER")
    p.add_argument("--to", action="append", required=True, metavar="PARTY", help="assignee")
    p.add_argument("--price", type=parse_amount, metavar="AMOUNT", help="if disclosed")
    p.add_argument("--contract", default="", help="contract reference")

    pledge = commands.add_parser("pledge", help="pledges of patent rights: register, release, list")
    sub = pledge.add_subparsers(dest="pledge_command", required=True)
    p = _cmd(
        sub,
        "register",
        "register a pledge (the owners and the pledgee sign)",
        "kaifang pledge register NUMBER --pledgee BANK_ID --amount '1000000 CNY' "
        "--until 2027-12-31 --key owner.key --draft pledge.json",
        _run(cmd_pledge_register),
    )
    _signing(p)
    p.add_argument("number", metavar="NUMBER")
    p.add_argument("--pledgee", required=True, metavar="PARTY")
    p.add_argument("--amount", type=parse_amount, required=True, help="debt secured")
    p.add_argument("--start", type=parse_day, help="debt start (default today)")
    p.add_argument("--until", type=parse_day, required=True, help="debt end")
    p.add_argument("--contract", default="", help="contract reference")
    p = _cmd(
        sub,
        "release",
        "release a pledge (the pledgee signs)",
        "kaifang pledge release PLEDGE_ID --key bank.key",
        _run(cmd_pledge_release),
    )
    _signing(p)
    p.add_argument("pledge", type=parse_id, metavar="PLEDGE_ID")
    p.add_argument("--reason", default="")
    p = _cmd(
        sub,
        "list",
        "list the pledges registered and released on a patent",
        "kaifang pledge list 202310123456.X",
        _run(cmd_pledge_list),
    )
    p.add_argument("number", metavar="NUMBER")

    dispute = commands.add_parser("dispute", help="disputes: file, record a mediation, list")
    sub = dispute.add_subparsers(dest="dispute_command", required=True)
    p = _cmd(
        sub,
        "file",
        "file a dispute about a patent (the claimant signs)",
        "kaifang dispute file NUMBER --subject LICENSE_ID --kind payment --respondent ID "
        "--summary 'royalty unpaid' --key claimant.key",
        _run(cmd_dispute_file),
    )
    _signing(p)
    p.add_argument("number", metavar="NUMBER")
    p.add_argument(
        "--subject",
        type=parse_id,
        required=True,
        metavar="STATEMENT_ID",
        help="the statement disputed (licence, offer, transfer …)",
    )
    p.add_argument(
        "--kind",
        type=_enum(pb.DisputeKind, "DISPUTE_KIND_"),
        required=True,
        help="open-license, payment, ownership or contract",
    )
    p.add_argument("--respondent", action="append", required=True, metavar="PARTY")
    p.add_argument("--summary", required=True)
    p = _cmd(
        sub,
        "mediate",
        "record a mediation's outcome (a mediator signs)",
        "kaifang dispute mediate DISPUTE_ID --outcome agreement --summary 'paid in full' "
        "--key mediator.key",
        _run(cmd_dispute_mediate),
    )
    _signing(p)
    p.add_argument("dispute", type=parse_id, metavar="DISPUTE_ID")
    p.add_argument(
        "--outcome",
        type=_enum(pb.MediationOutcome, "MEDIATION_OUTCOME_"),
        required=True,
        help="agreement, no-agreement or withdrawn",
    )
    p.add_argument("--summary", required=True)
    p.add_argument("--date", type=parse_day, help="day concluded (default today)")
    p = _cmd(
        sub,
        "list",
        "list the disputes and mediations about a patent",
        "kaifang dispute list 202310123456.X",
        _run(cmd_dispute_list),
    )
    p.add_argument("number", metavar="NUMBER")

    credit = commands.add_parser("credit", help="credit supervision: record, repair, show")
    sub = credit.add_subparsers(dest="credit_command", required=True)
    p = _cmd(
        sub,
        "record",
        "record a credit event on a party (a supervisor signs)",
        "kaifang credit record PARTY --kind payment-default --evidence east:17 "
        "--summary 'royalty unpaid' --key supervisor.key",
        _run(cmd_credit_record),
    )
    _signing(p)
    p.add_argument("party", metavar="PARTY")
    p.add_argument(
        "--kind",
        type=_enum(pb.CreditEventKind, "CREDIT_EVENT_KIND_"),
        required=True,
        help="false-declaration, payment-default, mediation-refused or other",
    )
    p.add_argument(
        "--evidence",
        type=_evidence,
        action="append",
        required=True,
        metavar="ORIGIN:INDEX",
        help="a ledger entry cited (repeat)",
    )
    p.add_argument("--summary", required=True)
    p.add_argument("--date", type=parse_day, help="day it happened (default today)")
    p = _cmd(
        sub,
        "repair",
        "repair a credit event (credit restoration; a supervisor signs)",
        "kaifang credit repair EVENT_ID --summary 'settled' --key supervisor.key",
        _run(cmd_credit_repair),
    )
    _signing(p)
    p.add_argument("event", type=parse_id, metavar="EVENT_ID")
    p.add_argument("--summary", required=True)
    p = _cmd(
        sub,
        "show",
        "show a party's credit record",
        "kaifang credit show PARTY",
        _run(cmd_credit_show),
    )
    p.add_argument("party", metavar="PARTY")

    p = _cmd(
        commands,
        "stats",
        "count statements by month, region, IPC section and kind",
        "kaifang stats --since 2026-01-01",
        _run(cmd_stats),
    )
    p.add_argument("--since", type=parse_day)
    p.add_argument("--until", type=parse_day)

    draft = commands.add_parser("draft", help="statements signed by several parties in turn")
    sub = draft.add_subparsers(dest="draft_command", required=True)
    p = _cmd(
        sub,
        "show",
        "show a draft: what it says, who signed, who must still sign",
        "kaifang draft show pledge.json",
        cmd_draft_show,
        connect=False,
    )
    p.add_argument("file", type=Path, metavar="FILE")
    p = _cmd(
        sub,
        "sign",
        "add signatures to a draft file",
        "kaifang draft sign pledge.json --key bank.key",
        cmd_draft_sign,
        connect=False,
        json_out=False,
    )
    _signing(p)
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--out", type=Path, help="write here instead of FILE")
    p = _cmd(
        sub,
        "submit",
        "submit a draft (signing it first with any --key)",
        "kaifang draft submit pledge.json",
        _run(cmd_draft_submit),
    )
    _signing(p)
    p.add_argument("file", type=Path, metavar="FILE")

    aud = commands.add_parser("audit", help="audit bundles: export, verify offline, report")
    sub = aud.add_subparsers(dest="audit_command", required=True)
    p = _cmd(
        sub,
        "export",
        "write a self-contained, verifiable bundle of a subject's history",
        "kaifang audit export --patent 202310123456.X --out bundle.json",
        _run(cmd_audit_export),
        json_out=False,
    )
    p.add_argument("--patent", metavar="NUMBER")
    p.add_argument("--party", metavar="PARTY")
    p.add_argument("--out", type=Path, help="file to write (default stdout)")
    for name, help_, func in [
        ("verify", "verify a bundle offline; exit 0 only if everything holds", cmd_audit_verify),
        ("report", "print a verified bundle's timeline: who did what, when", cmd_audit_report),
    ]:
        p = _cmd(sub, name, help_, f"kaifang audit {name} bundle.json --network network.toml", func)
        p.add_argument("bundle", metavar="BUNDLE", help="the bundle ('-' for stdin)")


def exit_code(error: ClientError) -> int:
    """The exit status of a client error."""
    return error.exit_code


__all__ = ["add_user_commands", "exit_code", "export_bundle"]
