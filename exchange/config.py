"""Node configuration: a small TOML file, or the defaults `make run` uses.

```toml
[node]
origin = "local.kaifang.example/log"   # the log's origin (checkpoint first line)
listen = "127.0.0.1:50051"             # gRPC address, host:port (port 0 picks one)
database = "sqlite+aiosqlite:///kaifang.db"   # SQLAlchemy URL
log_key = "log.key"                    # the log's Ed25519 signer key file
operator_key = "operator.key"          # this exchange operator's key (grants roles)
register_key = "register.key"          # the register authority's key file; the node
                                       # uses only its public half to check the feed
```

Relative paths (the key file, an SQLite database file) are relative to the
directory of the configuration file, or to the working directory for the
defaults, which keep everything under ``var/``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

DEFAULT_ORIGIN = "local.kaifang.example/log"
DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DIR = Path("var")
KEYS = frozenset({"origin", "listen", "database", "log_key", "operator_key", "register_key"})


class ConfigError(Exception):
    """The configuration file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to start."""

    origin: str
    listen: str
    database: str
    log_key: Path
    # None: beside the log key, named operator.key / register.key.
    operator_key: Path | None = None
    register_key: Path | None = None

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
        )


def _resolve_database(url: str, base: Path) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        path = Path(parsed.database)
        if not path.is_absolute():
            return parsed.set(database=str(base / path)).render_as_string(hide_password=False)
    return url


def load_config(path: Path | None) -> NodeConfig:
    """Read ``path``, or return the defaults if it is None."""
    if path is None:
        return NodeConfig.defaults()
    try:
        with path.open("rb") as f:
            raw: dict[str, Any] = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from e
    unknown_sections = set(raw) - {"node"}
    node = raw.get("node", {})
    if unknown_sections or not isinstance(node, dict):
        raise ConfigError(f"{path}: expected only a [node] table, found {sorted(raw)}")
    unknown = set(node) - KEYS
    if unknown:
        # A misspelt key would otherwise silently fall back to a default.
        raise ConfigError(f"{path}: unknown [node] keys {sorted(unknown)}; known: {sorted(KEYS)}")
    base = path.parent
    config = NodeConfig.defaults(base)
    try:
        if "origin" in node:
            config = replace(config, origin=str(node["origin"]))
        if "listen" in node:
            config = replace(config, listen=str(node["listen"]))
        if "database" in node:
            config = replace(config, database=_resolve_database(str(node["database"]), base))

        def key_file(name: str) -> Path:
            key = Path(str(node[name]))
            return key if key.is_absolute() else base / key

        if "log_key" in node:
            config = replace(config, log_key=key_file("log_key"))
        if "operator_key" in node:
            config = replace(config, operator_key=key_file("operator_key"))
        if "register_key" in node:
            config = replace(config, register_key=key_file("register_key"))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from e
    return config
