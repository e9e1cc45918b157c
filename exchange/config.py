"""Node configuration: a small TOML file, or the defaults `make run` uses.

```toml
[node]
origin = "local.kaifang.example/log"   # the log's origin (checkpoint first line)
listen = "127.0.0.1:50051"             # gRPC address, host:port (port 0 picks one);
                                       # plaintext unless [client_tls] is set
database = "sqlite+aiosqlite:///kaifang.db"   # SQLAlchemy URL (sqlite+aiosqlite or
                                       # postgresql+asyncpg)
log_key = "log.key"                    # the log's Ed25519 signer key file
log_key_next = "log-next.key"          # optional: the log's next key, during a key
                                       # rotation (created if missing); checkpoints are
                                       # then signed by both keys
operator_key = "operator.key"          # this exchange operator's key (grants roles)
register_key = "register.key"          # the register authority's key file (a local or
                                       # demo node); the node uses its public half only
register_public_key = "3f1c…"          # or only the register authority's public key, as
                                       # `kaifang register keygen` prints it (64 hex
                                       # digits): a production node holds no register key
metrics_listen = "127.0.0.1:9464"      # Prometheus /metrics over HTTP; "" or "off": none
log_format = "auto"                    # "json" (one object a line), "text", or "auto":
                                       # text on a terminal, JSON otherwise
log_level = "INFO"                     # DEBUG, INFO, WARNING or ERROR
shutdown_grace_seconds = 5.0           # on SIGTERM/SIGINT, how long in-flight RPCs may run

[federation]                           # optional: this node is a member of a network
network = "../network.toml"            # the network file (see exchange.network)
listen = "127.0.0.1:7401"              # the federation endpoint, mutual TLS, host:port
tls_key = "tls.key"                    # this node's TLS private key, PEM, mode 0600
tls_certificate = "tls.pem"            # its certificate, as the network file lists it
peers = ["west"]                       # replicate only from these members (default:
                                       # every other member of the network)
dial = { west = "127.0.0.1:9001" }     # dial these members here instead of at the network
                                       # file's address (a relay, a NAT, a test proxy)

[client_tls]                           # optional: serve the client API (listen) over TLS
key = "tls.key"                        # the server's TLS private key, PEM, mode 0600
certificate = "tls.pem"                # its certificate (chain), PEM
```

Without a ``[federation]`` table the node runs alone. ``tls_key`` and
``tls_certificate`` default to ``tls.key`` and ``tls.pem`` beside the
configuration file; ``network`` and ``listen`` are required.

Without a ``[client_tls]`` table the client API is served in plaintext. With
one, it is served over TLS that authenticates the server only (clients present
no certificate; what they may do is decided by the signatures on what they
submit); both keys are required. A member of a network can reuse its
federation key and certificate, which name ``localhost`` and ``127.0.0.1`` as
well as the member. The files are read when the node starts, by
:func:`exchange.network.load_client_tls`, which refuses a key file that group
or others can access.

**Rotating the log key.** ``log_key_next`` names a second key of the same
log (same name, the origin; another key ID). While it is set, the node
accepts that key for its log (:meth:`ledger.store.LogStore.accept_key`) and
signs every new checkpoint with both keys, so verifiers that know either
accept them. To retire the old key, move the next key into ``log_key`` and
drop ``log_key_next``: checkpoints are then signed by the new key alone, and
the log still accepts the old key for the checkpoints it signed. A
``log_key`` the log never accepted is refused
(:class:`~ledger.errors.KeyMismatchError`), as before: a key file lost and
recreated never signs for the log.

Relative paths (the key file, an SQLite database file) are relative to the
directory of the configuration file, or to the working directory for the
defaults, which keep everything under ``var/``.

Every key is checked when the file is read, and a bad one is refused with a
:class:`ConfigError` naming the file, the key and the reason, so that a typo
never silently falls back to a default or surfaces later as a stack trace.
Whether the network file agrees with this configuration (the origin is a
member, the certificate is the member's) is checked when the network file is
read, by :func:`exchange.network.load_federation`.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ledger.errors import KeyFormatError
from ledger.note import check_key_name

DEFAULT_ORIGIN = "local.kaifang.example/log"
DEFAULT_LISTEN = "127.0.0.1:50051"
# 9464 is the port OpenTelemetry's Prometheus exporter uses; loopback only by
# default, since metrics reveal traffic to whoever can read them.
DEFAULT_METRICS_LISTEN = "127.0.0.1:9464"
DEFAULT_DIR = Path("var")
DEFAULT_GRACE_S = 5.0
LOG_FORMATS = ("auto", "json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# The async drivers the ledger's Database runs on.
DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
KEYS = frozenset(
    {
        "origin",
        "listen",
        "database",
        "log_key",
        "log_key_next",
        "operator_key",
        "register_key",
        "register_public_key",
        "metrics_listen",
        "log_format",
        "log_level",
        "shutdown_grace_seconds",
    }
)
FEDERATION_KEYS = frozenset({"network", "listen", "tls_key", "tls_certificate", "peers", "dial"})
CLIENT_TLS_KEYS = frozenset({"key", "certificate"})
TABLES = ("node", "federation", "client_tls")
_OFF = ("", "off")
# Key name of an exchange operator's key (roles are signed "operator:<origin>").
# Here rather than only in exchange.server, so that exchange.network can name
# the key files it creates without importing the server, which is to import it.
OPERATOR_KEY_NAME = "operator"


class ConfigError(Exception):
    """The configuration is missing, malformed or inconsistent.

    ``key`` names the offending key when one is to blame: a ``[node]`` key as
    it is (``listen``), any other qualified by its table (``federation.listen``,
    or ``exchange[1].vkey`` in a network file).
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        """Describe the problem; ``message`` already says where."""
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class FederationConfig:
    """The ``[federation]`` table: how this node takes part in a network."""

    network: Path  # the network file
    listen: str  # the federation endpoint (mutual TLS), host:port; port 0 picks one
    tls_key: Path
    tls_certificate: Path
    # The members this node replicates from; None: every other member.
    peers: tuple[str, ...] | None = None
    # Member name -> host:port to dial it at instead of the network file's
    # address (a relay, a NAT, a test's fault-injecting proxy). TLS still
    # checks the member's certificate, so a wrong address cannot impersonate.
    dial: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientTls:
    """The ``[client_tls]`` table: the client API's TLS key and certificate files."""

    key: Path  # PEM private key, readable by its owner only
    certificate: Path  # PEM certificate (chain) for that key


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to start."""

    origin: str
    listen: str
    database: str
    log_key: Path
    # The log's next key during a key rotation: checkpoints are signed by both.
    log_key_next: Path | None = None
    # None: beside the log key, named operator.key / register.key.
    operator_key: Path | None = None
    register_key: Path | None = None
    # The register authority's Ed25519 public key; when set, no register key
    # file is read or created.
    register_public_key: bytes | None = None
    # None: no metrics endpoint. A node built in code (tests, benchmarks) asks
    # for one; the defaults and configuration files have one unless "off".
    metrics_listen: str | None = None
    log_format: str = "auto"
    log_level: str = "INFO"
    shutdown_grace_seconds: float = DEFAULT_GRACE_S
    # None: the node belongs to no network.
    federation: FederationConfig | None = None
    # None: the client API (listen) is plaintext.
    client_tls: ClientTls | None = None

    def operator_key_file(self) -> Path:
        """Where this exchange operator's key is."""
        return self.operator_key or self.log_key.with_name("operator.key")

    def register_key_file(self) -> Path:
        """Where the register authority's key is."""
        return self.register_key or self.log_key.with_name("register.key")

    @classmethod
    def defaults(cls, base: Path = DEFAULT_DIR) -> NodeConfig:
        """The configuration of a fresh local node keeping its files in ``base``."""
        return cls(
            origin=DEFAULT_ORIGIN,
            listen=DEFAULT_LISTEN,
            database=f"sqlite+aiosqlite:///{base / 'kaifang.db'}",
            log_key=base / "log.key",
            operator_key=base / "operator.key",
            register_key=base / "register.key",
            metrics_listen=DEFAULT_METRICS_LISTEN,
        )


def parse_address(text: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into host and port.

    Raises ``ValueError`` saying what is wrong. Port 0 is allowed: the
    system picks a free port.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 host in brackets, [{host}]:{port_text}")
    if not host:
        raise ValueError(f"{text!r} has an empty host")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port {port_text!r} is not a number in 0..65535")
    return host, int(port_text)


def _resolve_database(url: str, base: Path) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        path = Path(parsed.database)
        if not path.is_absolute():
            return parsed.set(database=str(base / path)).render_as_string(hide_password=False)
    return url


def _check_database(url: str) -> None:
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise ValueError(f"{url!r} is not an SQLAlchemy URL") from e
    # Never echo a password back into a log or a terminal.
    shown = parsed.render_as_string(hide_password=True)
    if parsed.drivername not in DRIVERS:
        raise ValueError(
            f"{shown!r}: the driver {parsed.drivername!r} is not one of {', '.join(DRIVERS)}"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        # Each connection would get its own empty in-memory database.
        raise ValueError(f"{shown!r}: name an SQLite file; an in-memory database is not shared")


class _Table:
    """One table of one file: typed reads that name the key on failure."""

    def __init__(self, path: Path, raw: dict[str, Any], section: str = "node") -> None:
        self.path = path
        self.raw = raw
        self.section = section

    def error(self, key: str, reason: str) -> ConfigError:
        qualified = key if self.section == "node" else f"{self.section}.{key}"
        return ConfigError(f"{self.path}: [{self.section}] {key}: {reason}", key=qualified)

    def string(self, key: str) -> str:
        value = self.raw[key]
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {type(value).__name__} {value!r}")
        return value

    def path_value(self, key: str) -> Path:
        value = self.string(key)
        if not value.strip():
            raise self.error(key, "must name a file")
        path = Path(value)
        return path if path.is_absolute() else self.path.parent / path

    def choice(self, key: str, choices: tuple[str, ...], *, fold: bool = False) -> str:
        value = self.string(key)
        if fold:
            value = value.upper()
        if value not in choices:
            raise self.error(key, f"{self.raw[key]!r} is not one of {', '.join(choices)}")
        return value

    def seconds(self, key: str) -> float:
        value = self.raw[key]
        # TOML booleans are not numbers, whatever Python thinks.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number of seconds, not {type(value).__name__}")
        if not math.isfinite(value) or value < 0:
            raise self.error(key, f"{value} is not a non-negative number of seconds")
        return float(value)

    def public_key(self, key: str) -> bytes:
        value = self.string(key).strip()
        try:
            raw = bytes.fromhex(value)
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as e:
            raise self.error(key, "must be an Ed25519 public key as 64 hex digits") from e
        return raw

    def address(self, key: str) -> str:
        value = self.string(key)
        try:
            parse_address(value)
        except ValueError as e:
            raise self.error(key, str(e)) from e
        return value


def _federation(path: Path, raw: object, node_listen: str) -> FederationConfig:
    """Read the ``[federation]`` table of the file at ``path``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: federation must be a table, [federation]")
    unknown = set(raw) - FEDERATION_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown [federation] keys {sorted(unknown)}; "
            f"known: {sorted(FEDERATION_KEYS)}",
            key=f"federation.{sorted(unknown)[0]}",
        )
    table = _Table(path, raw, "federation")
    for key in ("network", "listen"):
        if key not in raw:
            raise table.error(key, "is required")
    listen = table.address("listen")
    _, port = parse_address(listen)
    if port != 0 and listen == node_listen:
        raise table.error("listen", f"{listen} is also the client API's [node] listen")
    peers: tuple[str, ...] | None = None
    if "peers" in raw:
        names = raw["peers"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise table.error("peers", "must be a list of member names")
        for name in names:
            try:
                check_key_name(name)
            except KeyFormatError as e:
                raise table.error("peers", str(e)) from e
        if len(set(names)) != len(names):
            raise table.error("peers", "names a member twice")
        peers = tuple(names)
    dial: dict[str, str] = {}
    if "dial" in raw:
        table_dial = raw["dial"]
        if not isinstance(table_dial, dict):
            raise table.error("dial", 'must be a table of member = "host:port"')
        for name, address in table_dial.items():
            try:
                check_key_name(name)
                if not isinstance(address, str):
                    raise ValueError("must be a string host:port")
                parse_address(address)
            except (KeyFormatError, ValueError) as e:
                raise table.error("dial", f"{name}: {e}") from e
            dial[name] = address
    return FederationConfig(
        network=table.path_value("network"),
        listen=listen,
        tls_key=table.path_value("tls_key") if "tls_key" in raw else path.parent / "tls.key",
        tls_certificate=(
            table.path_value("tls_certificate")
            if "tls_certificate" in raw
            else path.parent / "tls.pem"
        ),
        peers=peers,
        dial=dial,
    )


def _client_tls(path: Path, raw: object) -> ClientTls:
    """Read the ``[client_tls]`` table of the file at ``path``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: client_tls must be a table, [client_tls]")
    unknown = set(raw) - CLIENT_TLS_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown [client_tls] keys {sorted(unknown)}; "
            f"known: {sorted(CLIENT_TLS_KEYS)}",
            key=f"client_tls.{sorted(unknown)[0]}",
        )
    table = _Table(path, raw, "client_tls")
    # No defaults: a table that names no files is more likely a mistake than
    # a wish for tls.key and tls.pem.
    for key in ("key", "certificate"):
        if key not in raw:
            raise table.error(key, "is required")
    return ClientTls(key=table.path_value("key"), certificate=table.path_value("certificate"))


def load_config(path: Path | None) -> NodeConfig:
    """Read ``path``, or return the defaults if it is None.

    Raises :class:`ConfigError` naming the key and the reason for any bad value.
    """
    if path is None:
        return NodeConfig.defaults()
    try:
        with path.open("rb") as f:
            raw: dict[str, Any] = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from e
    unknown_sections = set(raw) - set(TABLES)
    node = raw.get("node", {})
    if unknown_sections or not isinstance(node, dict):
        raise ConfigError(
            f"{path}: expected a [node] table and optional [federation] and [client_tls] "
            f"tables, found {sorted(raw)}"
        )
    unknown = set(node) - KEYS
    if unknown:
        # A misspelt key would otherwise silently fall back to a default.
        raise ConfigError(
            f"{path}: unknown [node] keys {sorted(unknown)}; known: {sorted(KEYS)}",
            key=sorted(unknown)[0],
        )
    table = _Table(path, node)
    config = NodeConfig.defaults(path.parent)
    if "origin" in node:
        origin = table.string("origin")
        try:
            # The origin is also the log key's name, so it obeys the key-name rules.
            check_key_name(origin)
        except KeyFormatError as e:
            raise table.error("origin", str(e)) from e
        config = replace(config, origin=origin)
    if "listen" in node:
        config = replace(config, listen=table.address("listen"))
    if "database" in node:
        url = table.string("database")
        try:
            _check_database(url)
        except ValueError as e:
            raise table.error("database", str(e)) from e
        config = replace(config, database=_resolve_database(url, path.parent))
    if "log_key" in node:
        config = replace(config, log_key=table.path_value("log_key"))
    if "log_key_next" in node:
        config = replace(config, log_key_next=table.path_value("log_key_next"))
        if config.log_key_next == config.log_key:
            raise table.error("log_key_next", "names the same file as log_key")
    if "operator_key" in node:
        config = replace(config, operator_key=table.path_value("operator_key"))
    if "register_key" in node:
        config = replace(config, register_key=table.path_value("register_key"))
    if "register_public_key" in node:
        config = replace(config, register_public_key=table.public_key("register_public_key"))
    if "metrics_listen" in node:
        off = table.string("metrics_listen").strip().lower() in _OFF
        metrics = None if off else table.address("metrics_listen")
        config = replace(config, metrics_listen=metrics)
    if "log_format" in node:
        config = replace(config, log_format=table.choice("log_format", LOG_FORMATS))
    if "log_level" in node:
        config = replace(config, log_level=table.choice("log_level", LOG_LEVELS, fold=True))
    if "shutdown_grace_seconds" in node:
        grace = table.seconds("shutdown_grace_seconds")
        config = replace(config, shutdown_grace_seconds=grace)
    if "federation" in raw:
        federation = _federation(path, raw["federation"], config.listen)
        config = replace(config, federation=federation)
    if "client_tls" in raw:
        config = replace(config, client_tls=_client_tls(path, raw["client_tls"]))
    return config
