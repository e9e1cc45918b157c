"""The operator's ``kaifang ledger`` commands, end to end on a real database."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import text

from clients.cli import build_parser, main
from ledger.checkpoint import open_checkpoint
from ledger.merkle import leaf_hash, root_hash, verify_consistency
from ledger.note import Verifier

ORIGIN = "cli.kaifang.example/log"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def log(tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> tuple[str, Path, str]:
    key = tmp_path / "log.key"
    code, out, _ = run(
        capsys, "ledger", "init", "--db", db_url, "--origin", ORIGIN, "--key-file", str(key)
    )
    assert code == 0
    return db_url, key, out.strip()


def test_init_creates_a_private_key_and_prints_its_verifier_key(
    log: tuple[str, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    db, key, vkey = log
    assert vkey.startswith(ORIGIN + "+")
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert (
        run(capsys, "ledger", "vkey", "--origin", ORIGIN, "--key-file", str(key))[1].strip() == vkey
    )
    # Initialising again keeps the key.
    code, out, _ = run(
        capsys, "ledger", "init", "--db", db, "--origin", ORIGIN, "--key-file", str(key)
    )
    assert (code, out.strip()) == (0, vkey)


def test_append_checkpoint_receipt_consistency_and_fsck(
    log: tuple[str, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, key, vkey = log
    entries = [b"alpha", b"beta", b"gamma", b"beta", b"delta"]
    first = tmp_path / "first"
    first.write_bytes(b"\n".join(entries[:3]) + b"\n")
    code, out, _ = run(
        capsys,
        "ledger",
        "append",
        "--db",
        db,
        "--origin",
        ORIGIN,
        "--key-file",
        str(key),
        str(first),
    )
    assert (code, out.split()) == (0, ["0", "1", "2"])
    second = tmp_path / "second"
    second.write_bytes(b"\n".join(entries[3:]))  # no final newline: still two entries
    code, out, _ = run(
        capsys,
        "ledger",
        "append",
        "--db",
        db,
        "--origin",
        ORIGIN,
        "--key-file",
        str(key),
        str(second),
    )
    assert (code, out.split()) == (0, ["1", "3"])

    verifier = Verifier.from_vkey(vkey)
    code, note, _ = run(capsys, "ledger", "checkpoint", "--db", db)
    latest = open_checkpoint(note, verifier)
    distinct = [b"alpha", b"beta", b"gamma", b"delta"]
    assert (latest.size, latest.root_hash) == (4, root_hash([leaf_hash(e) for e in distinct]))
    code, note3, _ = run(capsys, "ledger", "checkpoint", "--db", db, "--size", "3")
    old = open_checkpoint(note3, verifier)
    assert old.size == 3

    code, out, _ = run(capsys, "ledger", "consistency", "--db", db, "3", "4")
    proof = [base64.b64decode(line) for line in out.split()]
    verify_consistency(3, 4, proof, old.root_hash, latest.root_hash)

    code, receipt, _ = run(capsys, "ledger", "receipt", "--db", db, "2", "--size", "3")
    assert code == 0
    path = tmp_path / "receipt"
    path.write_text(receipt)
    assert run(capsys, "ledger", "verify-receipt", "--vkey", vkey, str(path))[0] == 0
    path.write_text(receipt.replace("index 2", "index 1"))
    code, _, err = run(capsys, "ledger", "verify-receipt", "--vkey", vkey, str(path))
    assert code == 1
    assert "error" in err

    code, out, _ = run(capsys, "ledger", "fsck", "--db", db)
    assert code == 0
    assert "4 entries" in out


def test_reads_of_sizes_never_signed_fail_cleanly(
    log: tuple[str, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, key, _ = log
    src = tmp_path / "in"
    src.write_bytes(b"a\nb\n")
    run(
        capsys, "ledger", "append", "--db", db, "--origin", ORIGIN, "--key-file", str(key), str(src)
    )
    for argv in (["checkpoint", "--size", "1"], ["receipt", "5"], ["consistency", "1", "2"]):
        code, _, err = run(capsys, "ledger", *argv, "--db", db)
        assert code == 1, argv
        assert err.startswith("kaifang: error:")


def test_world_readable_key_file_is_refused(
    log: tuple[str, Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, key, _ = log
    key.chmod(0o644)
    code, _, err = run(capsys, "ledger", "vkey", "--key-file", str(key))
    assert code == 1
    assert "other users" in err
    assert "PRIVATE" not in err


def test_fsck_names_the_first_tampered_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # SQLite only: tampering needs the append-only triggers dropped, as an
    # attacker with the file could do; fsck must still notice.
    db_file = tmp_path / "t.db"
    db = f"sqlite+aiosqlite:///{db_file}"
    key = tmp_path / "k"
    run(capsys, "ledger", "init", "--db", db, "--origin", ORIGIN, "--key-file", str(key))
    src = tmp_path / "in"
    src.write_bytes(b"\n".join(f"entry {i}".encode() for i in range(20)))
    run(
        capsys, "ledger", "append", "--db", db, "--origin", ORIGIN, "--key-file", str(key), str(src)
    )
    sync = create_sync_engine(f"sqlite:///{db_file}")
    with sync.begin() as conn:
        conn.execute(text("DROP TRIGGER entries_no_update"))
        conn.execute(text("UPDATE entries SET data = CAST('forged' AS BLOB) WHERE idx = 13"))
    sync.dispose()
    code, _, err = run(capsys, "ledger", "fsck", "--db", db)
    assert code == 1
    assert "entry 13" in err
    assert "leaf hash" in err


def test_tiles_command_writes_a_directory_whose_checkpoint_is_the_latest(
    log: tuple[str, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, key, _ = log
    src = tmp_path / "in"
    src.write_bytes(b"\n".join(f"entry {i}".encode() for i in range(300)))
    run(
        capsys, "ledger", "append", "--db", db, "--origin", ORIGIN, "--key-file", str(key), str(src)
    )
    out = tmp_path / "tiles"
    code, _, _ = run(capsys, "ledger", "tiles", "--db", db, str(out))
    assert code == 0
    _, note, _ = run(capsys, "ledger", "checkpoint", "--db", db)
    assert (out / "checkpoint").read_text() == note
    assert (out / "tile" / "0" / "000").stat().st_size == 256 * 32
    assert (out / "tile" / "entries" / "001.p" / "44").exists()


def test_reading_a_database_that_does_not_exist_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing.db"
    code, _, err = run(capsys, "ledger", "checkpoint", "--db", str(missing))
    assert code == 1
    assert "no database" in err
    assert not missing.exists()


def test_a_plain_path_names_an_sqlite_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "plain.db"
    key = tmp_path / "k"
    code, vkey, _ = run(
        capsys, "ledger", "init", "--db", str(db), "--origin", ORIGIN, "--key-file", str(key)
    )
    assert code == 0
    code, note, _ = run(capsys, "ledger", "checkpoint", "--db", str(db))
    assert code == 0
    assert open_checkpoint(note, Verifier.from_vkey(vkey.strip())).size == 0


def test_an_unmigrated_database_gets_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    code, _, err = run(capsys, "ledger", "fsck", "--db", str(db))
    assert code == 1
    assert "no ledger tables" in err
    assert "SELECT" not in err


def test_a_misspelt_config_key_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[node]\ndatbase = "sqlite+aiosqlite:///x.db"\n')
    code, _, err = run(capsys, "--config", str(config), "ledger", "checkpoint")
    assert code == 1
    assert "datbase" in err


def test_a_lost_key_file_does_not_become_the_logs_key(
    log: tuple[str, Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, key, _ = log
    key.unlink()
    code, _, err = run(
        capsys, "ledger", "init", "--db", db, "--origin", ORIGIN, "--key-file", str(key)
    )
    assert code == 1
    assert "not the key of log" in err
    assert run(capsys, "ledger", "fsck", "--db", db)[0] == 0


def test_node_takes_its_config_before_or_after_the_command() -> None:
    parser = build_parser()
    after = parser.parse_args(["node", "--config", "a.toml", "--sample", "--sample-seed", "3"])
    assert (after.config, after.sample, after.sample_seed) == (Path("a.toml"), True, 3)
    before = parser.parse_args(["--config", "b.toml", "node"])
    assert (before.config, before.sample) == (Path("b.toml"), False)


def test_node_refuses_a_bad_config_naming_the_key_and_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[node]\nmetrics_listen = "localhost"\n')
    code, _, err = run(capsys, "node", "--config", str(config))
    assert code == 1
    assert err.startswith("kaifang: error:")
    assert "metrics_listen" in err
    assert "not host:port" in err
    assert not (tmp_path / "kaifang.db").exists()  # refused before anything was created


def test_network_init_creates_a_network_and_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exchange.config import load_config
    from exchange.network import load_federation, load_network

    directory = tmp_path / "net"
    code, out, err = run(
        capsys,
        "network",
        "init",
        str(directory),
        "east",
        "west",
        "--base-port",
        "9100",
        "--name",
        "demo",
    )
    assert (code, err) == (0, "")
    network = load_network(directory / "network.toml")
    assert network.name == "demo"
    assert [m.name for m in network.members] == ["east", "west"]
    assert "clients 127.0.0.1:9100, federation 127.0.0.1:9101" in out
    assert "clients 127.0.0.1:9102, federation 127.0.0.1:9103" in out
    assert str(directory / "network.toml") in out
    for name in ("east", "west"):
        assert os.stat(directory / name / "tls.key").st_mode & 0o777 == 0o600
        assert load_federation(load_config(directory / name / "kaifang.toml")) is not None


def test_network_init_twice_into_one_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "net"
    assert run(capsys, "network", "init", str(directory), "east")[0] == 0
    network_file = (directory / "network.toml").read_bytes()
    code, out, err = run(capsys, "network", "init", str(directory), "east")
    assert code == 1
    assert out == ""
    assert err.startswith("kaifang: error: ")
    assert "already exists" in err
    assert err.count("\n") == 1  # one sentence, no traceback
    assert (directory / "network.toml").read_bytes() == network_file


def test_network_init_refuses_a_name_that_is_no_dns_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "network", "init", str(tmp_path / "net"), "under_score")
    assert code == 1
    assert "not a member name" in err
    assert not (tmp_path / "net").exists()


def test_network_needs_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["network"])
    assert exited.value.code == 2
