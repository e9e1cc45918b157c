"""The network file: which exchanges form a network, and how they know each other.

A network is a set of exchanges that replicate each other's logs (DESIGN.md
§5). Every member holds the same network file (TOML)::

    # network.toml
    name = "demo"                          # the network's name (free text)
    register_public_key = "3f1c…"          # the register authority's Ed25519 public
                                           # key, 64 hex digits
    ca_certificate = \"\"\"
    -----BEGIN CERTIFICATE-----
    …
    -----END CERTIFICATE-----
    \"\"\"                                    # the network CA (PEM) that issued every
                                           # member's TLS certificate

    [[exchange]]
    name = "east"                          # the exchange's name = its log's origin
    address = "127.0.0.1:7101"             # its federation endpoint (mutual TLS), host:port
    client_address = "127.0.0.1:7001"      # its client API (exchange and ledger services)
    vkey = "east+1a2b3c4d+AbC…"            # its log's C2SP verifier key (ledger.note)
    other_vkeys = ["east+9f8e7d6c+AXy…"]   # optional: the log's other keys, during and
                                           # after a key rotation (see below)
    operator_public_key = "9d0e…"          # its operator's Ed25519 public key (signs
                                           # role grants), 64 hex digits
    witness_vkey = "east+5e6f7a8b+BCd…"    # its witness's cosigner verifier key (C2SP
                                           # tlog-cosignature, type 0x04); optional
    certificate = \"\"\"
    -----BEGIN CERTIFICATE-----
    …
    -----END CERTIFICATE-----
    \"\"\"                                    # its TLS certificate, as the CA issued it

Member names are key names and log origins (:func:`ledger.note.check_key_name`)
restricted to ``[A-Za-z0-9][A-Za-z0-9.-]*``, so that a name is also a DNS name
(a member's certificate carries it as a subject alternative name, and peers
verify it there) and a directory name; names are unique ignoring case, as DNS
and some file systems compare them. Each certificate must be signed by the CA,
name its member, serve both TLS server and client authentication, and belong
to one member only. :func:`load_network` checks all of it and refuses a bad
file with a :class:`~exchange.config.ConfigError` naming the file, the entry
(its index from 0 and its name) and the key, such as
``network.toml: exchange[1] "west": vkey: …``.

**Log keys.** ``vkey`` is the key the member's log signs with; a log that
rotates its key has others, listed in ``other_vkeys``: the next key while
the log signs with both (``[node] log_key_next``), and, once it is retired,
the old key, which signed the log's earlier checkpoints (a member that
joins later verifies those with it). Each is named after the member and
all have distinct key IDs. Peers and clients accept a checkpoint signed by
any of the member's keys, and reject one with a bad signature by any of
them. Rotating: list the next key in ``other_vkeys`` on every member, then
set ``log_key_next`` on the rotating node; to retire the old key, make the
next key ``vkey`` and move the old one to ``other_vkeys``.

Peers talk over mutual TLS: :func:`server_credentials`,
:func:`channel_credentials` and :func:`channel_options` build the gRPC
credentials, and :func:`peer_of` tells a servicer which member is calling.
Clients talk to a node in plaintext, or over TLS that authenticates the
server only when its configuration has a ``[client_tls]`` table
(:func:`load_client_tls`, :func:`client_server_credentials`).
:func:`init_network` creates a whole network (CA, keys, certificates, node
configurations and the network file) for a demo or a test.

Errors raised while peers talk (the file's own errors are ConfigErrors)::

    NetworkError
    ├── UnknownMemberError      a name is not a member of the network
    └── PeerRefusedError        a caller is not a member (no certificate, or not listed)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.config import OPERATOR_KEY_NAME, ConfigError, NodeConfig, parse_address
from exchange.limits import MAX_MESSAGE_BYTES
from exchange.rules import REGISTER
from ledger.cosignature import CosignatureVerifier
from ledger.errors import KeyFileError, KeyFormatError
from ledger.keys import create_key_file, load_key_file, load_or_create_witness_key_file
from ledger.note import Verifier, check_key_name

NETWORK_FILE = "network.toml"
NODE_CONFIG_FILE = "kaifang.toml"
# A node's witness (cosigning) key, beside its log key.
WITNESS_KEY_FILE = "witness.key"
CA_VALIDITY = dt.timedelta(days=3652)
LEAF_VALIDITY = dt.timedelta(days=731)
# Certificates start a little in the past, so that a peer whose clock is
# slightly behind does not refuse a certificate issued a moment ago.
_BACKDATE = dt.timedelta(minutes=5)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
_TOP_KEYS = frozenset({"name", "register_public_key", "ca_certificate", "exchange"})
_MEMBER_KEYS = frozenset(
    {
        "name", "address", "client_address", "vkey", "operator_public_key", "certificate",
        "witness_vkey", "other_vkeys",
    }
)  # fmt: skip
# The auth context property gRPC fills with the PEM of the peer's certificate.
_PEER_CERT_PROPERTY = "x509_pem_cert"


class NetworkError(Exception):
    """Root of the errors raised while members of a network talk."""


class UnknownMemberError(NetworkError):
    """A name is not a member of the network."""


class PeerRefusedError(NetworkError):
    """A caller did not prove that it is a member; the message says why."""


@dataclass(frozen=True)
class Member:
    """One exchange of the network, as the network file lists it."""

    name: str  # its log's origin
    address: str  # federation endpoint (mutual TLS), host:port
    client_address: str  # client API endpoint, host:port
    vkey: str  # C2SP verifier key of its log
    operator_public_key: bytes  # 32 raw bytes, Ed25519
    certificate: bytes  # PEM
    # Its witness's cosigner verifier key (type 0x04); None if not published.
    witness_vkey: str | None = None
    # Its log's other verifier keys: a next key being rotated in, retired keys.
    other_vkeys: tuple[str, ...] = ()

    def fingerprint(self) -> bytes:
        """Return the SHA-256 of the certificate's DER encoding."""
        return _fingerprint(x509.load_pem_x509_certificate(self.certificate))

    def verifier(self) -> Verifier:
        """Return the verifier of the key its log signs with (``vkey``)."""
        return Verifier.from_vkey(self.vkey)

    @property
    def vkeys(self) -> tuple[str, ...]:
        """Every verifier key of its log: ``vkey`` first, then ``other_vkeys``."""
        return (self.vkey, *self.other_vkeys)

    def verifiers(self) -> tuple[Verifier, ...]:
        """Return the verifiers of every key of its log; a checkpoint signed by any is its."""
        return tuple(Verifier.from_vkey(v) for v in self.vkeys)


@dataclass(frozen=True)
class Network:
    """The members of a network, and the keys every member trusts."""

    name: str
    register_public_key: bytes  # 32 raw bytes, Ed25519
    ca_certificate: bytes  # PEM
    members: tuple[Member, ...]
    # Fingerprint -> member: peer_of runs on every call, so it looks up
    # instead of parsing each member's certificate.
    _by_fingerprint: dict[bytes, Member] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        """Index the members by certificate fingerprint."""
        for member in self.members:
            self._by_fingerprint[member.fingerprint()] = member

    def member(self, name: str) -> Member:
        """Return the member called ``name``; raises :class:`UnknownMemberError`."""
        for member in self.members:
            if member.name == name:
                return member
        known = ", ".join(m.name for m in self.members)
        raise UnknownMemberError(f"{name!r} is not a member of {self.name!r} ({known})")

    def by_certificate(self, pem_or_der: bytes) -> Member | None:
        """Return the member whose certificate this is (PEM or DER), or None."""
        try:
            if pem_or_der.lstrip().startswith(b"-----BEGIN"):
                certificate = x509.load_pem_x509_certificate(pem_or_der)
            else:
                certificate = x509.load_der_x509_certificate(pem_or_der)
        except ValueError:
            return None
        return self._by_fingerprint.get(_fingerprint(certificate))

    def operator_keys(self) -> dict[str, bytes]:
        """Return each member's operator public key, by member name."""
        return {m.name: m.operator_public_key for m in self.members}


def _fingerprint(certificate: x509.Certificate) -> bytes:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()


def check_member_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` can name a member.

    A member's name is its log's origin, the DNS name in its certificate and
    the directory of its files, so it obeys all three sets of rules.
    """
    try:
        check_key_name(name)
    except KeyFormatError as e:
        raise ValueError(str(e)) from e
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a member name: letters, digits, '.' and '-', "
            "starting with a letter or digit"
        )


# -- reading the network file ----------------------------------------------


class _Entry:
    """One table of the network file: typed reads that name the key on failure."""

    def __init__(self, path: Path, raw: dict[str, Any], where: str, prefix: str) -> None:
        self.path = path
        self.raw = raw
        self.where = where  # 'exchange[1] "west": ' or ''
        self.prefix = prefix  # 'exchange[1].' or ''

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.where}{key}: {reason}", key=self.prefix + key)

    def string(self, key: str) -> str:
        if key not in self.raw:
            raise self.error(key, "is required")
        value = self.raw[key]
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {type(value).__name__}")
        return value

    def public_key(self, key: str) -> bytes:
        try:
            raw = bytes.fromhex(self.string(key).strip())
            Ed25519PublicKey.from_public_bytes(raw)
        except ValueError as e:
            raise self.error(key, "must be an Ed25519 public key as 64 hex digits") from e
        return raw

    def address(self, key: str) -> str:
        value = self.string(key)
        try:
            _, port = parse_address(value)
        except ValueError as e:
            raise self.error(key, str(e)) from e
        if port == 0:
            # Others dial it: "any free port" is no address.
            raise self.error(key, f"{value!r}: a member's address needs a real port, not 0")
        return value

    def certificate(self, key: str) -> x509.Certificate:
        try:
            found = x509.load_pem_x509_certificates(self.string(key).encode("ascii"))
        except (ValueError, UnicodeEncodeError) as e:
            raise self.error(key, "is not a PEM certificate") from e
        if len(found) != 1:
            raise self.error(key, f"holds {len(found)} certificates, not one")
        return found[0]


def _check_ca(top: _Entry, ca: x509.Certificate) -> None:
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise top.error(
            "ca_certificate", "is not a CA certificate (basicConstraints CA is not set)"
        )


def _check_certificate(
    entry: _Entry, name: str, certificate: x509.Certificate, ca: x509.Certificate
) -> None:
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise entry.error(
            "certificate", f"is not signed by the network's CA ({str(e) or 'bad signature'})"
        ) from e
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = names.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns_names = []
    # Peers dial a member by its name (channel_options), so the name must be
    # in the certificate, or every TLS handshake with it fails.
    if name.lower() not in (n.lower() for n in dns_names):
        raise entry.error("certificate", f"does not name {name!r} among its DNS names {dns_names}")
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return  # no restriction: good for both ends
    for usage, what in (
        (ExtendedKeyUsageOID.SERVER_AUTH, "serverAuth"),
        (ExtendedKeyUsageOID.CLIENT_AUTH, "clientAuth"),
    ):
        # A member both serves and calls its peers.
        if usage not in usages:
            raise entry.error("certificate", f"its extended key usage lacks {what}")


def _member(path: Path, index: int, raw: object, ca: x509.Certificate) -> Member:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: exchange[{index}]: must be a table, [[exchange]]")
    label = raw.get("name")
    where = f'exchange[{index}] "{label}": ' if isinstance(label, str) else f"exchange[{index}]: "
    entry = _Entry(path, raw, where, f"exchange[{index}].")
    unknown = set(raw) - _MEMBER_KEYS
    if unknown:
        raise entry.error(sorted(unknown)[0], f"unknown key; known: {sorted(_MEMBER_KEYS)}")
    name = entry.string("name")
    try:
        check_member_name(name)
    except ValueError as e:
        raise entry.error("name", str(e)) from e
    vkey = entry.string("vkey")
    try:
        verifier = Verifier.from_vkey(vkey)
    except KeyFormatError as e:
        raise entry.error("vkey", str(e)) from e
    if verifier.name != name:
        # The log's checkpoints name their origin; a key of another name
        # would verify none of them.
        raise entry.error("vkey", f"is the key of {verifier.name!r}, not of {name!r}")
    other_vkeys = _other_vkeys(entry, name, verifier)
    certificate = entry.certificate("certificate")
    _check_certificate(entry, name, certificate, ca)
    witness_vkey = None
    if "witness_vkey" in raw:
        witness_vkey = entry.string("witness_vkey")
        try:
            witness = CosignatureVerifier.from_vkey(witness_vkey)
        except KeyFormatError as e:
            raise entry.error("witness_vkey", str(e)) from e
        if witness.name != name:
            raise entry.error("witness_vkey", f"is the key of {witness.name!r}, not of {name!r}")
    return Member(
        name=name,
        address=entry.address("address"),
        client_address=entry.address("client_address"),
        vkey=vkey,
        operator_public_key=entry.public_key("operator_public_key"),
        certificate=certificate.public_bytes(serialization.Encoding.PEM),
        witness_vkey=witness_vkey,
        other_vkeys=other_vkeys,
    )


def _other_vkeys(entry: _Entry, name: str, current: Verifier) -> tuple[str, ...]:
    """Read ``other_vkeys``: more keys of the member's log, each named after it, none repeated."""
    if "other_vkeys" not in entry.raw:
        return ()
    raw = entry.raw["other_vkeys"]
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise entry.error("other_vkeys", "must be a list of verifier keys")
    seen = {current.key_id}
    for vkey in raw:
        try:
            verifier = Verifier.from_vkey(vkey)
        except KeyFormatError as e:
            raise entry.error("other_vkeys", f"{vkey[:60]!r}: {e}") from e
        if verifier.name != name:
            raise entry.error("other_vkeys", f"holds a key of {verifier.name!r}, not of {name!r}")
        # Key IDs tell a log's keys apart on signature lines: they must differ.
        if verifier.key_id in seen:
            raise entry.error(
                "other_vkeys", f"lists the key ID {verifier.key_id.hex()} twice (vkey included)"
            )
        seen.add(verifier.key_id)
    return tuple(raw)


def load_network(path: Path) -> Network:
    """Read and check the network file at ``path``.

    Raises :class:`~exchange.config.ConfigError` naming the file, the entry
    and the key for anything missing, malformed or inconsistent.
    """
    try:
        with path.open("rb") as f:
            raw: dict[str, Any] = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read the network file {path}: {e}") from e
    top = _Entry(path, raw, "", "")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise top.error(sorted(unknown)[0], f"unknown key; known: {sorted(_TOP_KEYS)}")
    name = top.string("name")
    register_public_key = top.public_key("register_public_key")
    ca = top.certificate("ca_certificate")
    _check_ca(top, ca)
    entries = raw.get("exchange")
    if not isinstance(entries, list) or not entries:
        raise top.error("exchange", "list at least one member, each an [[exchange]] table")
    members: list[Member] = []
    seen_names: dict[str, int] = {}
    seen_certificates: dict[bytes, int] = {}
    for index, entry in enumerate(entries):
        member = _member(path, index, entry, ca)
        where = f'{path}: exchange[{index}] "{member.name}"'
        first = seen_names.setdefault(member.name.lower(), index)
        if first != index:
            raise ConfigError(
                f"{where}: name: exchange[{first}] has the same name (names ignore case)",
                key=f"exchange[{index}].name",
            )
        first = seen_certificates.setdefault(member.fingerprint(), index)
        if first != index:
            # A peer is known by its certificate: two members with one
            # certificate could each speak for the other.
            raise ConfigError(
                f"{where}: certificate: exchange[{first}] has the same certificate",
                key=f"exchange[{index}].certificate",
            )
        members.append(member)
    return Network(
        name=name,
        register_public_key=register_public_key,
        ca_certificate=ca.public_bytes(serialization.Encoding.PEM),
        members=tuple(members),
    )


# -- TLS -------------------------------------------------------------------


@dataclass(frozen=True)
class TlsIdentity:
    """This node's TLS private key and certificate (chain), PEM."""

    private_key: bytes
    certificate: bytes

    def __repr__(self) -> str:
        # Never the private key: reprs end up in logs.
        return f"TlsIdentity(certificate sha256 {self.fingerprint().hex()[:16]}…)"

    def fingerprint(self) -> bytes:
        """Return the SHA-256 of the DER of the (first) certificate."""
        return _fingerprint(x509.load_pem_x509_certificate(self.certificate))

    @classmethod
    def load(
        cls,
        key_path: Path,
        cert_path: Path,
        *,
        key_name: str | None = None,
        certificate_name: str | None = None,
    ) -> TlsIdentity:
        """Read a key and its certificate.

        Raises :class:`~exchange.config.ConfigError` naming the file if either
        is unreadable or malformed, if the key file is accessible by group or
        others, or if the key is not the certificate's. ``key_name`` and
        ``certificate_name`` are the configuration keys that named the files,
        given to the error as its ``key``.
        """
        try:
            mode = key_path.stat().st_mode
            key_pem = key_path.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read the TLS key {key_path}: {e}", key=key_name) from e
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(
                f"{key_path}: the TLS key is accessible by other users "
                f"(mode {stat.S_IMODE(mode):04o}); chmod 600 {key_path}",
                key=key_name,
            )
        try:
            cert_pem = cert_path.read_bytes()
        except OSError as e:
            raise ConfigError(
                f"cannot read the TLS certificate {cert_path}: {e}", key=certificate_name
            ) from e
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as e:
            # Say which file, never what it holds.
            raise ConfigError(
                f"{key_path} does not hold an unencrypted PEM private key", key=key_name
            ) from e
        try:
            certificate = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as e:
            raise ConfigError(
                f"{cert_path} does not hold a PEM certificate", key=certificate_name
            ) from e
        spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
            raise ConfigError(
                f"{key_path} is not the key of the certificate in {cert_path}", key=key_name
            )
        return cls(private_key=key_pem, certificate=cert_pem)


def server_credentials(network: Network, identity: TlsIdentity) -> grpc.ServerCredentials:
    """Return credentials for a federation server: mutual TLS under the network's CA.

    A caller without a certificate issued by the CA fails the handshake; which
    member it is, and whether it is one at all, is :func:`peer_of`'s to say.
    """
    return grpc.ssl_server_credentials(
        [(identity.private_key, identity.certificate)],
        root_certificates=network.ca_certificate,
        require_client_auth=True,
    )


def load_client_tls(config: NodeConfig) -> TlsIdentity | None:
    """Load the client API's TLS key and certificate; None without ``[client_tls]``.

    Raises :class:`~exchange.config.ConfigError` naming the file and the
    ``client_tls`` key, as :meth:`TlsIdentity.load` does.
    """
    if config.client_tls is None:
        return None
    return TlsIdentity.load(
        config.client_tls.key,
        config.client_tls.certificate,
        key_name="client_tls.key",
        certificate_name="client_tls.certificate",
    )


def client_server_credentials(identity: TlsIdentity) -> grpc.ServerCredentials:
    """Return credentials for the client API: TLS that authenticates the server only.

    Clients present no certificate: they are known by the signatures on what
    they submit, not by the connection. gRPC's TLS stack negotiates TLS 1.2
    or later.
    """
    return grpc.ssl_server_credentials(
        [(identity.private_key, identity.certificate)], require_client_auth=False
    )


def channel_credentials(network: Network, identity: TlsIdentity) -> grpc.ChannelCredentials:
    """Return credentials for dialling a member: trust the CA, present ``identity``."""
    return grpc.ssl_channel_credentials(
        root_certificates=network.ca_certificate,
        private_key=identity.private_key,
        certificate_chain=identity.certificate,
    )


def channel_options(member: Member) -> list[tuple[str, str | int]]:
    """Return the channel options for dialling ``member`` at its address.

    The certificate names the member, not the host of its address (often an
    IP address), so TLS checks the member's name instead.
    """
    return [
        ("grpc.ssl_target_name_override", member.name),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # A peer back from a restart or a partition is dialled again within
        # seconds, not after gRPC's default backoff of up to two minutes.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.min_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2000),
        # A peer that stops answering (frozen, or its link cut) is noticed by
        # keepalive pings, so that a follow stream from it fails over.
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]


def peer_of(auth_context: Mapping[str, Iterable[bytes]], network: Network) -> Member:
    """Return the member calling, from a servicer context's ``auth_context()``.

    Raises :class:`PeerRefusedError` if the call carries no client
    certificate or one that the network file does not list (a certificate
    the CA issued to someone who is no longer, or never was, a member).
    """
    pems = list(auth_context.get(_PEER_CERT_PROPERTY, ()))
    if not pems:
        raise PeerRefusedError("the caller presented no client certificate")
    member = network.by_certificate(pems[0])
    if member is None:
        subject = "an unreadable certificate"
        try:
            certificate = x509.load_pem_x509_certificate(pems[0])
            subject = (
                f"{certificate.subject.rfc4514_string()} (sha256 {_fingerprint(certificate).hex()})"
            )
        except ValueError:
            pass
        raise PeerRefusedError(f"the caller's certificate {subject} is not in the network file")
    return member


def load_federation(config: NodeConfig) -> tuple[Network, TlsIdentity] | None:
    """Load the network file and TLS identity of ``config``; None without ``[federation]``.

    Checks that the node is the member its origin names: same certificate,
    log keys the network file lists for it (``log_key``, and
    ``log_key_next`` while rotating: each must be ``vkey`` or one of
    ``other_vkeys``, so that peers verify what the node signs), same operator
    key (when those key files exist), same register authority (when
    ``register_public_key`` is set), and that every configured peer is
    another member. Raises :class:`~exchange.config.ConfigError` otherwise.
    """
    federation = config.federation
    if federation is None:
        return None
    network = load_network(federation.network)
    identity = TlsIdentity.load(federation.tls_key, federation.tls_certificate)
    try:
        member = network.member(config.origin)
    except UnknownMemberError as e:
        raise ConfigError(f"{federation.network}: {e}; [node] origin names it", key="origin") from e
    if identity.fingerprint() != member.fingerprint():
        raise ConfigError(
            f"{federation.tls_certificate} is not the certificate {federation.network} "
            f"lists for {member.name!r}",
            key="federation.tls_certificate",
        )
    if (
        config.register_public_key is not None
        and config.register_public_key != network.register_public_key
    ):
        raise ConfigError(
            f"[node] register_public_key is not the register authority {federation.network} names",
            key="register_public_key",
        )
    log_keys = [v.public_key for v in member.verifiers()]
    checks = [
        ("log_key", config.log_key, log_keys),
        ("operator_key", config.operator_key_file(), [member.operator_public_key]),
    ]
    if config.log_key_next is not None:
        checks.append(("log_key_next", config.log_key_next, log_keys))
    for key, path, expected in checks:
        if not path.exists():
            continue  # the node creates it; its absence is the node's to report
        try:
            held = load_key_file(path)
        except KeyFileError as e:
            raise ConfigError(f"[node] {key}: {e}", key=key) from e
        if held.public_key not in expected:
            hint = ""
            if key == "log_key_next":
                # The usual first step of a rotation: say what to add.
                hint = f"; list its verifier key in other_vkeys: {held.verifier_key()}"
            raise ConfigError(
                f"[node] {key}: {path} is not a key {federation.network} lists for "
                f"{member.name!r}{hint}",
                key=key,
            )
    for peer in federation.peers or ():
        if peer == member.name:
            raise ConfigError(
                f"[federation] peers: {peer!r} is this node itself", key="federation.peers"
            )
        try:
            network.member(peer)
        except UnknownMemberError as e:
            raise ConfigError(f"[federation] peers: {e}", key="federation.peers") from e
    return network, identity


# -- creating a network ----------------------------------------------------


def create_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Return a new self-signed CA: an ECDSA P-256 key and its 10-year certificate."""
    # ECDSA P-256: the key type every TLS stack (gRPC's BoringSSL included)
    # accepts for certificates and handshakes.
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def issue_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_certificate: x509.Certificate,
    name: str,
    *,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """Return a new ECDSA P-256 key and a 2-year certificate for member ``name``.

    The certificate names ``name`` (common name and DNS name) and each of
    ``hosts`` (an IP address or a DNS name), and serves both TLS server and
    client authentication, since a member does both.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(name)]
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    unique = list(dict.fromkeys(alt_names))
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + LEAF_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(unique), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, certificate


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Return ``key`` as unencrypted PKCS#8 PEM (protect it with file permissions)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write a file that must not exist yet, with ``mode`` from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: never clobber a key; the mode is set at creation, not after.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as e:
        raise ConfigError(f"{path} already exists; not overwriting it") from e
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _toml_string(text: str) -> str:
    """Quote ``text`` as a TOML basic string."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif c < " " or c == "\x7f":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _toml_pem(pem: bytes) -> str:
    # A multi-line basic string: the newline right after the opening quotes
    # is dropped, so the value is the PEM exactly; PEM has no quote or backslash.
    return '"""\n' + pem.decode("ascii") + '"""'


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def init_network(
    directory: Path,
    names: Sequence[str],
    *,
    host: str = "127.0.0.1",
    base_port: int = 7400,
    network_name: str = "kaifang",
    client_tls: bool = False,
) -> Network:
    """Create a network of the exchanges ``names`` in ``directory``; return it.

    Writes ``ca/ca.key`` and ``ca/ca.pem`` (the network CA),
    ``register.key`` (the register authority), ``network.toml``, and for each
    name ``NAME/tls.key``, ``NAME/tls.pem``, ``NAME/log.key``,
    ``NAME/operator.key`` and ``NAME/kaifang.toml``. Member ``i`` (from 0)
    serves clients on ``host:base_port + 2i`` and peers on
    ``host:base_port + 2i + 1``. Private keys are created with mode 0600.

    With ``client_tls``, each member's configuration also has a
    ``[client_tls]`` table naming its TLS key and certificate, so that it
    serves clients over TLS too; clients verify it with ``ca/ca.pem``. The
    certificate names ``localhost``, ``127.0.0.1`` and ``host`` besides the
    member. Without it, the client API is plaintext, as tools that dial it
    directly expect.

    Requires at least one name, each valid (:func:`check_member_name`) and
    unique ignoring case, and that none of the files exists: a running
    network's keys are never overwritten. Raises
    :class:`~exchange.config.ConfigError` otherwise.
    """
    if not names:
        raise ConfigError("a network needs at least one exchange name")
    seen: set[str] = set()
    for name in names:
        try:
            check_member_name(name)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        if name.lower() in seen:
            raise ConfigError(f"{name!r} is named twice (names ignore case)")
        seen.add(name.lower())
    last_port = base_port + 2 * len(names) - 1
    if base_port < 1 or last_port > 65535:
        raise ConfigError(
            f"ports {base_port}..{last_port} do not fit in 1..65535; choose another base port"
        )
    try:
        parse_address(_host_port(host, base_port))
    except ValueError as e:
        raise ConfigError(f"host: {e}") from e
    network_file = directory / NETWORK_FILE
    files = [network_file, directory / "ca" / "ca.key", directory / "ca" / "ca.pem"]
    files.append(directory / "register.key")
    for name in names:
        files += [
            directory / name / f
            for f in ("tls.key", "tls.pem", "log.key", "operator.key", WITNESS_KEY_FILE)
        ]
        files.append(directory / name / NODE_CONFIG_FILE)
    for path in files:
        if path.exists():
            raise ConfigError(f"{path} already exists; not overwriting a network's files")

    ca_key, ca_certificate = create_ca(f"{network_name} network CA")
    _write_new(directory / "ca" / "ca.key", private_key_pem(ca_key), 0o600)
    ca_pem = ca_certificate.public_bytes(serialization.Encoding.PEM)
    _write_new(directory / "ca" / "ca.pem", ca_pem, 0o644)
    try:
        register = create_key_file(directory / "register.key", REGISTER)
    except KeyFileError as e:
        raise ConfigError(str(e)) from e
    hosts = list(dict.fromkeys(["localhost", "127.0.0.1", host]))

    lines = [
        "# The network file: every member of the network holds this same file.",
        f"name = {_toml_string(network_name)}",
        f'register_public_key = "{register.public_key.hex()}"',
        f"ca_certificate = {_toml_pem(ca_pem)}",
    ]
    for i, name in enumerate(names):
        node_dir = directory / name
        tls_key, certificate = issue_certificate(ca_key, ca_certificate, name, hosts=hosts)
        certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
        _write_new(node_dir / "tls.key", private_key_pem(tls_key), 0o600)
        _write_new(node_dir / "tls.pem", certificate_pem, 0o644)
        try:
            log = create_key_file(node_dir / "log.key", name)
            operator = create_key_file(node_dir / "operator.key", OPERATOR_KEY_NAME)
            witness = load_or_create_witness_key_file(node_dir / WITNESS_KEY_FILE, name)
        except KeyFileError as e:
            raise ConfigError(str(e)) from e
        client = _host_port(host, base_port + 2 * i)
        federation = _host_port(host, base_port + 2 * i + 1)
        transport = "TLS" if client_tls else "plaintext"
        client_tls_table = [
            "[client_tls]",
            'key = "tls.key"  # the member\'s TLS identity; clients check it with the network CA',
            'certificate = "tls.pem"',
            "",
        ]
        config = "\n".join(
            [
                "[node]",
                f"origin = {_toml_string(name)}",
                f"listen = {_toml_string(client)}  # the client API, {transport}",
                'database = "sqlite+aiosqlite:///kaifang.db"',
                'log_key = "log.key"',
                'operator_key = "operator.key"',
                f'register_public_key = "{register.public_key.hex()}"',
                'metrics_listen = "off"',
                "",
                "[federation]",
                f'network = "../{NETWORK_FILE}"',
                f"listen = {_toml_string(federation)}  # peers, mutual TLS",
                'tls_key = "tls.key"',
                'tls_certificate = "tls.pem"',
                "# peers = [...]  # replicate only from these members (default: all others)",
                "",
                *(client_tls_table if client_tls else []),
            ]
        )
        _write_new(node_dir / NODE_CONFIG_FILE, config.encode("utf-8"), 0o644)
        lines += [
            "",
            "[[exchange]]",
            f"name = {_toml_string(name)}",
            f"address = {_toml_string(federation)}",
            f"client_address = {_toml_string(client)}",
            f"vkey = {_toml_string(log.verifier_key())}",
            f'operator_public_key = "{operator.public_key.hex()}"',
            f"witness_vkey = {_toml_string(witness.verifier_key())}",
            f"certificate = {_toml_pem(certificate_pem)}",
        ]
    # Last: the file that marks the directory as a network is written only
    # once everything it lists exists.
    _write_new(network_file, ("\n".join(lines) + "\n").encode("utf-8"), 0o644)
    return load_network(network_file)
