"""A node's resource limits: what one caller may ask of it at once, and the gRPC server options.

A node serves clients it does not know and peers it does not trust, so
each thing that costs it memory or work while it lasts has a cap, and a
caller over a cap is refused RESOURCE_EXHAUSTED (a ``QuotaFailure`` naming
what and whose, a ``RetryInfo``) rather than slowing everyone else down:

- **message size** (:data:`MAX_MESSAGE_BYTES`): gRPC refuses a larger
  request before any of the node's code runs;
- **batch sizes**: statements per ``SubmitStatements``
  (:data:`MAX_SUBMIT_BATCH`), entries per streamed federation batch
  (:data:`MAX_STREAM_BATCH`); a larger ask is a client mistake
  (INVALID_ARGUMENT naming the field), as the API documents the caps;
- **open streams per caller**: ``WatchOffers`` per client address
  (:data:`MAX_WATCHES_PER_CLIENT`, and :data:`MAX_WATCHES` in all),
  ``StreamEntries`` per calling member (:func:`max_streams_per_member`),
  counted by :class:`~ledger.rpc.StreamLimiter`; the ledger's own
  ``GetEntries`` cap is the ledger's (:data:`ledger.service.MAX_ENTRY_STREAMS_PER_CLIENT`),
  as the ledger does not import the exchange;
- **the gRPC server** (:data:`SERVER_OPTIONS`): message sizes, streams per
  connection, and keepalive both ways, so that a dead client's streams are
  noticed and given back.

A stream stalled by its reader (a client that never reads) costs the node
its slot and at most a message in flight: gRPC's flow control holds the
rest back, the handler waits in its write without holding a database
connection, and every other call goes on (``tests/hostile/test_limits.py``).
"""

from __future__ import annotations

from ledger.rpc import StreamLimiter, TooManyStreamsError

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_STREAM_BATCH",
    "MAX_SUBMIT_BATCH",
    "MAX_WATCHES",
    "MAX_WATCHES_PER_CLIENT",
    "SERVER_OPTIONS",
    "StreamLimiter",
    "TooManyStreamsError",
    "max_streams_per_member",
]

# Largest request or response message, either way. A full SubmitStatements
# batch of typical statements (a few hundred bytes to a few KiB, signatures
# included) fits, as does a streamed federation batch (kept under 2 MiB by
# exchange.federation); a statement itself is at most 64 KiB. Peers and
# clients use the same value (exchange.network, clients.client), so that what
# one side may send the other may receive.
MAX_MESSAGE_BYTES = 4 << 20

# Statements per SubmitStatements call: a register feed or bulk import sends
# its statements in batches this size; one batch is admitted in a few
# transactions of exchange.node's MAX_BATCH, so it holds the write lock for
# well under a second. Must equal exchange.node.MAX_SUBMIT_BATCH (tested).
MAX_SUBMIT_BATCH = 1000

# Entries per streamed federation batch a peer may ask for: a catching-up
# node applies a batch per transaction, and more than this gains nothing
# while the batch's bytes are capped at 2 MiB anyway.
MAX_STREAM_BATCH = 10_000

# Open WatchOffers streams per client address. A watch wakes on every commit
# and reads the new offers that match it, so each one open costs a query per
# commit: a subscriber needs one (a watch takes up to 50 IPC prefixes and 50
# keywords), a platform's backend watching for its users a handful. Clients
# behind one NAT share the cap.
MAX_WATCHES_PER_CLIENT = 16
# And over all clients: bounds the queries a single commit can set off.
MAX_WATCHES = 1024

# Open StreamEntries per calling member, per member of the network: a member
# follows each origin from at most one peer at a time (exchange.federation),
# so it needs one stream per other member; twice that, plus a few, leaves
# room for a reconnect whose old stream this node has not yet seen end, and
# for a restore's catch-up streams.
STREAMS_PER_MEMBER_PER_ORIGIN = 2
STREAMS_PER_MEMBER_SPARE = 4


def max_streams_per_member(members: int) -> int:
    """The StreamEntries a member may hold open at once, in a network of ``members``."""
    return STREAMS_PER_MEMBER_PER_ORIGIN * members + STREAMS_PER_MEMBER_SPARE


# Options of the node's gRPC server (exchange.server).
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Concurrent calls per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    # A client over it has its further calls queued by its own gRPC until one
    # ends, not refused; without it one connection could open any number of
    # calls, each holding memory here. Well above what a client needs: the
    # admission benchmark runs 16 concurrent clients, a peer a stream per
    # origin.
    ("grpc.max_concurrent_streams", 1000),
    # Peers ping every 10 s to detect a dead link (exchange.network): allow
    # pings that often, with or without calls in flight. More frequent pings
    # are refused (gRPC's ping strikes end such a connection).
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # The node pings its callers too, when a connection has been quiet this
    # long, and drops it if the ping goes unanswered: a client that vanished
    # (a crash, a cut link) would otherwise hold its watch and its stream
    # slot until the operating system gave up on the TCP connection, hours
    # later.
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
]
