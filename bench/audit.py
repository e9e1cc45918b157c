"""Benchmark ``audit``: verifying a 10,000-entry audit bundle offline, as a mediator would.

Run with the others by ``python -m bench`` (``--only audit`` alone), or as
``python -m bench.audit``.

Untimed setup, all in memory: a log of :data:`ENTRIES` real entries (1,000
with ``--quick``) about one patent. :data:`LICENSEES` parties, the owner and
a bank register (one entry each, signed by the party); the register
authority records the patent (signed with the register's key); the owner
publishes an open-licence offer; the owner and the bank register a pledge
(two signatures); the licensees accept the offer in turn until the log holds
:data:`ENTRIES` entries. Every entry is a ``LogEntry`` with real statement
bytes, real Ed25519 signatures and the patent's (or the party's)
previous-entry link. The RFC 6962 tree is computed with :mod:`ledger.merkle`;
one checkpoint is signed by the log's key and cosigned by one witness. The
patent's history and each party's are cut as ``GetHistory`` would serve
them, and :func:`clients.audit.build_bundle` makes the bundle (every log
entry is in it: the patent's, and the registrations of its signers), which
:func:`clients.audit.dumps` turns into bytes, as the exporter writes them.

Timed, as ``kaifang audit verify`` does it: :func:`clients.audit.load` of
those bytes then :func:`clients.audit.verify_bundle` with the log key
pinned, the witness policy 1 of 1 and the register's key given (so every
statement signature is verified). Figure: bundle entries per second (target
in the ratio, below).

Baseline, in the same run: a bare loop doing exactly the cryptography the
verification must do and nothing else: the same Ed25519 verifications
(pre-built ``Ed25519PublicKey`` objects, the signed bytes pre-assembled,
plus the checkpoint's signature and cosignature) and the same SHA-256
hashes (every leaf hash and every interior node hash of every inclusion
proof, their inputs pre-assembled), per bundle entry. Target: ratio at
least 0.5, i.e. parsing, decoding and bookkeeping cost at most as much as
the cryptography. Both are run :data:`ROUNDS` times, alternately, and the
fastest run of each is kept, so that a busy moment on a shared machine
does not decide the ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.timestamp_pb2 import Timestamp

from bench.common import ORIGIN, BenchError, Context, Figure, Outcome, Target
from clients.audit import build_bundle, dumps, load, verify_bundle
from exchange.rules import REGISTER
from exchange.sample import SampleParty, generate
from exchange.statements import SIGNING_PREFIX, sign
from kaifang.exchange.v1 import exchange_pb2 as api
from kaifang.exchange.v1 import statements_pb2 as pb
from ledger import merkle
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.cosignature import CosignatureSigner, cosigned_message
from ledger.note import Signer, add_signatures, parse_note

NAME = "audit"
ENTRIES = 10_000
QUICK_ENTRIES = 1_000
LICENSEES = 100
ROUNDS = 3
RATIO_TARGET = Target(">=", 0.5, on="ratio")
WITNESS = "bench.kaifang.example/witness"
CNY_20K = pb.RoyaltyTerms(lump_sum=pb.Money(amount_minor=2_000_000, currency="CNY"))


@dataclass(frozen=True)
class Workload:
    """The bundle's bytes, the keys a mediator pins, and the bare loop's inputs."""

    data: bytes
    entries: int
    vkey: str
    register_key: bytes
    signatures: list[tuple[Ed25519PublicKey, bytes, bytes]]  # (key, signature, signed bytes)
    hash_inputs: list[bytes]  # every SHA-256 input: leaves, then interior nodes


def _date(day: dt.date) -> pb.Date:
    return pb.Date(year=day.year, month=day.month, day=day.day)


class _Log:
    """An exchange log under construction: signed statements in, ``LogEntry`` bytes out."""

    def __init__(self, rng: random.Random, start: dt.datetime) -> None:
        self.rng = rng
        self.start = start
        self.leaves: list[bytes] = []
        self.last: dict[tuple[str, str], int] = {}  # subject -> index of its latest entry

    def add(
        self,
        statement: pb.Statement,
        subject: tuple[str, str],
        *signers: tuple[str, Ed25519PrivateKey | Signer],
    ) -> int:
        """Stamp, sign and sequence ``statement`` about ``subject``; return its index."""
        statement.nonce = self.rng.randbytes(16)
        statement.created_at.FromDatetime(self.start)
        data = statement.SerializeToString()
        signatures = [sign(data, name, key) for name, key in signers]
        link = pb.SubjectLink()
        setattr(link, subject[0], subject[1])  # the oneof field: patent or party
        if subject in self.last:
            link.previous_index = self.last[subject]
        index = len(self.leaves)
        sequenced = Timestamp()
        sequenced.FromDatetime(self.start + dt.timedelta(seconds=index))
        entry = pb.LogEntry(
            origin=ORIGIN,
            sequenced_at=sequenced,
            statement=data,
            signatures=signatures,
            previous=[link],
        )
        self.leaves.append(entry.SerializeToString())
        self.last[subject] = index
        return index


def _party(p: SampleParty) -> tuple[str, Ed25519PrivateKey]:
    return (p.party_id, p.key)


def make_log(entries: int, seed: int, register: Signer) -> tuple[_Log, str, list[SampleParty]]:
    """The patent's story in ``entries`` log entries; returns the log, the patent, the parties."""
    sample = generate(seed, parties=LICENSEES + 2, patents=1)
    owner, bank, *licensees = sample.parties
    if entries < len(sample.parties) + 4:
        raise BenchError(f"{entries} entries cannot hold the story")
    log = _Log(random.Random(seed), dt.datetime(2026, 5, 1, 1, 0, tzinfo=dt.UTC))
    for p in sample.parties:
        log.add(pb.Statement(party_registered=p.registration), ("party", p.party_id), _party(p))
    patent = pb.PatentRecorded()
    patent.CopyFrom(sample.patents[0])
    number = patent.application_number
    subject = ("patent", number)
    patent.owners[:] = [owner.party_id]
    patent.status = pb.PATENT_STATUS_IN_FORCE
    if not patent.HasField("grant_date"):
        patent.grant_date.CopyFrom(patent.filing_date)
    log.add(pb.Statement(patent_recorded=patent), subject, (REGISTER, register))
    offer = pb.OfferPublished(
        application_number=number, terms=CNY_20K, licence_term_months=36,
        evaluation_report="EVAL-2026-001", description="开放许可，条件对所有被许可人相同。",
    )  # fmt: skip
    offer_index = log.add(pb.Statement(offer_published=offer), subject, _party(owner))
    offer_id = hashlib.sha256(pb.LogEntry.FromString(log.leaves[offer_index]).statement).digest()
    pledge = pb.PledgeRegistered(
        application_number=number, pledgors=[owner.party_id], pledgee=bank.party_id,
        secured_amount=pb.Money(amount_minor=100_000_000, currency="CNY"),
        debt_start=_date(dt.date(2026, 5, 1)), debt_end=_date(dt.date(2029, 4, 30)),
        contract_reference="LOAN-1",
    )  # fmt: skip
    log.add(pb.Statement(pledge_registered=pledge), subject, _party(owner), _party(bank))
    start = _date(dt.date(2026, 6, 1))
    payment = pb.Payment(amount=CNY_20K.lump_sum, reference="TX", paid_on=start)
    while len(log.leaves) < entries:
        licensee = licensees[len(log.leaves) % len(licensees)]
        accepted = pb.LicenseAccepted(
            offer_id=offer_id, licensee=licensee.party_id, terms=CNY_20K, start_date=start,
            payment=payment,
        )  # fmt: skip
        log.add(pb.Statement(license_accepted=accepted), subject, _party(licensee))
    return log, number, list(sample.parties)


def _tree(leaves: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    """Every complete subtree's hash, keyed ``(level, index)`` as in :mod:`ledger.merkle`."""
    nodes = {(0, i): merkle.leaf_hash(leaf) for i, leaf in enumerate(leaves)}
    level = 1
    while len(leaves) >> level:
        for i in range(len(leaves) >> level):
            nodes[(level, i)] = merkle.node_hash(
                nodes[(level - 1, 2 * i)], nodes[(level - 1, 2 * i + 1)]
            )
        level += 1
    return nodes


def _node_inputs(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> list[bytes]:
    """The SHA-256 inputs that checking one inclusion proof hashes (RFC 9162 §2.1.3.2)."""
    h = merkle.leaf_hash(leaf)
    inputs = [b"\x00" + leaf]
    fn, sn = index, size - 1
    for p in proof:
        if fn & 1 or fn == sn:
            message = b"\x01" + p + h
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            message = b"\x01" + h + p
        inputs.append(message)
        h = hashlib.sha256(message).digest()
        fn >>= 1
        sn >>= 1
    return inputs


def build_workload(entries: int, seed: int) -> Workload:
    """Make the log, its checkpoint, the histories, the bundle, and the bare loop's inputs."""
    register = Signer.generate(REGISTER)
    log, number, parties = make_log(entries, seed, register)
    size = len(log.leaves)
    nodes = _tree(log.leaves)
    root = merkle.root_hash([nodes[(0, i)] for i in range(size)])
    signer = Signer.generate(ORIGIN)
    witness = CosignatureSigner.generate(WITNESS)
    body = Checkpoint(ORIGIN, size, root).body()
    note = sign_checkpoint(Checkpoint(ORIGIN, size, root), signer)
    note = add_signatures(note, [witness.cosign(body, 1_777_600_000)])

    def item(index: int) -> api.HistoryEntry:
        proof = merkle.inclusion_plan(index, size).assemble(nodes)
        return api.HistoryEntry(index=index, entry=log.leaves[index], proof=proof)

    registered = len(parties)
    patent = api.GetHistoryResponse(
        origin=ORIGIN, checkpoint=note, entries=[item(i) for i in range(registered, size)]
    )
    histories = [patent] + [
        api.GetHistoryResponse(origin=ORIGIN, checkpoint=note, entries=[item(i)])
        for i in range(registered)
    ]
    bundle = build_bundle(
        ("patent", number), histories, {ORIGIN: signer.verifier_key()}, [witness.verifier_key()]
    )
    if len(bundle["entries"]) != size:
        raise BenchError(f"the bundle holds {len(bundle['entries'])} entries, not {size}")

    keys = {p.party_id: p.key.public_key() for p in parties}
    keys[REGISTER] = Ed25519PublicKey.from_public_bytes(register.public_key)
    signatures = [
        (
            Ed25519PublicKey.from_public_bytes(signer.public_key),
            parse_note(note).signatures[0].signature,
            body.encode(),
        )
    ]
    cosignature = parse_note(note).signatures[1].signature
    signatures.append(
        (
            Ed25519PublicKey.from_public_bytes(witness.public_key),
            cosignature[8:],
            cosigned_message(body, int.from_bytes(cosignature[:8], "big")),
        )
    )
    hash_inputs: list[bytes] = []
    for history in histories:
        for h in history.entries:
            entry = pb.LogEntry.FromString(h.entry)
            signed = SIGNING_PREFIX + entry.statement
            signatures += [(keys[s.signer], s.signature, signed) for s in entry.signatures]
            hash_inputs += _node_inputs(h.entry, h.index, size, h.proof)
    return Workload(
        dumps(bundle),
        size,
        signer.verifier_key(),
        register.public_key,
        signatures,
        hash_inputs,
    )


def bare_loop(work: Workload) -> float:
    """Seconds to do the bundle's cryptography alone: its Ed25519 verifications and hashes."""
    sha256 = hashlib.sha256
    start = time.perf_counter()
    for key, signature, data in work.signatures:
        key.verify(signature, data)  # raises InvalidSignature: a bench bug
    for data in work.hash_inputs:
        sha256(data).digest()
    return time.perf_counter() - start


def audit(work: Workload) -> float:
    """Seconds to load and verify the bundle as the command does."""
    start = time.perf_counter()
    verified = verify_bundle(
        load(work.data),
        pinned_vkeys={ORIGIN: work.vkey},
        register_key=work.register_key,
    )
    elapsed = time.perf_counter() - start
    if verified.counts.entries != work.entries or verified.counts.signatures_attested:
        raise BenchError(f"the bundle verified as {verified.counts}")
    return elapsed


async def run(ctx: Context) -> Outcome:
    """Build the bundle, then time verification against the bare cryptography, alternately."""
    entries = QUICK_ENTRIES if ctx.quick else ENTRIES
    ctx.log(NAME, f"building a {entries:,}-entry log and its bundle…")
    started = time.perf_counter()
    work = build_workload(entries, ctx.seed)
    ctx.log(
        NAME,
        f"built in {time.perf_counter() - started:.1f} s: {len(work.data) / 1e6:.1f} MB, "
        f"{len(work.signatures):,} signatures, {len(work.hash_inputs):,} hashes",
    )
    bare_times, audit_times = [], []
    for _ in range(ROUNDS):
        bare_times.append(bare_loop(work))
        audit_times.append(audit(work))
    bare, verify = min(bare_times), min(audit_times)
    rate, bare_rate = entries / verify, entries / bare
    ctx.log(NAME, f"verify {rate:,.0f} entries/s; bare cryptography {bare_rate:,.0f} entries/s")
    figure = Figure(
        key="audit.verify",
        label=f"kaifang audit verify, {entries:,}-entry bundle (load + verify_bundle)",
        value=rate,
        unit="entries/s",
        baseline=bare_rate,
        baseline_label="bare loop of the same Ed25519 verifications and SHA-256 hashes",
        targets=(RATIO_TARGET,),
        detail={
            "entries": entries,
            "bundle_bytes": len(work.data),
            "ed25519_verifications": len(work.signatures),
            "sha256_hashes": len(work.hash_inputs),
            "verify_seconds": audit_times,
            "bare_seconds": bare_times,
            "rounds": ROUNDS,
        },
    )
    return Outcome(figures=[figure])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.audit``: this benchmark alone, through the runner."""
    from bench import __main__ as runner  # the runner imports this module: not at the top

    parser = argparse.ArgumentParser(
        prog="python -m bench.audit",
        description="Audit bundle benchmark: verifying a 10,000-entry bundle offline. "
        "Prints the table and writes the report as `python -m bench --only audit` does.",
    )
    parser.add_argument("--quick", action="store_true", help="a 1,000-entry bundle")
    parser.add_argument("--seed", type=int, help="seed of the data")
    parser.add_argument("--report", type=Path, help="where to write the report")
    args = parser.parse_args(argv)
    forwarded = ["--only", NAME]
    if args.quick:
        forwarded.append("--quick")
    if args.seed is not None:
        forwarded += ["--seed", str(args.seed)]
    if args.report is not None:
        forwarded += ["--report", str(args.report)]
    return runner.main(forwarded)


if __name__ == "__main__":
    sys.exit(main())
