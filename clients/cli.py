"""The ``kaifang`` command line: run a node, operate on a ledger, and use the exchange.

The user commands (keys, parties, patents, offers, licences, transfers,
pledges, disputes, credit, statistics, drafts and audit bundles) are in
:mod:`clients.commands`; this module holds the operator's commands and the
parser that joins both.

``kaifang node`` runs an exchange node; ``kaifang migrate`` brings a database
to the current schema; ``kaifang ledger …`` are the operator's tools for a
log: initialise, append, print checkpoints, receipts and proofs, export
tiles, check integrity (fsck) and verify a receipt offline; ``kaifang
network init`` creates a network of exchanges (CA, keys, certificates, node
configurations and the network file) and ``kaifang network status`` shows
every member's view of the network.

Exit status: 0 on success, 1 when an operation or a verification fails
(the reason on stderr), 2 for a usage error; ``network status`` also exits
3 when the members disagree and 4 when one does not answer
(:mod:`clients.netstatus`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from clients.commands import add_user_commands
from clients.errors import ClientError
from exchange.config import ConfigError, NodeConfig, load_config
from exchange.errors import ExchangeError
from exchange.node import rebuild_views
from exchange.restore import RestoreError
from exchange.rules import REGISTER
from ledger.db import Database, sqlite_url
from ledger.errors import LedgerError
from ledger.keys import create_key_file, load_key_file, load_or_create_key_file
from ledger.note import Verifier
from ledger.receipt import verify_receipt
from ledger.store import LogStore, Sequencer

if TYPE_CHECKING:
    from rich.console import Console

    from clients.netstatus import NetworkStatus
    from exchange.network import Network, TlsIdentity


class CommandError(Exception):
    """A command failed for a reason the user should read."""


def _config(args: argparse.Namespace) -> NodeConfig:
    return load_config(args.config)


def _db_url(args: argparse.Namespace) -> str:
    if not args.db:
        return _config(args).database
    # A plain path names an SQLite file.
    return str(args.db) if "://" in args.db else sqlite_url(args.db)


async def _open_log(db: Database, origin: str | None) -> LogStore:
    """Open a log for reading, with a clear error for a missing or unmigrated database."""
    try:
        return await LogStore.open(db, origin)
    except (OperationalError, ProgrammingError) as e:
        raise CommandError(
            f"{db.url} has no ledger tables: run `kaifang ledger init` or `kaifang migrate`"
        ) from e


def _existing(url: str) -> str:
    """Refuse to open (and so create) an SQLite file that does not exist."""
    parsed = make_url(url)
    file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if file and file != ":memory:" and not Path(file).exists():
        raise CommandError(f"no database at {file}")
    return url


async def _with_db(url: str, body: Callable[[Database], Awaitable[int]]) -> int:
    db = Database(url)
    try:
        return await body(db)
    finally:
        await db.dispose()


# -- commands -------------------------------------------------------------


def cmd_node(args: argparse.Namespace) -> int:
    from exchange.logs import configure_logging
    from exchange.sample import generate
    from exchange.server import run_node  # grpc is only needed by the node

    config = _config(args)
    configure_logging(config.log_format, config.log_level)
    sample = None
    if args.sample:
        sample = generate(
            args.sample_seed, parties=args.sample_parties, patents=args.sample_patents
        )
    asyncio.run(run_node(config, sample=sample))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    async def body(db: Database) -> int:
        await db.migrate()
        print("database is at the current schema")
        return 0

    return asyncio.run(_with_db(_db_url(args), body))


def cmd_init(args: argparse.Namespace) -> int:
    async def body(db: Database) -> int:
        await db.migrate()
        signer = load_or_create_key_file(args.key_file, args.origin)
        store = await LogStore.create(db, args.origin, signer.verifier_key())
        await store.sequence([], signer)  # sign the empty checkpoint if the log is new
        print(signer.verifier_key())
        return 0

    return asyncio.run(_with_db(_db_url(args), body))


def cmd_keygen(args: argparse.Namespace) -> int:
    print(create_key_file(args.key_file, args.origin).verifier_key())
    return 0


def cmd_vkey(args: argparse.Namespace) -> int:
    signer = load_key_file(args.key_file)
    if args.origin is not None and signer.name != args.origin:
        raise CommandError(f"{args.key_file} holds the key of {signer.name!r}, not {args.origin!r}")
    print(signer.verifier_key())
    return 0


def _read_lines(path: str) -> list[bytes]:
    raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line is not an empty entry
    return lines


def cmd_append(args: argparse.Namespace) -> int:
    lines = _read_lines(args.file)

    async def body(db: Database) -> int:
        signer = load_key_file(args.key_file)
        if signer.name != args.origin:
            raise CommandError(f"{args.key_file} holds the key of {signer.name!r}")
        store = await _open_log(db, args.origin)
        indices, checkpoint = await Sequencer(store, signer).append_batch(lines)
        print("\n".join(str(i) for i in indices))
        print(f"checkpoint at size {checkpoint.size}", file=sys.stderr)
        return 0

    return asyncio.run(_with_db(_existing(_db_url(args)), body))


def cmd_checkpoint(args: argparse.Namespace) -> int:
    async def body(db: Database) -> int:
        store = await _open_log(db, args.origin)
        print((await store.checkpoint(args.size)).note, end="")
        return 0

    return asyncio.run(_with_db(_existing(_db_url(args)), body))


def cmd_receipt(args: argparse.Namespace) -> int:
    async def body(db: Database) -> int:
        store = await _open_log(db, args.origin)
        print((await store.receipt(args.index, args.size)).format(), end="")
        return 0

    return asyncio.run(_with_db(_existing(_db_url(args)), body))


def cmd_consistency(args: argparse.Namespace) -> int:
    async def body(db: Database) -> int:
        store = await _open_log(db, args.origin)
        proof, _ = await store.consistency_proof(args.old, args.new)
        for h in proof:
            print(base64.b64encode(h).decode())
        return 0

    return asyncio.run(_with_db(_existing(_db_url(args)), body))


def cmd_tiles(args: argparse.Namespace) -> int:
    from ledger.tiles import export_tiles

    async def body(db: Database) -> int:
        store = await _open_log(db, args.origin)
        stats = await export_tiles(store, Path(args.dir), args.size)
        print(stats)
        return 0

    return asyncio.run(_with_db(_existing(_db_url(args)), body))


def cmd_restore(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from exchange.restore import load_member, restore_from_peers, restore_from_tiles

    config = _config(args)
    with Progress(transient=True, console=_stderr_console()) as bar:
        task = bar.add_task("restoring", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if args.from_tiles is not None:
            vkeys = args.vkey or [load_key_file(config.log_key).verifier_key()]
            restored = asyncio.run(
                restore_from_tiles(config, vkeys, args.from_tiles, progress=progress)
            )
        else:
            network, identity = load_member(config)
            restored = asyncio.run(
                restore_from_peers(
                    config, network, identity, peer=args.from_peer, progress=progress
                )
            )
    print(f"restored {restored.size} entries of {restored.origin} from {restored.source}")
    print("start the node: it rebuilds its views from the restored log")
    return 0


def cmd_fsck(args: argparse.Namespace) -> int:
    async def body(db: Database) -> int:
        store = await _open_log(db, args.origin)
        verifiers = [Verifier.from_vkey(v) for v in args.vkey] if args.vkey else None
        count = await store.fsck(verifiers)
        print(f"ok: {count} entries and every checkpoint of {store.origin} check out")
        return 0

    return asyncio.run(_with_db(_existing(_db_url(args)), body))


def cmd_views_rebuild(args: argparse.Namespace) -> int:
    async def body(db: Database) -> int:
        await db.migrate()
        started = time.perf_counter()
        count = await rebuild_views(db)
        elapsed = time.perf_counter() - started
        rate = f" ({count / elapsed:,.0f} entries/s)" if elapsed > 0 and count else ""
        print(f"views rebuilt from {count} log entries in {elapsed:.1f} s{rate}")
        return 0

    return asyncio.run(_with_db(_existing(_db_url(args)), body))


def cmd_register_keygen(args: argparse.Namespace) -> int:
    signer = create_key_file(args.key_file, REGISTER)
    print(signer.public_key.hex())
    return 0


def cmd_register_sign(args: argparse.Namespace) -> int:
    from exchange.register import patents_from_csv, sign_patents

    key = load_key_file(args.key_file)
    text = sys.stdin.read() if args.csv == "-" else Path(args.csv).read_text(encoding="utf-8")
    for signed in sign_patents(patents_from_csv(text), key, dt.datetime.now(dt.UTC)):
        print(base64.b64encode(signed.SerializeToString()).decode())
    return 0


def cmd_network_init(args: argparse.Namespace) -> int:
    from exchange.network import NETWORK_FILE, NODE_CONFIG_FILE, init_network

    directory: Path = args.dir
    network = init_network(
        directory,
        args.names,
        host=args.host,
        base_port=args.base_port,
        network_name=args.name,
        client_tls=args.client_tls,
    )
    print(f"network {network.name!r} in {directory}:")
    print(f"  {directory / NETWORK_FILE}  the network file (give every member a copy)")
    print(f"  {directory / 'ca'}/ca.key, ca.pem  the network CA (keep ca.key offline)")
    print(f"  {directory / 'register.key'}  the register authority's key")
    for member in network.members:
        node = directory / member.name
        print(
            f"  {node}/  {NODE_CONFIG_FILE}, log.key, operator.key, witness.key, tls.key, tls.pem: "
            f"clients {member.client_address}, federation {member.address}"
        )
    first = directory / network.members[0].name / NODE_CONFIG_FILE
    print(f"start a member with: kaifang --config {first} node")
    return 0


def cmd_network_status(args: argparse.Namespace) -> int:
    import json

    from clients.netstatus import collect, load, render_text

    config = _config(args)
    network, identity = load(config)
    if args.wait:
        status = asyncio.run(_watch_catch_up(network, identity, config.origin, args.wait))
    else:
        status = asyncio.run(collect(network, identity, asked_as=config.origin))
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        print(render_text(status), end="")
    return status.exit_code


async def _watch_catch_up(
    network: Network, identity: TlsIdentity, asked_as: str, within_s: float
) -> NetworkStatus:
    """Ask every member again until the network converges or ``within_s`` pass.

    A progress bar per member shows the entries it holds of all the entries
    any member holds: a joining or recovering member's catch-up.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from clients.netstatus import collect

    deadline = time.monotonic() + within_s
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, transient=True, console=_stderr_console()) as bar:
        tasks = {m.name: bar.add_task(m.name, total=None) for m in network.members}
        while True:
            status = await collect(network, identity, asked_as=asked_as)
            total = sum(o.max_size for o in status.origins)
            for name, task in tasks.items():
                held = sum(h.size for o in status.origins if (h := o.holdings.get(name)))
                bar.update(task, completed=held, total=total)
            if status.converged or time.monotonic() > deadline:
                return status
            await asyncio.sleep(0.5)


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def cmd_sample(args: argparse.Namespace) -> int:
    from exchange.register import patents_to_csv
    from exchange.sample import generate

    sample = generate(args.seed, parties=args.parties, patents=args.patents)
    sys.stdout.write(patents_to_csv(sample.patents))
    return 0


def cmd_verify_receipt(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    checkpoint = verify_receipt(text, Verifier.from_vkey(args.vkey))
    print(f"ok: receipt verifies against {checkpoint.origin} at size {checkpoint.size}")
    return 0


# -- parser ---------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the whole command line."""
    parser = argparse.ArgumentParser(
        prog="kaifang",
        description=(
            "Kaifang: run a patent exchange node, operate its signed ledger, and use the "
            "network of exchanges: publish and accept open licences, register transfers and "
            "pledges, file disputes, keep credit records, and export and verify audit "
            "bundles. Every answer that carries a proof is verified before it is shown."
        ),
        epilog=(
            "examples:\n"
            "  kaifang node --sample                          run a local exchange\n"
            "  kaifang keys generate me.pem                   make a party key (0600)\n"
            "  kaifang offer search --ipc H04L --json         find open licences\n"
            "  kaifang license accept OFFER_ID --key me.pem   accept one\n"
            "  kaifang audit verify bundle.json               check a history offline\n"
            "each command's --help says more, with an example"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="node configuration file (default: var/ defaults)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    node = commands.add_parser(
        "node", help="run an exchange node until SIGTERM or SIGINT (then stop gracefully)"
    )
    # Also accepted after the command (`kaifang node --config F`); SUPPRESS
    # keeps an absent one from hiding `kaifang --config F node`.
    node.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    node.add_argument(
        "--sample",
        action="store_true",
        help="if the log is empty, load the synthetic sample (parties, patents, offers)",
    )
    node.add_argument("--sample-seed", type=int, default=1, help="the sample's seed (default 1)")
    node.add_argument("--sample-parties", type=_positive, default=20, help="default 20")
    node.add_argument("--sample-patents", type=_positive, default=100, help="default 100")
    node.set_defaults(func=cmd_node)

    db_help = "SQLAlchemy URL or SQLite file path (default: the node's configured database)"
    mig = commands.add_parser("migrate", help="migrate the database to the current schema")
    mig.add_argument("--db", help=db_help)
    mig.set_defaults(func=cmd_migrate)

    ledger = commands.add_parser("ledger", help="operate on a ledger database")
    sub = ledger.add_subparsers(dest="ledger_command", required=True)

    def db_command(
        name: str,
        help_: str,
        func: Callable[[argparse.Namespace], int],
        *,
        origin_required: bool = False,
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--db", help=db_help)
        origin_help = "the log's origin" + ("" if origin_required else " (default: the only log)")
        p.add_argument("--origin", required=origin_required, help=origin_help)
        p.set_defaults(func=func)
        return p

    p = db_command(
        "init",
        "migrate, create the log key if missing, print the verifier key",
        cmd_init,
        origin_required=True,
    )
    p.add_argument("--key-file", type=Path, required=True)

    p = sub.add_parser(
        "keygen",
        help="create a new log key (the next key of a rotation); print its verifier key",
        epilog="example: kaifang ledger keygen --origin east --key-file east/log-next.key",
    )
    p.add_argument("--origin", required=True, help="the log's origin, which is the key's name")
    p.add_argument("--key-file", type=Path, required=True, help="created 0600, never overwritten")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("vkey", help="print the verifier key of a key file")
    p.add_argument("--origin", help="check that the key is this origin's")
    p.add_argument("--key-file", type=Path, required=True)
    p.set_defaults(func=cmd_vkey)

    p = db_command(
        "append",
        "append each line of FILE as one entry; print the indices",
        cmd_append,
        origin_required=True,
    )
    p.add_argument("--key-file", type=Path, required=True)
    p.add_argument("file", metavar="FILE", help="entries, one per line ('-' for stdin)")

    p = db_command("checkpoint", "print the signed checkpoint note", cmd_checkpoint)
    p.add_argument("--size", type=_non_negative, help="a signed tree size (default: latest)")

    p = db_command("receipt", "print the tlog-proof@v1 receipt of an entry", cmd_receipt)
    p.add_argument("index", type=_non_negative, metavar="INDEX")
    p.add_argument("--size", type=_non_negative, help="a signed tree size (default: latest)")

    p = db_command(
        "consistency", "print a consistency proof, one base64 hash a line", cmd_consistency
    )
    p.add_argument("old", type=_non_negative, metavar="OLD")
    p.add_argument("new", type=_non_negative, metavar="NEW")

    p = db_command("tiles", "write or update a C2SP tlog-tiles directory", cmd_tiles)
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--size", type=_non_negative, help="a signed tree size (default: latest)")

    p = sub.add_parser(
        "restore",
        help="restore this node's own log into an empty database, from a peer or a tile export",
        description=(
            "Restore the log of the node that --config describes into its (empty) database, "
            "before the node is started again: from the member of its network holding most "
            "of it (or --from-peer NAME), over mutual TLS, or from a tile export "
            "(`kaifang ledger tiles`) with --from-tiles DIR. Every entry is checked against "
            "a checkpoint signed with the log's own key; nothing unverified is stored."
        ),
        epilog="example: kaifang ledger restore --config var/net/east/kaifang.toml",
    )
    p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="the node's config")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--from-peer", metavar="NAME", help="this member (default: the largest)")
    source.add_argument("--from-tiles", type=Path, metavar="DIR", help="a tile export")
    p.add_argument(
        "--vkey",
        action="append",
        help="with --from-tiles: a verifier key of the log, the one it was created with first; "
        "repeat for a rotated log (default: the key of the node's log_key file)",
    )
    p.set_defaults(func=cmd_restore)

    p = db_command("fsck", "recompute every hash and check every checkpoint", cmd_fsck)
    p.add_argument(
        "--vkey",
        action="append",
        help="a verifier key to check signatures with; repeat for a rotated log "
        "(default: every key the log accepts)",
    )

    views = commands.add_parser("views", help="the exchange's views, derived from the logs")
    views_sub = views.add_subparsers(dest="views_command", required=True)
    p = views_sub.add_parser(
        "rebuild",
        help="replace the views by a rebuild from every log in the database (stop the node first)",
    )
    p.add_argument("--db", help=db_help)
    p.set_defaults(func=cmd_views_rebuild)

    register = commands.add_parser("register", help="the register authority's feed")
    reg = register.add_subparsers(dest="register_command", required=True)
    p = reg.add_parser("keygen", help="create the register authority's key; print its public key")
    p.add_argument("--key-file", type=Path, required=True)
    p.set_defaults(func=cmd_register_keygen)
    p = reg.add_parser(
        "sign", help="sign a PatentRecorded statement per CSV row; print base64 SignedStatements"
    )
    p.add_argument("--key-file", type=Path, required=True)
    p.add_argument("csv", metavar="CSV", help="the register's CSV ('-' for stdin)")
    p.set_defaults(func=cmd_register_sign)

    network = commands.add_parser(
        "network", help="a network of exchanges: its members, keys and certificates"
    )
    network_sub = network.add_subparsers(dest="network_command", required=True)
    p = network_sub.add_parser(
        "init",
        help="create a network: CA, register key, each member's keys, certificate and config",
        description=(
            "Create in DIR a network CA, a register authority key, the network file and, "
            "for each NAME, a directory with its log, operator and TLS keys, its certificate "
            "and a node configuration. Member i serves clients on HOST:P+2i and peers on "
            "HOST:P+2i+1. Refuses to overwrite an existing network."
        ),
        epilog="example: kaifang network init var/net east west --base-port 7400",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="directory to create the network in")
    p.add_argument(
        "names", nargs="+", metavar="NAME", help="member names (= log origins), e.g. east west"
    )
    p.add_argument(
        "--host", default="127.0.0.1", metavar="HOST", help="the members' host (default 127.0.0.1)"
    )
    p.add_argument(
        "--base-port",
        type=_positive,
        default=7400,
        metavar="P",
        help="first member's client port (default 7400)",
    )
    p.add_argument("--name", default="kaifang", help="the network's name (default kaifang)")
    p.add_argument(
        "--client-tls",
        action="store_true",
        help="serve each member's client port over TLS too, with its member certificate",
    )
    p.set_defaults(func=cmd_network_init)
    p = network_sub.add_parser(
        "status",
        help="ask every member for its heads: sizes, lag, witnesses, halts, convergence",
        description=(
            "Ask every member of the network, at once and over mutual TLS as the member FILE "
            "configures, for its heads and fork evidence; print each node's network digest, "
            "halted origins and evidence, each origin's size and lag on every node, the "
            "witnesses of each origin's head, and whether the network has converged. "
            "Exit status: 0 converged, 3 every member answered but the digests differ, "
            "4 some member did not answer, 1 the configuration is unusable."
        ),
        epilog="example: kaifang network status --config var/net/east/kaifang.toml --json",
    )
    # Also accepted before the command (`kaifang --config FILE network status`).
    p.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="a member's node configuration (its kaifang.toml, with a [federation] table)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the tables"
    )
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="ask again until converged or S seconds pass, showing each member's catch-up",
    )
    p.set_defaults(func=cmd_network_status)

    add_user_commands(commands)

    p = commands.add_parser("sample", help="print a reproducible synthetic patent CSV")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--parties", type=_positive, default=20)
    p.add_argument("--patents", type=_positive, default=100)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("verify-receipt", help="verify a receipt offline; exit 0 only if valid")
    p.add_argument("--vkey", required=True, help="the log's verifier key")
    p.add_argument("file", metavar="FILE", help="the receipt ('-' for stdin)")
    p.set_defaults(func=cmd_verify_receipt)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ClientError as e:
        # One sentence with the reason, the field and the legal basis; the
        # exit status tells the class of error (clients.errors).
        print(f"kaifang: {type(e).__name__}: {e}", file=sys.stderr)
        return e.exit_code
    except (
        LedgerError, ExchangeError, CommandError, ConfigError, SQLAlchemyError, OSError,
        RestoreError,
    ) as e:  # fmt: skip
        print(f"kaifang: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
