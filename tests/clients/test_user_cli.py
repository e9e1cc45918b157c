"""The ``kaifang`` user commands driven as a user would: separate processes, a real node.

One story, from an open licence published to the mediator's audit bundle
verified offline: the node runs as ``kaifang node`` with the synthetic
sample loaded, and every step is a ``kaifang`` process whose exit status,
``--json`` output and human output are checked for the facts they must show.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clients.keys import PartyKey, save_key
from exchange.sample import generate

SEED, PARTIES, PATENTS = 3, 8, 20
ORIGIN = "east.example"
SAMPLE = generate(SEED, parties=PARTIES, patents=PATENTS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class User:
    """Runs ``kaifang`` as a separate process in a working directory, with an environment."""

    cwd: Path
    env: dict[str, str]

    def run(self, *argv: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-c", "from clients.cli import main; raise SystemExit(main())", *argv],
            cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == code, (argv, done.returncode, done.stdout, done.stderr)
        return done

    def json(self, *argv: str) -> Any:
        return json.loads(self.run(*argv, "--json").stdout)


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[User]:
    home = tmp_path_factory.mktemp("cli")
    port = _free_port()
    (home / "kaifang.toml").write_text(
        f'[node]\norigin = "{ORIGIN}"\nlisten = "127.0.0.1:{port}"\n'
        f'database = "sqlite+aiosqlite:///node.db"\nlog_key = "log.key"\nmetrics_listen = "off"\n'
    )
    env = {**os.environ, "KAIFANG_SERVER": f"127.0.0.1:{port}", "PYTHONPATH": os.getcwd()}
    log = (home / "node.log").open("wb")
    node = subprocess.Popen(
        [sys.executable, "-c", "from clients.cli import main; raise SystemExit(main())",
         "node", "--config", "kaifang.toml", "--sample", "--sample-seed", str(SEED),
         "--sample-parties", str(PARTIES), "--sample-patents", str(PATENTS)],
        cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        probe = User(home, env)
        deadline = time.monotonic() + 60
        while True:
            done = subprocess.run(
                [sys.executable, "-c", "from clients.cli import main; raise SystemExit(main())",
                 "stats", "--json", "--deadline", "2"],
                cwd=home, env=env, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            if done.returncode == 0 and json.loads(done.stdout):
                break
            assert node.poll() is None, (home / "node.log").read_text()
            assert time.monotonic() < deadline, done.stderr
            time.sleep(0.3)
        vkey = probe.run("ledger", "vkey", "--key-file", "log.key").stdout.strip()
        env["KAIFANG_VKEY"] = vkey
        yield User(home, env)
    finally:
        node.terminate()
        node.wait(30)
        log.close()


def _party_key(user: User, index: int, name: str) -> str:
    """Write the sample party's key to a file (as its owner would hold it); return its id."""
    party = SAMPLE.parties[index]
    save_key(user.cwd / name, PartyKey(party.key))
    return party.party_id


def _quiet_patent(user: User) -> tuple[str, int]:
    """A patent of the sample with one owner, in force for years, with no offer or pledge."""
    owners = {p.party_id: i for i, p in enumerate(SAMPLE.parties)}
    soon = dt.date.today() + dt.timedelta(days=3 * 365)
    for patent in SAMPLE.patents:
        if len(patent.owners) != 1:
            continue
        state = user.json("patent", "show", patent.application_number)
        expiry, paid = state["expiry_date"], state.get("fees_paid_until")
        if (
            state["status"] == "PATENT_STATUS_IN_FORCE"
            and dt.date(expiry["year"], expiry["month"], expiry["day"]) > soon
            and paid
            and dt.date(paid["year"], paid["month"], paid["day"]) > dt.date.today()
            and not state.get("active_offer_id")
            and not state.get("pledgee")
        ):
            return patent.application_number, owners[patent.owners[0]]
    raise AssertionError("the sample has no quiet patent")


def test_the_open_licence_story_from_publish_to_audit_verify(user: User) -> None:
    number, owner_index = _quiet_patent(user)
    others = [i for i in range(PARTIES) if i != owner_index]
    owner = _party_key(user, owner_index, "owner.pem")
    bank = _party_key(user, others[0], "bank.pem")
    mediator = _party_key(user, others[1], "mediator.pem")
    supervisor = _party_key(user, others[2], "supervisor.pem")

    # A licensee makes a key (0600) and registers.
    made = user.json("keys", "generate", "licensee.pem")
    assert (user.cwd / "licensee.pem").stat().st_mode & 0o777 == 0o600
    licensee = made["party_id"]
    registered = user.json(
        "party", "register", "--key", "licensee.pem", "--name", "Zhang San",
        "--kind", "individual", "--region", "110108",
    )  # fmt: skip
    assert registered["verified"] is True
    assert registered["origin"] == ORIGIN

    # The patentee publishes an open licence; the receipt is verified.
    published = user.json(
        "offer", "publish", number, "--lump-sum", "20000.00 CNY", "--months", "24",
        "--evaluation-report", "EVAL-2026-7", "--key", "owner.pem",
    )  # fmt: skip
    offer_id = published["statement_id"]
    assert published["verified"] is True
    assert published["duplicate"] is False

    # The licensee finds it, by keyword and by fee ceiling; the table shows it.
    found = user.json("offer", "search", "--max-fee", "20000 CNY", "--status", "active")
    assert offer_id in [bytes.fromhex(o["offer_id"]).hex() for o in _b64ids(found)]
    table = user.run("offer", "show", offer_id).stdout
    for fact in (number, "lump sum 20,000.00 CNY", "24 months", "active", owner):
        assert fact in table, (fact, table)
    watched = json.loads(user.run("offer", "watch", "--count", "1", "--json").stdout)
    assert watched["application_number"]  # the first offer this node holds

    # The licensee accepts it; the licence shows on the patent.
    accepted = user.json(
        "license", "accept", offer_id, "--key", "licensee.pem", "--payment-reference", "TX-42"
    )
    licence_id = accepted["statement_id"]
    listing = user.run("license", "list", "--patent", number).stdout
    for fact in (licence_id, "open licence", "lump sum 20,000.00 CNY", "ordinary"):
        assert fact in listing, (fact, listing)

    # A bank takes a pledge: the owner drafts it, the bank signs the file, the owner submits.
    drafted = user.json(
        "pledge", "register", number, "--pledgee", bank, "--amount", "1000000 CNY",
        "--until", (dt.date.today() + dt.timedelta(days=365)).isoformat(),
        "--key", "owner.pem", "--draft", "pledge.json",
    )  # fmt: skip
    assert drafted["missing"] == [bank]
    signed = user.run("draft", "sign", "pledge.json", "--key", "bank.pem").stdout
    assert "ready to submit" in signed
    pledged = user.json("draft", "submit", "pledge.json")
    assert pledged["verified"] is True

    # The pledge blocks a transfer the bank has not signed (exit 2, naming the bank);
    # submitted anyway, the exchange refuses it citing the law (exit 7).
    blocked = user.run(
        "transfer", number, "--to", licensee, "--key", "owner.pem", "--key", "licensee.pem",
        code=2,
    )  # fmt: skip
    assert bank in blocked.stderr
    user.run(
        "transfer", number, "--to", licensee, "--key", "owner.pem", "--key", "licensee.pem",
        "--draft", "transfer.json",
    )  # fmt: skip
    refused = user.run("draft", "submit", "transfer.json", code=7)
    assert "SIGNATURE_MISSING" in refused.stderr
    assert "Civil Code" in refused.stderr  # the legal basis, in the one sentence

    # A dispute over the licence, mediated by a mediator the operator appointed.
    user.run(
        "party", "grant-role", mediator, "--role", "mediator", "--operator-key", "operator.key"
    )
    user.run(
        "party", "grant-role", supervisor, "--role", "supervisor", "--operator-key",
        "operator.key",
    )  # fmt: skip
    dispute = user.json(
        "dispute", "file", number, "--subject", licence_id, "--kind", "payment",
        "--respondent", owner, "--summary", "licence fee not acknowledged", "--key",
        "licensee.pem",
    )  # fmt: skip
    user.json(
        "dispute", "mediate", dispute["statement_id"], "--outcome", "agreement",
        "--summary", "receipt issued", "--key", "mediator.pem",
    )  # fmt: skip
    disputes = user.json("dispute", "list", number)
    assert [d["event"] for d in disputes] == ["filed", "mediated"]

    # A supervisor records a credit event citing the acceptance; the record shows it.
    user.json(
        "credit", "record", owner, "--kind", "other", "--evidence",
        f"{ORIGIN}:{accepted['index']}", "--summary", "late acknowledgement", "--key",
        "supervisor.pem",
    )  # fmt: skip
    record = user.json("credit", "show", owner)
    assert record["outstanding"] == 1

    # The offer is withdrawn; a late acceptance is refused by a legal rule (exit 8).
    user.json("offer", "withdraw", offer_id, "--key", "owner.pem")
    late = user.run("license", "accept", offer_id, "--key", "bank.pem", code=8)
    assert "OFFER_NOT_ACTIVE" in late.stderr
    assert "Patent Law" in late.stderr

    # The mediator exports the patent's history and verifies it offline.
    user.run("audit", "export", "--patent", number, "--out", "bundle.json")
    offline = {k: v for k, v in user.env.items() if k != "KAIFANG_SERVER"}
    offline["KAIFANG_SERVER"] = "127.0.0.1:1"  # nothing listens: verify must not need it
    mediator_desk = User(user.cwd, offline)
    summary = mediator_desk.json("audit", "verify", "bundle.json")
    assert summary["verified"] is True
    assert summary["subject"] == {"patent": number}
    assert summary["logs"][ORIGIN]["pinned"] is True
    # record, offer, acceptance, pledge, dispute, mediation, withdrawal
    assert summary["subject_entries"] == 7
    report = mediator_desk.run("audit", "report", "bundle.json").stdout
    for fact in (
        "offer published: lump sum 20,000.00 CNY, 24 months", "Zhang San", "paid",
        "1,000,000.00 CNY", "mediation", "verified",
    ):  # fmt: skip
        assert fact in report, (fact, report)

    # One byte of one leaf changed: verification fails, naming the entry (exit 6).
    bundle = json.loads((user.cwd / "bundle.json").read_text())
    leaf = bytearray(__import__("base64").b64decode(bundle["entries"][2]["leaf"]))
    leaf[-1] ^= 1
    bundle["entries"][2]["leaf"] = __import__("base64").b64encode(bytes(leaf)).decode()
    (user.cwd / "tampered.json").write_text(json.dumps(bundle))
    failed = mediator_desk.run("audit", "verify", "tampered.json", code=6)
    assert "entries[2]" in failed.stderr

    # The patent's history, verified, as a person reads it.
    history = user.run("patent", "history", number).stdout
    assert "pledge registered" in history
    assert "licence accepted by Zhang San" in history


def _b64ids(offers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Offers from --json carry ids as base64 (protobuf JSON); give them as hex too."""
    import base64

    return [{**o, "offer_id": base64.b64decode(o["offer_id"]).hex()} for o in offers]


def test_help_says_what_each_command_does_with_an_example(user: User) -> None:
    top = user.run("--help").stdout
    for group in ("offer", "license", "pledge", "audit", "keys", "credit"):
        assert group in top
    for argv in (("offer", "publish"), ("audit", "verify"), ("pledge", "register")):
        text = user.run(*argv, "--help").stdout
        assert "example: kaifang " + " ".join(argv) in text


def test_usage_and_not_found_have_their_own_exit_codes(user: User) -> None:
    user.run("offer", "show", "not-an-id", code=2)  # argparse: bad usage
    missing = user.run("patent", "show", "202310999999.4", code=3)
    assert "NOT_FOUND" in missing.stderr or "no patent" in missing.stderr
    unreachable = User(user.cwd, {**user.env, "KAIFANG_SERVER": "127.0.0.1:1"})
    unreachable.run("stats", "--deadline", "0.5", code=9)
    bad_key = user.cwd / "open.pem"
    save_key(bad_key, PartyKey(SAMPLE.parties[0].key))
    bad_key.chmod(0o644)
    refused = user.run("keys", "show", str(bad_key), code=5)
    assert "chmod 600" in refused.stderr
