"""The network file, the TLS identities and mutual TLS between members, for real."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from exchange import server as exchange_server
from exchange.config import OPERATOR_KEY_NAME, ConfigError, load_config
from exchange.network import (
    MAX_MESSAGE_BYTES,
    Network,
    PeerRefusedError,
    TlsIdentity,
    UnknownMemberError,
    channel_credentials,
    channel_options,
    create_ca,
    init_network,
    issue_certificate,
    load_federation,
    load_network,
    peer_of,
    private_key_pem,
    server_credentials,
)
from exchange.rules import REGISTER
from ledger.keys import create_key_file, load_key_file

NAMES = ("east", "west", "north")


@pytest.fixture
def net(tmp_path: Path) -> tuple[Path, Network]:
    """A three-member network on the default ports, its files in a directory."""
    directory = tmp_path / "net"
    return directory, init_network(directory, NAMES, network_name="demo")


def _ca_key(directory: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key((directory / "ca" / "ca.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _write_identity(
    directory: Path,
    key: ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
) -> TlsIdentity:
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / "tls.key"
    key_path.write_bytes(private_key_pem(key))
    key_path.chmod(0o600)
    cert_path = directory / "tls.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return TlsIdentity.load(key_path, cert_path)


def _identity(directory: Path, name: str) -> TlsIdentity:
    return TlsIdentity.load(directory / name / "tls.key", directory / name / "tls.pem")


# -- init ------------------------------------------------------------------


def test_init_creates_every_file_with_private_keys_readable_by_their_owner_only(
    net: tuple[Path, Network],
) -> None:
    directory, network = net
    private = ["ca/ca.key", "register.key"]
    public = ["ca/ca.pem", "network.toml"]
    for name in NAMES:
        private += [f"{name}/tls.key", f"{name}/log.key", f"{name}/operator.key"]
        public += [f"{name}/tls.pem", f"{name}/kaifang.toml"]
    for relative in private:
        assert stat.S_IMODE((directory / relative).stat().st_mode) == 0o600, relative
    for relative in public:
        assert (directory / relative).is_file(), relative
    assert load_network(directory / "network.toml") == network
    assert network.name == "demo"
    assert [m.name for m in network.members] == list(NAMES)
    assert load_key_file(directory / "register.key").name == REGISTER
    assert network.register_public_key == load_key_file(directory / "register.key").public_key


def test_init_gives_each_member_its_ports_keys_and_a_certificate_from_the_ca(
    net: tuple[Path, Network],
) -> None:
    directory, network = net
    ca = x509.load_pem_x509_certificate(network.ca_certificate)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    for i, member in enumerate(network.members):
        assert member.client_address == f"127.0.0.1:{7400 + 2 * i}"
        assert member.address == f"127.0.0.1:{7400 + 2 * i + 1}"
        certificate = x509.load_pem_x509_certificate(member.certificate)
        certificate.verify_directly_issued_by(ca)  # raises if the CA did not sign it
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert member.name in names.get_values_for_type(x509.DNSName)
        assert "localhost" in names.get_values_for_type(x509.DNSName)
        assert network.by_certificate(member.certificate) == member
        der = certificate.public_bytes(serialization.Encoding.DER)
        assert network.by_certificate(der) == member
        log = load_key_file(directory / member.name / "log.key")
        assert log.verifier_key() == member.vkey
        operator = load_key_file(directory / member.name / "operator.key")
        assert operator.name == OPERATOR_KEY_NAME
        assert network.operator_keys()[member.name] == operator.public_key
    assert network.member("west") is network.members[1]
    with pytest.raises(UnknownMemberError, match="'south'"):
        network.member("south")
    assert network.by_certificate(b"not a certificate") is None


def test_every_node_config_loads_with_its_federation_and_matching_identity(
    net: tuple[Path, Network],
) -> None:
    directory, network = net
    for i, name in enumerate(NAMES):
        config = load_config(directory / name / "kaifang.toml")
        assert config.origin == name
        assert config.listen == network.member(name).client_address
        assert config.register_public_key == network.register_public_key
        assert config.metrics_listen is None
        federation = config.federation
        assert federation is not None
        assert federation.listen == f"127.0.0.1:{7400 + 2 * i + 1}"
        assert federation.tls_key == directory / name / "tls.key"
        assert federation.peers is None
        loaded = load_federation(config)
        assert loaded is not None
        assert loaded[0] == network
        assert loaded[1].fingerprint() == network.member(name).fingerprint()


def test_the_operator_key_name_is_the_one_the_node_uses() -> None:
    assert exchange_server.OPERATOR_KEY_NAME == OPERATOR_KEY_NAME


def test_init_refuses_to_overwrite_a_network(net: tuple[Path, Network]) -> None:
    directory, _ = net
    before = (directory / "east" / "tls.key").read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        init_network(directory, ["south"])
    assert (directory / "east" / "tls.key").read_bytes() == before
    assert not (directory / "south").exists()


@pytest.mark.parametrize(
    ("names", "reason"),
    [
        ([], "at least one"),
        (["east", "East"], "twice"),
        (["a+b"], "'+'"),
        (["under_score"], "not a member name"),
        (["-dash"], "not a member name"),
        (["a/b"], "not a member name"),
    ],
)
def test_init_refuses_bad_names(tmp_path: Path, names: list[str], reason: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(reason)):
        init_network(tmp_path / "net", names)
    assert not (tmp_path / "net").exists()


def test_init_refuses_ports_beyond_65535(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="65535"):
        init_network(tmp_path / "net", ["a", "b"], base_port=65533)


# -- the network file's errors name the entry and the key ------------------


def _member_block(text: str, index: int) -> tuple[int, int]:
    """Return the span of the ``index``-th [[exchange]] table in ``text``."""
    starts = [m.start() for m in re.finditer(r"^\[\[exchange\]\]$", text, re.MULTILINE)]
    end = starts[index + 1] if index + 1 < len(starts) else len(text)
    return starts[index], end


def _edit_member(path: Path, index: int, key: str, value: str) -> None:
    text = path.read_text()
    start, end = _member_block(text, index)
    block = re.sub(
        rf'^{key} = (""".*?"""|".*?")$',
        lambda _: f"{key} = {value}",
        text[start:end],
        flags=re.MULTILINE | re.DOTALL,
    )
    assert block != text[start:end], key
    path.write_text(text[:start] + block + text[end:])


def _refused(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as refused:
        load_network(path)
    assert str(path) in str(refused.value)
    return refused.value


def test_a_duplicate_name_is_refused_naming_both_entries(net: tuple[Path, Network]) -> None:
    directory, _ = net
    path = directory / "network.toml"
    text = path.read_text()
    start, end = _member_block(text, 0)
    path.write_text(text + "\n" + text[start:end])
    error = _refused(path)
    assert 'exchange[3] "east": name: exchange[0] has the same name' in str(error)
    assert error.key == "exchange[3].name"


def test_a_vkey_of_another_name_is_refused(net: tuple[Path, Network]) -> None:
    directory, network = net
    path = directory / "network.toml"
    _edit_member(path, 1, "vkey", f'"{network.member("east").vkey}"')
    error = _refused(path)
    assert 'exchange[1] "west": vkey: ' in str(error)
    assert "'east'" in str(error)
    assert error.key == "exchange[1].vkey"


def test_a_malformed_vkey_is_refused(net: tuple[Path, Network]) -> None:
    directory, _ = net
    path = directory / "network.toml"
    _edit_member(path, 2, "vkey", '"north+00000000+AAAA"')
    assert 'exchange[2] "north": vkey: ' in str(_refused(path))


def test_a_certificate_from_another_ca_is_refused(net: tuple[Path, Network]) -> None:
    directory, _ = net
    path = directory / "network.toml"
    other_key, other_ca = create_ca("impostor CA")
    _, forged = issue_certificate(other_key, other_ca, "west")
    pem = forged.public_bytes(serialization.Encoding.PEM).decode()
    _edit_member(path, 1, "certificate", f'"""\n{pem}"""')
    error = _refused(path)
    assert 'exchange[1] "west": certificate: is not signed by the network' in str(error)
    assert error.key == "exchange[1].certificate"


def test_a_certificate_for_another_name_is_refused(net: tuple[Path, Network]) -> None:
    directory, network = net
    path = directory / "network.toml"
    _, other = issue_certificate(
        _ca_key(directory), x509.load_pem_x509_certificate(network.ca_certificate), "south"
    )
    pem = other.public_bytes(serialization.Encoding.PEM).decode()
    _edit_member(path, 1, "certificate", f'"""\n{pem}"""')
    assert "certificate: does not name 'west'" in str(_refused(path))


def test_one_certificate_for_two_members_is_refused(net: tuple[Path, Network]) -> None:
    directory, network = net
    path = directory / "network.toml"
    # A certificate naming both, so that only the sharing is wrong.
    _, shared = issue_certificate(
        _ca_key(directory),
        x509.load_pem_x509_certificate(network.ca_certificate),
        "east",
        hosts=["west"],
    )
    pem = shared.public_bytes(serialization.Encoding.PEM).decode()
    _edit_member(path, 0, "certificate", f'"""\n{pem}"""')
    _edit_member(path, 1, "certificate", f'"""\n{pem}"""')
    error = _refused(path)
    assert 'exchange[1] "west": certificate: exchange[0] has the same certificate' in str(error)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("address", '"127.0.0.1"', "is not host:port"),
        ("address", '"127.0.0.1:0"', "not 0"),
        ("client_address", '"::1:7000"', "brackets"),
        ("operator_public_key", '"abcd"', "64 hex digits"),
        ("name", '"we st"', "space"),
        ("certificate", '"not PEM"', "not a PEM certificate"),
    ],
)
def test_a_bad_member_value_is_refused_naming_the_key(
    net: tuple[Path, Network], key: str, value: str, reason: str
) -> None:
    directory, _ = net
    path = directory / "network.toml"
    _edit_member(path, 1, key, value)
    error = _refused(path)
    assert "exchange[1] " in str(error)
    assert f": {key}: " in str(error)
    assert reason in str(error)
    assert error.key == f"exchange[1].{key}"


def test_unknown_and_missing_keys_of_the_network_file_are_refused(
    net: tuple[Path, Network],
) -> None:
    directory, _ = net
    path = directory / "network.toml"
    text = path.read_text()
    path.write_text(text.replace('address = "127.0.0.1:7403"', 'adress = "127.0.0.1:7403"'))
    error = _refused(path)
    assert 'exchange[1] "west": adress: unknown key' in str(error)
    path.write_text(text.replace('address = "127.0.0.1:7403"\n', ""))
    assert 'exchange[1] "west": address: is required' in str(_refused(path))
    path.write_text("colour = 1\n" + text)
    assert ": colour: unknown key" in str(_refused(path))
    path.write_text(text.split("[[exchange]]")[0])
    assert ": exchange: list at least one member" in str(_refused(path))
    path.write_text("name = ")
    assert "cannot read the network file" in str(_refused(path))


def test_a_ca_certificate_that_is_no_ca_is_refused(net: tuple[Path, Network]) -> None:
    directory, network = net
    path = directory / "network.toml"
    text = path.read_text()
    ca_pem = network.ca_certificate.decode()
    path.write_text(text.replace(ca_pem, network.member("east").certificate.decode(), 1))
    assert ": ca_certificate: is not a CA certificate" in str(_refused(path))


# -- the [federation] table of a node configuration ------------------------


def _node_config(directory: Path, name: str, federation: str) -> Path:
    path = directory / name / "kaifang.toml"
    text = path.read_text()
    path.write_text(text.split("[federation]")[0] + "[federation]\n" + federation)
    return path


@pytest.mark.parametrize(
    ("table", "key", "reason"),
    [
        (
            'network = "../network.toml"\nlisten = "127.0.0.1:0"\npeer = ["west"]\n',
            "federation.peer",
            "unknown [federation] keys",
        ),
        ('listen = "127.0.0.1:0"\n', "federation.network", "is required"),
        ('network = "../network.toml"\n', "federation.listen", "is required"),
        ('network = "../network.toml"\nlisten = "7401"\n', "federation.listen", "host:port"),
        (
            'network = "../network.toml"\nlisten = "127.0.0.1:7400"\n',
            "federation.listen",
            "client API",
        ),
        (
            'network = "../network.toml"\nlisten = "127.0.0.1:0"\npeers = "west"\n',
            "federation.peers",
            "list of member names",
        ),
        (
            'network = "../network.toml"\nlisten = "127.0.0.1:0"\npeers = ["west", "west"]\n',
            "federation.peers",
            "twice",
        ),
        ('network = ""\nlisten = "127.0.0.1:0"\n', "federation.network", "must name a file"),
    ],
)
def test_a_bad_federation_value_is_refused_naming_the_key(
    net: tuple[Path, Network], table: str, key: str, reason: str
) -> None:
    directory, _ = net
    path = _node_config(directory, "east", table)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert refused.value.key == key
    assert key.split(".")[1] in str(refused.value)
    assert reason in str(refused.value)
    assert str(path) in str(refused.value)


def test_federation_paths_default_beside_the_config_and_peers_are_read(
    net: tuple[Path, Network],
) -> None:
    directory, _ = net
    path = _node_config(
        directory, "east", 'network = "../network.toml"\nlisten = "[::1]:0"\npeers = ["west"]\n'
    )
    config = load_config(path)
    assert config.federation is not None
    assert config.federation.tls_key == directory / "east" / "tls.key"
    assert config.federation.tls_certificate == directory / "east" / "tls.pem"
    assert config.federation.peers == ("west",)
    assert load_federation(config) is not None


@pytest.mark.parametrize(
    ("peers", "reason"),
    [('["south"]', "'south' is not a member"), ('["east"]', "this node itself")],
)
def test_peers_naming_a_non_member_or_the_node_itself_are_refused(
    net: tuple[Path, Network], peers: str, reason: str
) -> None:
    directory, _ = net
    path = _node_config(
        directory, "east", f'network = "../network.toml"\nlisten = "127.0.0.1:0"\npeers = {peers}\n'
    )
    with pytest.raises(ConfigError) as refused:
        load_federation(load_config(path))
    assert refused.value.key == "federation.peers"
    assert reason in str(refused.value)


def test_a_node_whose_files_are_not_its_members_is_refused(net: tuple[Path, Network]) -> None:
    directory, _ = net
    path = directory / "east" / "kaifang.toml"
    text = path.read_text()
    # Another member's certificate and key.
    path.write_text(
        text.replace('tls_key = "tls.key"', 'tls_key = "../west/tls.key"').replace(
            'tls_certificate = "tls.pem"', 'tls_certificate = "../west/tls.pem"'
        )
    )
    with pytest.raises(ConfigError, match="is not the certificate") as refused:
        load_federation(load_config(path))
    assert refused.value.key == "federation.tls_certificate"
    # An origin the network does not list.
    path.write_text(text.replace('origin = "east"', 'origin = "south"'))
    with pytest.raises(ConfigError, match="'south' is not a member") as refused:
        load_federation(load_config(path))
    assert refused.value.key == "origin"
    # Another member's log key.
    path.write_text(text.replace('log_key = "log.key"', 'log_key = "../west/log.key"'))
    with pytest.raises(ConfigError, match="log_key") as refused:
        load_federation(load_config(path))
    # An operator key the network does not list.
    (directory / "east" / "operator.key").unlink()
    create_key_file(directory / "east" / "operator.key", OPERATOR_KEY_NAME)
    path.write_text(text)
    with pytest.raises(ConfigError, match="operator_key") as refused:
        load_federation(load_config(path))
    # Another register authority.
    path.write_text(
        re.sub(r'register_public_key = "\w+"', f'register_public_key = "{"ab" * 32}"', text)
    )
    with pytest.raises(ConfigError, match="register_public_key"):
        load_federation(load_config(path))


def test_a_config_without_federation_has_none(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text("[node]\n")
    config = load_config(path)
    assert config.federation is None
    assert load_federation(config) is None


# -- TLS identities --------------------------------------------------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_tls_key_readable_by_others_is_refused(net: tuple[Path, Network], mode: int) -> None:
    directory, _ = net
    key = directory / "east" / "tls.key"
    key.chmod(mode)
    with pytest.raises(ConfigError, match="chmod 600") as refused:
        _identity(directory, "east")
    assert str(key) in str(refused.value)


def test_a_key_that_is_not_the_certificates_is_refused(net: tuple[Path, Network]) -> None:
    directory, _ = net
    with pytest.raises(ConfigError, match="is not the key of the certificate"):
        TlsIdentity.load(directory / "east" / "tls.key", directory / "west" / "tls.pem")


def test_unreadable_or_malformed_tls_files_are_refused_naming_the_file(
    net: tuple[Path, Network],
) -> None:
    directory, _ = net
    missing = directory / "east" / "nothing.key"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        TlsIdentity.load(missing, directory / "east" / "tls.pem")
    with pytest.raises(ConfigError, match="does not hold a PEM certificate"):
        TlsIdentity.load(directory / "east" / "tls.key", directory / "east" / "kaifang.toml")
    with pytest.raises(ConfigError, match="does not hold an unencrypted PEM private key"):
        TlsIdentity.load(directory / "east" / "log.key", directory / "east" / "tls.pem")


def test_an_identity_never_shows_its_private_key(net: tuple[Path, Network]) -> None:
    directory, _ = net
    identity = _identity(directory, "east")
    assert b"PRIVATE" in identity.private_key
    assert "PRIVATE" not in repr(identity)


# -- mutual TLS, for real --------------------------------------------------

WHO = "/kaifang.test.Who/Am"


@dataclass
class Federation:
    """A federation endpoint of member east, on a port of its own."""

    port: int
    network: Network
    directory: Path
    seen: list[str | PeerRefusedError]


class _WhoHandler(grpc.GenericRpcHandler):
    """Answers WHO with the calling member's name; records every answer or refusal."""

    def __init__(self, network: Network, seen: list[str | PeerRefusedError]) -> None:
        self.network = network
        self.seen = seen

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method != WHO:
            return None

        async def who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            try:
                member = peer_of(context.auth_context(), self.network)
            except PeerRefusedError as e:
                self.seen.append(e)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(e))
            self.seen.append(member.name)
            return member.name.encode()

        return grpc.unary_unary_rpc_method_handler(who)


@pytest.fixture
async def federation(net: tuple[Path, Network]) -> AsyncIterator[Federation]:
    directory, network = net
    seen: list[str | PeerRefusedError] = []
    server = grpc.aio.server()
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_generic_rpc_handlers([_WhoHandler(network, seen)])
    credentials = server_credentials(network, _identity(directory, "east"))
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield Federation(port, network, directory, seen)
    finally:
        await server.stop(None)


async def _who(
    federation: Federation, credentials: grpc.ChannelCredentials
) -> tuple[bytes, health_pb2.HealthCheckResponse]:
    east = federation.network.member("east")
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{federation.port}", credentials, options=channel_options(east)
    ) as channel:
        call = channel.unary_unary(WHO, request_serializer=None, response_deserializer=None)
        answer: bytes = await call(b"", timeout=10)
        status = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        return answer, status


async def test_a_member_calling_over_mutual_tls_is_known_by_its_certificate(
    federation: Federation,
) -> None:
    west = _identity(federation.directory, "west")
    answer, status = await _who(federation, channel_credentials(federation.network, west))
    assert answer == b"west"
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert federation.seen == ["west"]


async def test_a_certificate_of_the_ca_that_the_network_does_not_list_is_refused(
    federation: Federation, tmp_path: Path
) -> None:
    network = federation.network
    ca = x509.load_pem_x509_certificate(network.ca_certificate)
    key, certificate = issue_certificate(_ca_key(federation.directory), ca, "mallory")
    mallory = _write_identity(tmp_path / "mallory", key, certificate)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _who(federation, channel_credentials(network, mallory))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not in the network file" in (refused.value.details() or "")
    [error] = federation.seen
    assert isinstance(error, PeerRefusedError)
    assert "CN=mallory" in str(error)


async def test_a_certificate_of_another_ca_fails_the_handshake(
    federation: Federation, tmp_path: Path
) -> None:
    other_key, other_ca = create_ca("impostor CA")
    key, certificate = issue_certificate(other_key, other_ca, "west")
    impostor = _write_identity(tmp_path / "impostor", key, certificate)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _who(federation, channel_credentials(federation.network, impostor))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert federation.seen == []


async def test_a_caller_without_a_client_certificate_fails_the_handshake(
    federation: Federation,
) -> None:
    anonymous = grpc.ssl_channel_credentials(root_certificates=federation.network.ca_certificate)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _who(federation, anonymous)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert federation.seen == []


@pytest.mark.parametrize(
    ("context", "reason"),
    [({}, "no client certificate"), ({"x509_pem_cert": [b"junk"]}, "not in the network file")],
)
def test_peer_of_refuses_a_call_without_a_member_certificate(
    net: tuple[Path, Network], context: dict[str, Iterable[bytes]], reason: str
) -> None:
    _, network = net
    with pytest.raises(PeerRefusedError, match=reason):
        peer_of(context, network)


def test_channel_options_name_the_member_and_the_message_limit(
    net: tuple[Path, Network],
) -> None:
    _, network = net
    options = dict(channel_options(network.member("west")))
    assert options["grpc.ssl_target_name_override"] == "west"
    assert options["grpc.max_receive_message_length"] == MAX_MESSAGE_BYTES
    assert options["grpc.max_send_message_length"] == MAX_MESSAGE_BYTES


def test_os_umask_does_not_loosen_the_key_files(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        init_network(tmp_path / "net", ["solo"])
    finally:
        os.umask(old)
    for relative in ("ca/ca.key", "register.key", "solo/tls.key", "solo/log.key"):
        assert stat.S_IMODE((tmp_path / "net" / relative).stat().st_mode) == 0o600


def test_federation_dial_overrides_a_members_address(tmp_path: Path) -> None:
    config = tmp_path / "kaifang.toml"
    config.write_text(
        '[node]\norigin = "east"\n[federation]\nnetwork = "network.toml"\n'
        'listen = "127.0.0.1:7401"\ndial = { west = "127.0.0.1:9001" }\n'
    )
    federation = load_config(config).federation
    assert federation is not None
    assert dict(federation.dial) == {"west": "127.0.0.1:9001"}
    for bad in (
        'dial = "west"',
        'dial = { west = "nowhere" }',
        'dial = { "no name" = "1.2.3.4:5" }',
    ):
        config.write_text(
            '[node]\norigin = "east"\n[federation]\nnetwork = "network.toml"\n'
            f'listen = "127.0.0.1:7401"\n{bad}\n'
        )
        with pytest.raises(ConfigError, match="dial"):
            load_config(config)
