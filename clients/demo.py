"""A newcomer's tour of Kaifang: three exchanges on this machine, used through ``kaifang``.

``make demo`` (``python -m clients.demo``) creates a network of three
exchanges, ``east``, ``west`` and ``north``, in a fresh directory
(``var/demo`` unless ``--dir`` names another), starts each as its own
``kaifang node`` process on loopback (an SQLite database each, federation
over mutual TLS) and drives the ``kaifang`` command through one story,
printing each command as a user would type it, and its output:

1. parties make keys and register at their exchanges, operators grant the
   mediator and supervisor roles, and the register authority records a
   utility model;
2. the patentee publishes an open licence of it at east (refused without the
   evaluation report a utility model needs, then sequenced with one);
3. a licensee at west finds the offer once west has replicated it, and
   accepts it there; west forwards the acceptance to east, the patent's home,
   and the licensee gets east's receipt;
4. a bank takes a pledge (the owner drafts, the bank signs, the owner
   submits); a transfer without the bank's signature is refused, and
   registered once the bank signs;
5. the licensee files a dispute, a mediator records its mediation, and a
   supervisor records a credit event citing the dispute's ledger entry;
6. the mediator exports the patent's audit bundle and verifies it offline,
   then prints its report;
7. ``kaifang network status`` shows the three exchanges converged.

The register authority's records reach an exchange as signed statements
(``kaifang register sign``); no user command submits them, so the tour
submits them with the client library, as the register's feed does.

Every step checks the facts it shows (an exit status, a sentence, an id).
The tour exits 1 at the first that does not hold, and 0 when all do. The
nodes it started are stopped however it ends, a failure or Ctrl-C included;
the directory stays, with each node's log, for a look afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from clients.client import Client
from clients.errors import ClientError
from clients.keys import load_key
from clients.localnet import LocalNetwork, free_port_block
from exchange.identifiers import ApplicationNumber, PatentType, credit_code_check_character
from exchange.network import NETWORK_FILE, NODE_CONFIG_FILE
from exchange.register import patents_to_csv
from kaifang.exchange.v1 import statements_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = Path("var") / "demo"
MEMBERS = ("east", "west", "north")
# Generous for a shared 2-core machine: one command takes about a second.
COMMAND_TIMEOUT_S = 60.0
# Replication polls every second; these bound a wait that normally takes one or two.
REPLICATION_WITHIN_S = 30.0
SEARCH_PAUSE_S = 1.0
# The environment variables that would make the tour talk to another exchange.
_USER_SETTINGS = ("KAIFANG_SERVER", "KAIFANG_NETWORK", "KAIFANG_VKEY", "KAIFANG_PASSPHRASE")
_CHINA = dt.timezone(dt.timedelta(hours=8))


class StepFailed(Exception):
    """A step of the tour did not show what it should have."""


# -- the story's data (pure) --------------------------------------------------


@dataclass(frozen=True)
class Party:
    """One of the story's parties: who it is, and at which exchange it registers."""

    key_file: str
    name: str
    kind: str  # as `kaifang party register --kind` spells it
    region: str  # GB/T 2260 division code
    exchange: str
    code_body: str  # the first 17 characters of its unified social credit code

    @property
    def identity_code(self) -> str:
        """Its unified social credit code, check character included."""
        return self.code_body + credit_code_check_character(self.code_body)


PATENTEE = Party(
    "patentee.pem", "Hangzhou Fengli Wind Power Co., Ltd.", "enterprise", "330106", "east",
    "91330106MA2KF0001",
)  # fmt: skip
LICENSEE = Party(
    "licensee.pem", "Chengdu Xinyuan Energy Co., Ltd.", "enterprise", "510107", "west",
    "91510107MA6CX0002",
)  # fmt: skip
SUPERVISOR = Party(
    "supervisor.pem", "Sichuan IP Credit Supervision Office", "public-body", "510104", "west",
    "11510104MB0C00006",
)  # fmt: skip
BANK = Party(
    "bank.pem", "Harbin Commercial Bank, Science Park Branch", "bank", "230103", "north",
    "91230103MA1BH0003",
)  # fmt: skip
ASSIGNEE = Party(
    "assignee.pem", "Changchun Boreal Turbines Co., Ltd.", "enterprise", "220104", "north",
    "91220104MA0Y00004",
)  # fmt: skip
MEDIATOR = Party(
    "mediator.pem", "Northern IP Dispute Mediation Centre", "public-body", "230102", "north",
    "12230102MB1D00005",
)  # fmt: skip
PARTIES = (PATENTEE, LICENSEE, SUPERVISOR, BANK, ASSIGNEE, MEDIATOR)

TITLE = "一种风力发电机叶片变桨装置"  # a pitch drive for wind-turbine blades
IPC = "F03D 7/02"
FEE = "20000.00 CNY"
PLEDGE = "1000000 CNY"
EVALUATION_REPORT = "CNIPA-EVAL-2026-0417"


def _date(day: dt.date) -> pb.Date:
    return pb.Date(year=day.year, month=day.month, day=day.day)


def application_number(today: dt.date) -> str:
    """The story's patent: a utility model filed two years ago."""
    return str(ApplicationNumber(today.year - 2, PatentType.UTILITY_MODEL, 20458))


def patent_record(owner: str, today: dt.date) -> pb.PatentRecorded:
    """The register's record of the story's utility model, owned by ``owner``, in force."""
    filed = dt.date(today.year - 2, 3, 14)
    return pb.PatentRecorded(
        application_number=application_number(today),
        title=TITLE,
        ipc=[IPC],
        owners=[owner],
        filing_date=_date(filed),
        grant_date=_date(dt.date(today.year - 2, 10, 20)),
        expiry_date=_date(filed.replace(year=filed.year + 10)),  # a utility model's term
        status=pb.PATENT_STATUS_IN_FORCE,
        fees_paid_until=_date(today + dt.timedelta(days=365)),
        region=PATENTEE.region,
    )


@dataclass(frozen=True)
class Receipt:
    """What a submitting command reported: the statement and where it was sequenced."""

    statement_id: str
    origin: str
    index: int


_RECORDED = re.compile(r"recorded as statement ([0-9a-f]{64})")
_SEQUENCED = re.compile(r"sequenced by (\S+) at index ([0-9]+); receipt verified")


def receipt_of(output: str) -> Receipt:
    """The receipt a submitting command printed; raise :class:`StepFailed` if it printed none."""
    recorded, sequenced = _RECORDED.search(output), _SEQUENCED.search(output)
    if recorded is None or sequenced is None:
        raise StepFailed(f"no verified receipt in the output: {output!r}")
    return Receipt(recorded.group(1), sequenced.group(1), int(sequenced.group(2)))


def expect(output: str, *facts: str) -> None:
    """Raise :class:`StepFailed` unless ``output`` shows every one of ``facts``."""
    missing = [f for f in facts if f not in output]
    if missing:
        raise StepFailed(f"the output does not show {missing!r}: {output!r}")


def shorten_lines(text: str, width: int = 72) -> str:
    """Cut long lines (base64 statements) to ``width`` characters for the screen."""
    return "\n".join(
        line if len(line) <= width else line[: width - 1] + "…" for line in text.splitlines()
    )


# -- running commands ------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    """A finished ``kaifang`` command."""

    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _USER_SETTINGS}
    # The commands run in the demo directory; they import this checkout.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


async def _run(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_S)
    except TimeoutError:
        raise StepFailed(f"{shlex.join(argv)} did not finish in {COMMAND_TIMEOUT_S} s") from None
    finally:
        # Cancelled (Ctrl-C) or timed out: leave no command running.
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@dataclass
class Tour:
    """The tour's state: where it runs, what it started, what the story produced."""

    directory: Path  # absolute
    shown_directory: str  # as the user would type it from where they started the tour
    env: dict[str, str] = field(default_factory=_environment)
    net: LocalNetwork | None = None
    started: float = field(default_factory=time.monotonic)
    step: int = 0
    ids: dict[str, str] = field(default_factory=dict)  # party ids by key file
    addresses: dict[str, str] = field(default_factory=dict)  # client addresses by member

    # -- output --

    def heading(self, text: str) -> None:
        """Start a step."""
        self.step += 1
        print(f"\n=== {self.step}. {text} ===\n", flush=True)

    def say(self, text: str) -> None:
        """A line of explanation between commands."""
        print(f"# {text}", flush=True)

    # -- commands --

    async def kaifang(
        self,
        *argv: str,
        code: int = 0,
        cwd: Path | None = None,
        show: Callable[[str], str] = lambda text: text,
    ) -> Ran:
        """Run ``kaifang ARGV`` as a user would, print it and its output; check its exit status."""
        print("$ " + shlex.join(["kaifang", *argv]), flush=True)
        status, stdout, stderr = await _run(
            [sys.executable, "-m", "clients.cli", *argv], cwd or self.directory, self.env
        )
        for text in (stdout, stderr):
            if text.strip():
                # A progress bar that erased itself leaves a blank line behind.
                print(show(text.strip("\n")), flush=True)
        if status != 0:
            print(f"(exit status {status})", flush=True)
        print(flush=True)
        if status != code:
            raise StepFailed(f"`kaifang {' '.join(argv[:2])}` exited {status}, not {code}")
        return Ran(argv, status, stdout, stderr)

    def at(self, member: str) -> list[str]:
        """The options that talk to ``member`` and trust the network's keys."""
        return ["--network", NETWORK_FILE, "--server", self.addresses[member]]

    def party(self, who: Party) -> str:
        """The party id of ``who`` (known once its key exists)."""
        return self.ids[who.key_file]

    async def replicated(self) -> None:
        """Wait until every exchange holds every log (equal network digests)."""
        assert self.net is not None
        began = time.monotonic()
        await self.net.wait_converged(within_s=REPLICATION_WITHIN_S)
        waited_ms = 1000 * (time.monotonic() - began)
        self.say(
            "(before anyone acts across exchanges, the tour waited until every exchange "
            f"held every log, their network digests equal: {waited_ms:.0f} ms)"
        )


# -- the story ------------------------------------------------------------------------


async def start_network(tour: Tour) -> None:
    """Create the network directory with ``kaifang network init`` and start its three nodes."""
    tour.heading("Three exchanges: east, west and north, each a process of its own")
    port = free_port_block(2 * len(MEMBERS))
    await tour.kaifang(
        "network", "init", tour.shown_directory, *MEMBERS, "--base-port", str(port),
        cwd=Path.cwd(),
    )  # fmt: skip
    print(f"$ cd {shlex.quote(tour.shown_directory)}", flush=True)
    tour.net = LocalNetwork(tour.directory)
    for member in tour.net.network.members:
        tour.addresses[member.name] = member.client_address
        print(
            f"$ kaifang node --config {member.name}/{NODE_CONFIG_FILE} &"
            f"    # clients {member.client_address}, peers {member.address} (mutual TLS),"
            f" log in {member.name}/node.log",
            flush=True,
        )
    began = time.monotonic()
    await tour.net.start_all()
    tour.say(f"(all three serve after {time.monotonic() - began:.1f} s, each with its SQLite file)")


async def parties_and_register(tour: Tour, today: dt.date) -> str:
    """Parties make keys and register; operators grant roles; the register records a patent."""
    tour.heading("Parties register at their exchanges; the register records a patent")
    for who in PARTIES:
        await tour.kaifang("keys", "generate", who.key_file)
        tour.ids[who.key_file] = load_key(tour.directory / who.key_file).party_id
    for who in PARTIES:
        ran = await tour.kaifang(
            "party", "register", "--key", who.key_file, "--name", who.name, "--kind", who.kind,
            "--region", who.region, "--identity-code", who.identity_code, *tour.at(who.exchange),
        )  # fmt: skip
        if receipt_of(ran.stdout).origin != who.exchange:
            raise StepFailed(f"{who.name} was not registered at {who.exchange}")

    tour.say("Each exchange's operator grants a role to a party registered there.")
    for who, role, member in ((MEDIATOR, "mediator", "north"), (SUPERVISOR, "supervisor", "west")):
        await tour.kaifang(
            "party", "grant-role", tour.party(who), "--role", role,
            "--operator-key", f"{member}/operator.key", "--origin", member, *tour.at(member),
        )  # fmt: skip

    tour.say("The register authority's CSV export: one utility model, owned by the patentee.")
    csv = patents_to_csv([patent_record(tour.party(PATENTEE), today)])
    (tour.directory / "register.csv").write_text(csv, encoding="utf-8")
    print("$ cat register.csv\n" + csv, flush=True)
    signed = await tour.kaifang(
        "register", "sign", "--key-file", "register.key", "register.csv", show=shorten_lines
    )
    tour.say(
        "The register's feed: no kaifang command submits register records, so the tour "
        "submits these signed statements to east with the client library "
        "(clients.client.Client.submit), which verifies the receipt."
    )
    lines = signed.stdout.split()
    if len(lines) != 1:
        raise StepFailed(f"`register sign` printed {len(lines)} statements, not 1")
    async with Client.for_network(tour.directory / NETWORK_FILE, "east") as client:
        for line in lines:
            statement = pb.SignedStatement.FromString(base64.b64decode(line))
            submitted = await client.submit(statement)
            print(
                f"patent record: sequenced by {submitted.origin} at index {submitted.index}; "
                f"receipt verified against {submitted.origin}'s key",
                flush=True,
            )
            if submitted.origin != "east":
                raise StepFailed("the register's record was not sequenced by east")
    await tour.replicated()
    return application_number(today)


async def publish(tour: Tour, number: str) -> str:
    """The patentee publishes an open licence at east; return the offer id."""
    tour.heading("The patentee publishes an open licence at east")
    terms = ["--lump-sum", FEE, "--months", "24", "--key", PATENTEE.key_file]
    tour.say(
        "A utility model's open licence needs a patent evaluation report; without one, "
        "the command refuses to sign it (exit status 2):"
    )
    refused = await tour.kaifang("offer", "publish", number, *terms, *tour.at("east"), code=2)
    expect(refused.stderr, "evaluation report", "Patent Law")
    ran = await tour.kaifang(
        "offer", "publish", number, *terms, "--evaluation-report", EVALUATION_REPORT,
        *tour.at("east"),
    )  # fmt: skip
    receipt = receipt_of(ran.stdout)
    if receipt.origin != "east":
        raise StepFailed("the offer was not sequenced by east")
    return receipt.statement_id


async def find_and_accept(tour: Tour, offer_id: str) -> Receipt:
    """A licensee at west finds the offer and accepts it; east sequences the acceptance."""
    tour.heading("A licensee at west finds the offer and accepts it")
    deadline = time.monotonic() + REPLICATION_WITHIN_S
    while True:
        ran = await tour.kaifang(
            "offer", "search", "--ipc", "F03D", "--max-fee", "50000 CNY", *tour.at("west")
        )
        if offer_id in ran.stdout:
            tour.say("west lists the offer published at east: found at west.")
            break
        if time.monotonic() > deadline:
            raise StepFailed(f"west did not list the offer within {REPLICATION_WITHIN_S} s")
        tour.say(f"(west has not replicated it yet: asking again in {SEARCH_PAUSE_S:.0f} s)")
        await asyncio.sleep(SEARCH_PAUSE_S)
    ran = await tour.kaifang(
        "license", "accept", offer_id, "--key", LICENSEE.key_file,
        "--payment-reference", "TX-2026-0417", *tour.at("west"),
    )  # fmt: skip
    accepted = receipt_of(ran.stdout)
    if accepted.origin != "east":
        raise StepFailed(f"the acceptance was sequenced by {accepted.origin}, not east")
    tour.say(
        "Accepted at west, sequenced by east (the patent's home): west forwarded it "
        "and the receipt is east's."
    )
    return accepted


async def pledge_and_transfer(tour: Tour, number: str, today: dt.date) -> None:
    """A bank takes a pledge; a transfer is refused without the bank, registered with it."""
    tour.heading("A bank takes a pledge; a transfer needs the bank's signature")
    bank, assignee = tour.party(BANK), tour.party(ASSIGNEE)
    until = (today + dt.timedelta(days=365)).isoformat()
    ran = await tour.kaifang(
        "pledge", "register", number, "--pledgee", bank, "--amount", PLEDGE, "--until", until,
        "--key", PATENTEE.key_file, "--draft", "pledge.json", *tour.at("east"),
    )  # fmt: skip
    expect(ran.stdout, f"still to sign: {bank}")
    ran = await tour.kaifang("draft", "sign", "pledge.json", "--key", BANK.key_file)
    expect(ran.stdout, "ready to submit")
    receipt_of((await tour.kaifang("draft", "submit", "pledge.json", *tour.at("east"))).stdout)

    tour.say("The owner sells the patent; owner and assignee sign, the bank does not.")
    ran = await tour.kaifang(
        "transfer", number, "--to", assignee, "--key", PATENTEE.key_file,
        "--key", ASSIGNEE.key_file, "--draft", "transfer.json", *tour.at("east"),
    )  # fmt: skip
    expect(ran.stdout, f"still to sign: {bank}")
    tour.say("Submitted anyway, the exchange refuses it (exit status 7, and why):")
    refused = await tour.kaifang("draft", "submit", "transfer.json", *tour.at("east"), code=7)
    expect(refused.stderr, "SIGNATURE_MISSING", "Civil Code")
    tour.say("The transfer was refused without the bank. The bank co-signs; submitted again:")
    ran = await tour.kaifang("draft", "sign", "transfer.json", "--key", BANK.key_file)
    expect(ran.stdout, "ready to submit")
    ran = await tour.kaifang("draft", "submit", "transfer.json", *tour.at("east"))
    if receipt_of(ran.stdout).origin != "east":
        raise StepFailed("the transfer was not sequenced by east")
    tour.say("The transfer is registered, signed by owner, assignee and bank.")
    shown = await tour.kaifang("patent", "show", number, *tour.at("east"))
    expect(shown.stdout, assignee, bank)


async def dispute_and_credit(tour: Tour, number: str, licence: Receipt) -> None:
    """A dispute is filed and mediated; a supervisor records a credit event."""
    tour.heading("A dispute is mediated; a supervisor records a credit event")
    patentee = tour.party(PATENTEE)
    ran = await tour.kaifang(
        "dispute", "file", number, "--subject", licence.statement_id, "--kind", "payment",
        "--respondent", patentee, "--summary", "licence fee paid, no receipt issued",
        "--key", LICENSEE.key_file, *tour.at("west"),
    )  # fmt: skip
    dispute = receipt_of(ran.stdout)
    await tour.kaifang(
        "dispute", "mediate", dispute.statement_id, "--outcome", "agreement",
        "--summary", "receipt issued within 7 days", "--key", MEDIATOR.key_file,
        *tour.at("north"),
    )  # fmt: skip
    shown = await tour.kaifang("dispute", "list", number, *tour.at("east"))
    expect(shown.stdout, "filed", "mediated")
    await tour.kaifang(
        "credit", "record", patentee, "--kind", "other",
        "--evidence", f"{dispute.origin}:{dispute.index}",
        "--summary", "licence fee receipt issued only after mediation",
        "--key", SUPERVISOR.key_file, *tour.at("west"),
    )  # fmt: skip
    shown = await tour.kaifang("credit", "show", patentee, *tour.at("east"))
    expect(shown.stdout, "1 outstanding")


async def audit(tour: Tour, number: str) -> None:
    """The mediator exports the patent's audit bundle at north and verifies it offline."""
    tour.heading("The mediator exports the patent's history and verifies it offline")
    tour.say(
        "The mediator works at north; the client asks each log's home for a checkpoint "
        "that the other exchanges, its witnesses, have cosigned."
    )
    await tour.kaifang(
        "audit", "export", "--patent", number, "--out", "bundle.json", *tour.at("north")
    )
    tour.say("Offline: no --server; the network file pins every log's and witness's key.")
    ran = await tour.kaifang("audit", "verify", "bundle.json", "--network", NETWORK_FILE)
    expect(ran.stdout, f"bundle of patent {number}: verified", "log east")
    ran = await tour.kaifang("audit", "report", "bundle.json", "--network", NETWORK_FILE)
    expect(
        ran.stdout, "offer published", "licence accepted", "pledge registered", "transfer to",
        "dispute filed", "mediation: agreement",
    )  # fmt: skip


async def converged(tour: Tour) -> None:
    """``kaifang network status`` shows the three exchanges converged."""
    tour.heading("Every exchange holds the same logs")
    ran = await tour.kaifang(
        "network", "status", "--config", f"east/{NODE_CONFIG_FILE}", "--wait", "30"
    )
    expect(ran.stdout, "converged: yes")


async def story(tour: Tour) -> None:
    """The whole tour, step by step."""
    today = dt.datetime.now(_CHINA).date()  # the day the exchanges judge by
    await start_network(tour)
    number = await parties_and_register(tour, today)
    offer_id = await publish(tour, number)
    licence = await find_and_accept(tour, offer_id)
    await pledge_and_transfer(tour, number, today)
    await dispute_and_credit(tour, number, licence)
    await audit(tour, number)
    await converged(tour)


# -- the program ------------------------------------------------------------------------


def _prepare(directory: Path) -> None:
    """Remove a previous tour's directory; refuse to touch anything else."""
    if directory.exists():
        previous = (directory / NETWORK_FILE).exists() or not any(directory.iterdir())
        if not previous:
            raise StepFailed(f"{directory} exists and is not a previous demo; give another --dir")
        shutil.rmtree(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)


def _shown(directory: Path) -> str:
    try:
        return str(directory.relative_to(Path.cwd()))
    except ValueError:
        return str(directory)


async def _stop(tour: Tour) -> list[str]:
    """Stop every node the tour started; return a complaint per node that did not exit 0."""
    if tour.net is None:
        return []
    await tour.net.close()
    codes = {
        name: node.process.returncode
        for name, node in tour.net.nodes.items()
        if node.process is not None
    }
    print(
        "stopped the exchanges: " + ", ".join(f"{n} exited {c}" for n, c in codes.items()),
        flush=True,
    )
    return [f"{n} exited {c}" for n, c in codes.items() if c != 0]


async def run_tour(directory: Path) -> int:
    """Run the tour in ``directory`` (an absolute path); return the exit status."""
    tour = Tour(directory, _shown(directory))
    failure: str | None = None
    try:
        _prepare(directory)
        await story(tour)
    except (StepFailed, ClientError, TimeoutError, RuntimeError, OSError) as e:
        failure = f"{type(e).__name__}: {e}" if not isinstance(e, StepFailed) else str(e)
    finally:
        print(flush=True)
        complaints = await _stop(tour)
    if failure is None and complaints:
        failure = "a node did not stop cleanly: " + "; ".join(complaints)
    if failure is not None:
        print(f"demo failed at step {tour.step}: {failure}", file=sys.stderr)
        if tour.net is not None:
            print(f"the nodes' logs are in {tour.shown_directory}/*/node.log", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - tour.started
    print(f"demo finished in {elapsed:.0f} s; its files are in {tour.shown_directory}/", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tour; return its exit status (0 when every step showed what it should)."""
    parser = argparse.ArgumentParser(
        prog="python -m clients.demo",
        description="A tour of a network of three exchanges, driven through the kaifang command.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help=f"where to create the network (default {DEFAULT_DIR}; a previous demo's is replaced)",
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run_tour(args.dir.resolve()))
    except KeyboardInterrupt:
        # asyncio.run cancelled the tour, whose finally stopped the nodes.
        print("interrupted; the exchanges were stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
