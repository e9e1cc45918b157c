"""The ledger: a signed, append-only transparency log (RFC 6962, C2SP).

The log does not know what it logs: it stores entries as opaque bytes. The
pure core (``merkle``, ``note``, ``checkpoint``, ``cosignature``, ``receipt``,
``tiles``) takes and returns values; ``store`` adds the database and
``service`` the gRPC read API.
"""
