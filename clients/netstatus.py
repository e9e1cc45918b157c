"""``kaifang network status``: one view of a whole network, asked of every member at once.

From one member's configuration, every member of the network file is asked
for its heads (``GetHeads``) and its fork evidence (``ListForkEvidence``),
concurrently, over mutual TLS with that member's identity. The answers are
then compared by :func:`build_report`, which does no I/O:

* per node: whether it answered (else the gRPC status code it failed
  with), its network digest, the origins it has halted on fork evidence, and
  how many pieces of fork evidence it holds;
* per origin: the entries each node holds of it (its head's tree size, and
  the entries held when a catch-up runs ahead of the signed size), the most
  any node holds (``max_size``) and each node's lag behind that, in entries;
  and the witnesses that cosigned the origin's head as the origin itself
  serves it;
* ``converged``: every member answered and all report one network digest
  (DESIGN.md §5: equal digests are identical (origin, size, root) for every
  origin).

Exit status of the command (:attr:`NetworkStatus.exit_code`)::

    0  converged: every member answered, with one digest
    3  every member answered, but the digests differ
    4  some member did not answer (whatever the others say)
    1  the configuration could not be used (the reason on stderr)

``--json`` prints one object with these keys, always all of them::

    {
      "network": "kaifang",                 # the network file's name
      "asked_as": "east",                   # the member whose identity asked
      "converged": false,
      "digest": "3f1c…" | null,             # hex; the digest every node that
                                            # answered reports, null if they differ
                                            # or none answered
      "exit_code": 4,
      "nodes": [                            # in network-file order
        {"name": "east", "address": "127.0.0.1:7401", "reachable": true,
         "error": null,                     # or {"code": "UNAVAILABLE", "message": "…"}
         "digest": "3f1c…" | null,          # hex
         "halted": ["west"],                # origins it stopped applying
         "fork_evidence": 0 | null}         # null: it did not list its evidence
      ],
      "origins": [                          # every member's log, then any other, by name
        {"origin": "east",
         "max_size": 12,                    # most entries any node holds
         "witnesses": ["north", "west"] | null,   # null: unknown (see witnesses_unknown)
         "witnesses_unknown": null | "east did not answer",
         "nodes": {                         # every member, in network-file order
           "east": {"tree_size": 12, "entries_held": 12, "lag": 0},
           "west": {"tree_size": null, "entries_held": 0, "lag": 12},  # no checkpoint yet
           "north": null                    # did not answer
         }}
      ]
    }
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from exchange.config import ConfigError, NodeConfig
from exchange.network import (
    Member,
    Network,
    TlsIdentity,
    channel_credentials,
    channel_options,
    load_federation,
)
from kaifang.federation.v1 import federation_pb2 as fed
from kaifang.federation.v1 import federation_pb2_grpc as fed_grpc
from ledger.errors import NoteFormatError
from ledger.note import parse_note

# Deadline of each call to a member: one that takes longer counts as not
# answering (DEADLINE_EXCEEDED), so a frozen node cannot hang the command.
CALL_TIMEOUT_S = 5.0
# Hex digits of a digest shown in the nodes table: enough to tell digests apart.
DIGEST_PREFIX = 16

EXIT_CONVERGED = 0
EXIT_DIVERGED = 3
EXIT_UNREACHABLE = 4


@dataclass(frozen=True)
class Unreachable:
    """Why a member gave no heads: the gRPC status code's name and its message."""

    code: str
    message: str

    @classmethod
    def of(cls, error: grpc.aio.AioRpcError) -> Unreachable:
        """The failure of a call."""
        return cls(error.code().name, error.details() or "")


@dataclass(frozen=True)
class Holding:
    """How much of one origin's log one node holds."""

    tree_size: int | None  # its latest checkpoint's size; None: it has none yet
    entries_held: int
    lag: int  # entries behind the most any node holds

    @property
    def size(self) -> int:
        """The entries it holds, signed or not yet."""
        return max(self.tree_size or 0, self.entries_held)


@dataclass(frozen=True)
class OriginStatus:
    """One origin's log across the network."""

    origin: str
    max_size: int
    # Member name -> its holding, in network-file order; None: it did not answer.
    holdings: dict[str, Holding | None]
    # Names on the cosignature lines of the origin's own head; None: unknown.
    witnesses: tuple[str, ...] | None
    witnesses_unknown: str | None  # why witnesses is None


@dataclass(frozen=True)
class NodeStatus:
    """What one member said about itself, or why it said nothing."""

    name: str
    address: str
    error: Unreachable | None
    digest: bytes | None
    halted: tuple[str, ...]
    fork_evidence: int | None  # None: unknown

    @property
    def reachable(self) -> bool:
        """Whether it answered GetHeads."""
        return self.error is None


@dataclass(frozen=True)
class NetworkStatus:
    """The network as its members described it at one moment."""

    network: str
    asked_as: str
    nodes: tuple[NodeStatus, ...]
    origins: tuple[OriginStatus, ...]

    @property
    def unreachable(self) -> tuple[NodeStatus, ...]:
        """The members that did not answer."""
        return tuple(n for n in self.nodes if not n.reachable)

    @property
    def digest(self) -> bytes | None:
        """The digest every answering node reports; None if they differ or none answered."""
        digests = {n.digest for n in self.nodes if n.reachable}
        return digests.pop() if len(digests) == 1 else None

    @property
    def converged(self) -> bool:
        """Every member answered, and all with one digest."""
        return not self.unreachable and self.digest is not None

    @property
    def exit_code(self) -> int:
        """The command's exit status for this state (see the module docstring)."""
        if self.unreachable:
            return EXIT_UNREACHABLE
        return EXIT_CONVERGED if self.converged else EXIT_DIVERGED

    def to_json(self) -> dict[str, Any]:
        """The report as the JSON object the module docstring describes."""
        digest = self.digest
        return {
            "network": self.network,
            "asked_as": self.asked_as,
            "converged": self.converged,
            "digest": digest.hex() if digest is not None else None,
            "exit_code": self.exit_code,
            "nodes": [
                {
                    "name": n.name,
                    "address": n.address,
                    "reachable": n.reachable,
                    "error": (
                        {"code": n.error.code, "message": n.error.message} if n.error else None
                    ),
                    "digest": n.digest.hex() if n.digest is not None else None,
                    "halted": list(n.halted),
                    "fork_evidence": n.fork_evidence,
                }
                for n in self.nodes
            ],
            "origins": [
                {
                    "origin": o.origin,
                    "max_size": o.max_size,
                    "witnesses": list(o.witnesses) if o.witnesses is not None else None,
                    "witnesses_unknown": o.witnesses_unknown,
                    "nodes": {
                        name: (
                            {"tree_size": h.tree_size, "entries_held": h.entries_held, "lag": h.lag}
                            if h is not None
                            else None
                        )
                        for name, h in o.holdings.items()
                    },
                }
                for o in self.origins
            ],
        }


# -- the pure core -----------------------------------------------------------


def cosigners(note: str) -> tuple[str, ...]:
    """The key names on a checkpoint note's cosignature lines.

    The first signature line is the origin's own; every line after it is a
    witness's cosignature (that is how a node serves its own head). Nothing
    is verified. Raises :class:`~ledger.errors.NoteFormatError` if ``note``
    is not a signed note.
    """
    signatures = parse_note(note).signatures
    # A log signing with two keys during a rotation signs twice under its own name.
    return tuple(s.name for s in signatures[1:] if s.name != signatures[0].name)


def build_report(
    members: Sequence[Member],
    heads: Mapping[str, fed.GetHeadsResponse | Unreachable],
    evidence: Mapping[str, int] | None = None,
    *,
    network: str = "",
    asked_as: str = "",
) -> NetworkStatus:
    """Compare what each member answered; return the network's status.

    ``heads`` has, for every member's name, its GetHeads answer or why it gave
    none; ``evidence`` the number of fork evidence each listed (a member
    missing there counts as unknown). Raises ``ValueError`` if a member has no
    entry in ``heads``.
    """
    missing = [m.name for m in members if m.name not in heads]
    if missing:
        raise ValueError(f"no answer and no error for {', '.join(missing)}")
    evidence = evidence or {}
    # Member name -> origin -> head, for the members that answered.
    held: dict[str, dict[str, fed.Head]] = {}
    nodes = []
    for member in members:
        answer = heads[member.name]
        if isinstance(answer, Unreachable):
            nodes.append(NodeStatus(member.name, member.address, answer, None, (), None))
            continue
        by_origin = {h.origin: h for h in answer.heads}
        held[member.name] = by_origin
        nodes.append(
            NodeStatus(
                name=member.name,
                address=member.address,
                error=None,
                digest=answer.network_digest,
                halted=tuple(sorted(o for o, h in by_origin.items() if h.halted)),
                fork_evidence=evidence.get(member.name),
            )
        )

    names = [m.name for m in members]
    # Every member's log, even one no node holds yet (a member that never
    # started), and any origin a node holds that the network file no longer lists.
    seen = {origin for by_origin in held.values() for origin in by_origin}
    origins = names + sorted(seen - set(names))
    report = []
    for origin in origins:
        sizes = {
            name: (h.tree_size, h.entries_held) if (h := by_origin.get(origin)) else (None, 0)
            for name, by_origin in held.items()
        }
        max_size = max((max(t or 0, e) for t, e in sizes.values()), default=0)
        holdings: dict[str, Holding | None] = {}
        for name in names:
            if name not in sizes:
                holdings[name] = None
                continue
            tree_size, entries = sizes[name]
            holdings[name] = Holding(tree_size, entries, max_size - max(tree_size or 0, entries))
        witnesses, unknown = _witnesses(origin, held)
        report.append(OriginStatus(origin, max_size, holdings, witnesses, unknown))
    return NetworkStatus(network, asked_as, tuple(nodes), tuple(report))


def _witnesses(
    origin: str, held: Mapping[str, Mapping[str, fed.Head]]
) -> tuple[tuple[str, ...] | None, str | None]:
    # Only the origin serves the cosignatures it collected: other nodes hold
    # its checkpoint as the origin signed it, without them.
    if origin not in held:
        return None, f"{origin} did not answer"
    head = held[origin].get(origin)
    if head is None:
        return None, f"{origin} served no checkpoint of its own log"
    try:
        return cosigners(head.checkpoint), None
    except NoteFormatError as e:
        return None, f"{origin} served an unreadable checkpoint: {e}"


# -- asking the members ------------------------------------------------------


async def _ask(
    member: Member, credentials: grpc.ChannelCredentials
) -> tuple[fed.GetHeadsResponse | Unreachable, int | None]:
    async with grpc.aio.secure_channel(
        member.address, credentials, options=channel_options(member)
    ) as channel:
        stub = fed_grpc.FederationServiceStub(channel)
        heads, evidence = await asyncio.gather(
            stub.GetHeads(fed.GetHeadsRequest(), timeout=CALL_TIMEOUT_S),
            stub.ListForkEvidence(fed.ListForkEvidenceRequest(), timeout=CALL_TIMEOUT_S),
            return_exceptions=True,
        )
    # A failed call is the member's state to report; anything else is a bug.
    for outcome in (heads, evidence):
        if isinstance(outcome, BaseException) and not isinstance(outcome, grpc.aio.AioRpcError):
            raise outcome
    if isinstance(heads, grpc.aio.AioRpcError):
        return Unreachable.of(heads), None
    assert isinstance(heads, fed.GetHeadsResponse)
    count = len(evidence.evidence) if isinstance(evidence, fed.ListForkEvidenceResponse) else None
    return heads, count


async def collect(network: Network, identity: TlsIdentity, *, asked_as: str) -> NetworkStatus:
    """Ask every member of ``network`` at once, as ``identity``; return the status."""
    credentials = channel_credentials(network, identity)
    answers = await asyncio.gather(*(_ask(m, credentials) for m in network.members))
    heads = {m.name: a[0] for m, a in zip(network.members, answers, strict=True)}
    evidence = {
        m.name: a[1] for m, a in zip(network.members, answers, strict=True) if a[1] is not None
    }
    return build_report(network.members, heads, evidence, network=network.name, asked_as=asked_as)


def load(config: NodeConfig) -> tuple[Network, TlsIdentity]:
    """The network and TLS identity of a member's configuration.

    Raises :class:`~exchange.config.ConfigError` if the configuration has no
    ``[federation]`` table or does not fit its network file.
    """
    loaded = load_federation(config)
    if loaded is None:
        raise ConfigError(
            "the configuration has no [federation] table; give --config the kaifang.toml "
            "of a network member (as `kaifang network init` writes it)"
        )
    return loaded


# -- output ------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _cell(holding: Holding | None) -> str:
    if holding is None:
        return "?"  # the node did not answer
    text = "-" if holding.tree_size is None else str(holding.tree_size)
    if holding.entries_held > (holding.tree_size or 0):
        text += f" (held {holding.entries_held})"
    if holding.lag:
        text += f" lag {holding.lag}"
    return text


def render_text(status: NetworkStatus) -> str:
    """The report as aligned plain-text tables, ending with the ``converged:`` line."""
    out = [f"network {status.network!r}, asked as {status.asked_as}", ""]
    rows = [["node", "reachable", "digest", "halted", "fork evidence"]]
    for n in status.nodes:
        rows.append(
            [
                n.name,
                "yes" if n.error is None else f"NO ({n.error.code})",
                n.digest.hex()[:DIGEST_PREFIX] if n.digest is not None else "-",
                ", ".join(n.halted) or "-",
                "?" if n.fork_evidence is None else str(n.fork_evidence),
            ]
        )
    out += _table(rows)
    for n in status.unreachable:
        assert n.error is not None
        out.append(f"  {n.name} at {n.address}: {n.error.code}: {n.error.message}")

    out.append("")
    names = [n.name for n in status.nodes]
    rows = [["origin", "max", *names]]
    for o in status.origins:
        rows.append([o.origin, str(o.max_size), *(_cell(o.holdings[name]) for name in names)])
    out += _table(rows)
    out.append(
        "  (each node's latest checkpoint size; held N: entries held beyond it; "
        "lag N: entries behind max; -: no checkpoint; ?: did not answer)"
    )

    out.append("")
    for o in status.origins:
        if o.witnesses is None:
            out.append(f"witnesses of {o.origin}: unknown ({o.witnesses_unknown})")
        else:
            listed = f" ({', '.join(o.witnesses)})" if o.witnesses else ""
            out.append(f"witnesses of {o.origin}: {len(o.witnesses)}{listed}")

    out.append("")
    digest = status.digest
    if status.converged:
        assert digest is not None
        out.append(f"converged: yes (digest {digest.hex()})")
    elif status.unreachable:
        silent = ", ".join(n.name for n in status.unreachable)
        out.append(f"converged: NO (no answer from {silent})")
    else:
        out.append("converged: NO (the digests differ)")
    return "\n".join(out) + "\n"
