"""C2SP tlog-tiles (https://c2sp.org/tlog-tiles): the log as a directory of static files.

A tile client needs no API: it fetches ``checkpoint``, then the tiles that
its proofs need, and computes every proof itself. :func:`export_tiles` writes
that directory from a :class:`~ledger.store.LogStore`::

    checkpoint                   the signed checkpoint note (the only mutable file)
    tile/<L>/<N>[.p/<W>]         hash tiles
    tile/entries/<N>[.p/<W>]     entry bundles

Tiles have height 8: the level-``L`` tile ``N`` holds the hashes of the tree
nodes of height ``8L`` with indices ``256N`` to ``256N + 255``, in
:mod:`ledger.merkle` terms the nodes ``(8 * L, 256 * N + i)``. A full tile
holds 256 hashes (8,192 bytes). The right-most tile of level ``L`` in a tree
of ``size`` leaves is partial, with ``W = floor(size / 256**L) mod 256``
hashes, and does not exist when ``W`` is 0. The entry bundle ``N`` holds the
entries whose leaf hashes the level-0 tile ``N`` holds, each prefixed with its
length as a big-endian uint16.

``N`` is written as 3-digit path elements, all but the last prefixed with
``x`` (1234067 is ``x001/x234/067``), so that a file never has the name of a
directory and no directory has more than a few thousand children. ``L`` and
``W`` are decimals without leading zeros. Paths follow the spec and the Go
reference (golang.org/x/mod/sumdb/tlog ``Tile.Path``, minus its height
element, as in filippo.io/torchwood ``TilePath``).

Path, tile-set and bundle functions are pure; :func:`export_tiles` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ledger.checkpoint import MAX_TREE_SIZE, open_checkpoint
from ledger.errors import LedgerError, TileError
from ledger.merkle import HASH_SIZE, NodeId, verify_consistency
from ledger.store import LogStore, SignedCheckpoint

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes in a full tile, and entries in a full bundle."""

MAX_LEVEL = 63
"""Highest tile level the spec allows in a path."""

MAX_TILE_INDEX = MAX_TREE_SIZE >> TILE_HEIGHT
"""Largest tile index that can exist: tile ``N`` of any level starts at or beyond
leaf ``256 * N``, which must lie in a tree of at most ``MAX_TREE_SIZE`` leaves.
Bounding it keeps a hostile path from building an arbitrarily large integer."""

MAX_BUNDLE_ENTRY = 0xFFFF
"""Largest entry an entry bundle can hold: its length prefix is a uint16."""

CHECKPOINT_NAME = "checkpoint"

_PATH_BASE = 1000
# Digits are spelled [0-9] because \d and int() also accept non-ASCII digits.
# The pattern only checks the shape; the round trip in parse_tile_path checks
# that the path is the one canonical spelling (no "x000/" lead, no "007" level).
_TILE_PATH = re.compile(
    r"tile/(?:(?P<entries>entries)|(?P<level>[0-9]{1,2}))/"
    r"(?P<index>(?:x[0-9]{3}/)*[0-9]{3})"
    r"(?:\.p/(?P<width>[0-9]{1,3}))?"
)


@dataclass(frozen=True, order=True, slots=True)
class Tile:
    """A hash tile: its level, its index within the level, and its width (256 when full)."""

    level: int
    index: int
    width: int

    @property
    def path(self) -> str:
        """The tile's path relative to the log prefix."""
        return tile_path(self.level, self.index, self.width)

    @property
    def full(self) -> bool:
        """Whether the tile holds all 256 hashes (and so never changes)."""
        return self.width == TILE_WIDTH

    def nodes(self) -> list[NodeId]:
        """Return the tree nodes whose hashes the tile holds, left to right."""
        height = TILE_HEIGHT * self.level
        first = self.index * TILE_WIDTH
        return [(height, first + i) for i in range(self.width)]


@dataclass(frozen=True, order=True, slots=True)
class Bundle:
    """An entry bundle: its index and its width (256 when full)."""

    index: int
    width: int

    @property
    def path(self) -> str:
        """The bundle's path relative to the log prefix."""
        return entries_path(self.index, self.width)

    @property
    def full(self) -> bool:
        """Whether the bundle holds all 256 entries (and so never changes)."""
        return self.width == TILE_WIDTH

    @property
    def start(self) -> int:
        """The index of the bundle's first entry."""
        return self.index * TILE_WIDTH

    @property
    def end(self) -> int:
        """One past the index of the bundle's last entry."""
        return self.start + self.width


# -- paths ------------------------------------------------------------------


def _check_coordinates(index: int, width: int) -> None:
    if not 0 <= index <= MAX_TILE_INDEX:
        raise ValueError(f"tile index {index} is out of range")
    if not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"tile width {width} is not between 1 and {TILE_WIDTH}")


def _index_and_width(index: int, width: int) -> str:
    """Return ``<N>[.p/<W>]``: ``N`` in 3-digit elements, ``x`` on all but the last."""
    groups: list[str] = []
    n = index
    while True:
        n, digits = divmod(n, _PATH_BASE)
        groups.append(f"{digits:03d}")
        if n == 0:
            break
    encoded = "/".join(f"x{g}" for g in reversed(groups[1:]))
    encoded = f"{encoded}/{groups[0]}" if encoded else groups[0]
    return encoded if width == TILE_WIDTH else f"{encoded}.p/{width}"


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """Return the path of a hash tile: ``tile/<L>/<N>``, or ``tile/<L>/<N>.p/<W>`` when partial.

    Raises ``ValueError`` for a level outside 0..63, a negative or impossibly
    large index, or a width outside 1..256.
    """
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"tile level {level} is not between 0 and {MAX_LEVEL}")
    _check_coordinates(index, width)
    return f"tile/{level}/{_index_and_width(index, width)}"


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """Return the path of an entry bundle: ``tile/entries/<N>[.p/<W>]``.

    Raises ``ValueError`` as :func:`tile_path` does.
    """
    _check_coordinates(index, width)
    return f"tile/entries/{_index_and_width(index, width)}"


def parse_tile_path(path: str) -> Tile | Bundle:
    """Parse a hash tile or entry bundle path, relative to the log prefix.

    Only the canonical spelling is accepted, the one :func:`tile_path` or
    :func:`entries_path` returns: as in Go's ``tlog.ParseTilePath``, one tile
    has exactly one path. Raises :class:`TileError` otherwise.
    """
    match = _TILE_PATH.fullmatch(path)
    if match is None:
        raise TileError(f"malformed tile path {path[:200]!r}")
    groups = match["index"].split("/")
    if len(groups) > len(str(MAX_TILE_INDEX)) // 3 + 1:
        raise TileError(f"tile index of {path[:200]!r} is out of range")
    index = 0
    for group in groups:
        index = index * _PATH_BASE + int(group.removeprefix("x"))
    width = TILE_WIDTH if match["width"] is None else int(match["width"])
    tile: Tile | Bundle
    try:
        if match["entries"] is not None:
            tile = Bundle(index, width)
        else:
            tile = Tile(int(match["level"]), index, width)
        canonical = tile.path
    except ValueError as e:
        raise TileError(f"malformed tile path {path[:200]!r}: {e}") from e
    # A full tile never carries ".p/256"; a level or width never has a leading zero.
    if match["width"] is not None and width == TILE_WIDTH:
        raise TileError(f"full tile path {path[:200]!r} carries a width")
    if canonical != path:
        raise TileError(f"tile path {path[:200]!r} is not canonical (expected {canonical!r})")
    return tile


# -- which tiles a tree has -------------------------------------------------


def _iter_tiles(size: int) -> Iterator[Tile]:
    level = 0
    # Level L holds one hash per complete subtree of height 8L; stop at the
    # first level with none, whose tiles would be empty (the spec forbids them).
    while (count := size >> (TILE_HEIGHT * level)) > 0:
        full, rest = divmod(count, TILE_WIDTH)
        for index in range(full):
            yield Tile(level, index, TILE_WIDTH)
        if rest:
            yield Tile(level, full, rest)
        level += 1


def _iter_bundles(size: int) -> Iterator[Bundle]:
    full, rest = divmod(size, TILE_WIDTH)
    for index in range(full):
        yield Bundle(index, TILE_WIDTH)
    if rest:
        yield Bundle(full, rest)


def _check_size(size: int) -> None:
    if not 0 <= size <= MAX_TREE_SIZE:
        raise ValueError(f"tree size {size} is out of range")


def tiles_for_size(size: int) -> list[Tile]:
    """Return the hash tiles of a tree of ``size`` leaves, level 0 first, left to right.

    Every level with at least one node of its height has its full tiles and,
    unless the count is a multiple of 256, one partial tile on the right.
    """
    _check_size(size)
    return list(_iter_tiles(size))


def bundles_for_size(size: int) -> list[Bundle]:
    """Return the entry bundles of a tree of ``size`` leaves, left to right."""
    _check_size(size)
    return list(_iter_bundles(size))


# -- tile contents ----------------------------------------------------------


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    """Return an entry bundle: each entry prefixed with its length as a big-endian uint16.

    Raises ``ValueError`` for an entry longer than :data:`MAX_BUNDLE_ENTRY`.
    """
    parts: list[bytes] = []
    for i, entry in enumerate(entries):
        if len(entry) > MAX_BUNDLE_ENTRY:
            raise ValueError(f"entry {i} is {len(entry)} bytes; a bundle holds at most 65535")
        parts.append(len(entry).to_bytes(2, "big"))
        parts.append(entry)
    return b"".join(parts)


def decode_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """Split an entry bundle into its entries.

    Raises :class:`TileError` if the last length prefix or entry is cut short,
    or, when ``width`` is given, if the bundle does not hold exactly that many.
    """
    entries: list[bytes] = []
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        if len(view) - pos < 2:
            raise TileError(f"entry bundle ends with {len(view) - pos} byte(s) of a length prefix")
        length = int.from_bytes(view[pos : pos + 2], "big")
        pos += 2
        if len(view) - pos < length:
            raise TileError(
                f"entry {len(entries)} of the bundle is cut short: "
                f"{len(view) - pos} of {length} bytes"
            )
        entries.append(bytes(view[pos : pos + length]))
        pos += length
    if width is not None and len(entries) != width:
        raise TileError(f"entry bundle holds {len(entries)} entries, not {width}")
    return entries


def decode_tile(data: bytes, width: int | None = None) -> list[bytes]:
    """Split a hash tile into its hashes.

    Raises :class:`TileError` if the length is not 1 to 256 hashes, or, when
    ``width`` is given, not exactly ``width`` hashes.
    """
    count, rest = divmod(len(data), HASH_SIZE)
    if rest or not 1 <= count <= TILE_WIDTH:
        raise TileError(f"a hash tile of {len(data)} bytes is not 1 to 256 hashes")
    if width is not None and count != width:
        raise TileError(f"hash tile holds {count} hashes, not {width}")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


# -- export -----------------------------------------------------------------


@dataclass(frozen=True)
class ExportStats:
    """What one :func:`export_tiles` run did."""

    size: int
    """The tree size of the exported checkpoint."""
    tiles_written: int
    tiles_skipped: int
    """Hash tiles already on disk, left as they were."""
    bundles_written: int
    bundles_skipped: int
    checkpoint_written: bool
    """False when the directory already held this very checkpoint."""


def _write_atomic(path: Path, data: bytes) -> None:
    """Make ``path`` hold ``data``, so that no reader ever sees a partly written file.

    Writes a uniquely named temporary file in the same directory, fsyncs it
    and renames it over ``path``. The directory entry itself becomes durable
    only when the directory is fsynced (:func:`_fsync_dir`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique so that two exporters never write the same temporary file; a dot
    # name so that a crash's leftover is no tile path.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # os.open with mode 0o666 lets the umask decide, as a plain open() does;
    # mkstemp's 0600 would hide the files from a web server serving them.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _existing_size(path: Path) -> int | None:
    """Return the size of the file at ``path``, or None if there is none."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _read_if_exists(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _ancestors(path: Path, root: Path) -> Iterator[Path]:
    """Yield the directories from ``path``'s parent up to ``root``, both included."""
    parent = path.parent
    while True:
        yield parent
        if parent == root:
            return
        parent = parent.parent


async def _check_previous_export(store: LogStore, previous: bytes, signed: SignedCheckpoint) -> int:
    """Check that ``previous``, the directory's checkpoint, is an earlier state of this log.

    Full tiles on disk are skipped, not rewritten, which is sound only if
    they belong to a tree that the exported one extends. Returns the previous
    size; raises :class:`TileError` otherwise.
    """
    try:
        old = open_checkpoint(previous, store.verifiers(), origin=store.origin)
    except LedgerError as e:
        raise TileError(
            f"the directory holds a checkpoint that is not of log {store.origin}: {e}"
        ) from e
    if old.size > signed.size:
        # Publishing a smaller tree would roll back what clients have seen.
        raise TileError(
            f"the directory already publishes size {old.size}; refusing to go back to {signed.size}"
        )
    try:
        proof, _ = await store.consistency_proof(old.size, signed.size)
        verify_consistency(old.size, signed.size, proof, old.root_hash, signed.root_hash)
    except LedgerError as e:
        raise TileError(
            f"the directory's checkpoint at size {old.size} is not consistent with the log: {e}"
        ) from e
    return old.size


def _in_tree(level: int, index: int, width: int, size: int) -> bool:
    """Whether a tree of ``size`` leaves has the level-``level`` tile ``index`` of ``width``."""
    count = size >> (TILE_HEIGHT * level)
    if width == TILE_WIDTH:
        return (index + 1) * TILE_WIDTH <= count
    return count == index * TILE_WIDTH + width


async def _tile_data(store: LogStore, tile: Tile) -> bytes:
    nodes = tile.nodes()
    hashes = await store.node_hashes(nodes)
    return b"".join(hashes[n] for n in nodes)


async def _bundle_data(store: LogStore, bundle: Bundle) -> bytes:
    entries: list[bytes] = []
    async for rows in store.entries(bundle.start, bundle.end, batch=TILE_WIDTH):
        entries.extend(data for _, data in rows)
    return encode_bundle(entries)


async def _tiles_to_export(store: LogStore, published: int, size: int) -> list[Tile]:
    """The hash tiles of the tree of ``size``, plus the partial ones of every size signed since.

    The spec wants partial tiles for every tree size a checkpoint was produced
    for, and the log signs one per batch: a client holding a receipt for an
    intermediate size computes its proofs from that size's partial tiles.
    Entry bundles are written for the exported size only: they are not needed
    for proofs, a prefix of a wider bundle holds the same entries, and writing
    one per signed size would copy each entry up to 255 times.
    """
    tiles = dict.fromkeys(_iter_tiles(size))
    for signed_size in await store.signed_sizes(published + 1, size - 1):
        # Only the right-most tile of each level is partial: never walk the
        # full ones again, or the first export of a busy log turns quadratic.
        level = 0
        while (count := signed_size >> (TILE_HEIGHT * level)) > 0:
            full, rest = divmod(count, TILE_WIDTH)
            if rest:
                tiles.setdefault(Tile(level, full, rest))
            level += 1
    return sorted(tiles)


async def export_tiles(store: LogStore, directory: Path, size: int | None = None) -> ExportStats:
    """Write the log at its latest checkpoint (or the one signed at ``size``) as tlog-tiles.

    Incremental: a tile or bundle already on disk is left alone, because its
    contents are fixed by its path (a full one never changes; a partial one
    of width ``W`` is the same in every tree that has it). Those of the tree
    that the directory's checkpoint already publishes are not even looked
    at, so an export costs what is new, not the size of the log; to have
    missing files restored, delete its ``checkpoint`` first (files present
    are trusted, not re-read: damaged ones must be deleted). Partial tiles
    of earlier exports stay, as the spec allows. Every file is written
    atomically, and ``checkpoint`` last, once the tiles are durable, so that a
    reader, or the directory after a crash, never has a checkpoint whose tiles
    are missing. Works one tile at a time, so memory stays bounded.

    Raises :class:`~ledger.errors.SizeNotSignedError` for a size never
    signed, and :class:`TileError` if the directory holds a checkpoint of
    another log, of a larger tree, or of a tree that this one does not
    extend, or a hash tile of the wrong length.
    """
    signed = await store.checkpoint(size)
    directory = Path(directory)
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    fd = await asyncio.to_thread(os.open, directory, os.O_RDONLY)
    try:
        # Two exports at once could publish their checkpoints out of order
        # (the smaller tree last): take turns, holding a lock on the directory.
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        return await _export(store, directory, signed)
    finally:
        os.close(fd)  # releases the lock


async def _export(store: LogStore, directory: Path, signed: SignedCheckpoint) -> ExportStats:
    checkpoint_file = directory / CHECKPOINT_NAME
    note = signed.note.encode("utf-8")
    previous = await asyncio.to_thread(_read_if_exists, checkpoint_file)
    # The checkpoint is renamed into place only once its tiles are durable,
    # so every tile of the tree it publishes is on disk.
    published = 0
    if previous is not None:
        published = await _check_previous_export(store, previous, signed)

    # Directories that gained an entry: fsynced before the checkpoint is
    # renamed into place, so that after a crash no tile name is lost while
    # the checkpoint that needs it survives.
    dirty: set[Path] = set()
    tiles_written = tiles_skipped = bundles_written = bundles_skipped = 0

    for tile in await _tiles_to_export(store, published, signed.size):
        if _in_tree(tile.level, tile.index, tile.width, published):
            tiles_skipped += 1
            continue
        path = directory / tile.path
        found = await asyncio.to_thread(_existing_size, path)
        if found is not None:
            if found != tile.width * HASH_SIZE:
                raise TileError(
                    f"{path} has {found} bytes, not the {tile.width * HASH_SIZE} of its "
                    f"{tile.width} hashes; refusing to overwrite it"
                )
            tiles_skipped += 1
            continue
        data = await _tile_data(store, tile)
        await asyncio.to_thread(_write_atomic, path, data)
        dirty.update(_ancestors(path, directory))
        tiles_written += 1

    for bundle in _iter_bundles(signed.size):
        if _in_tree(0, bundle.index, bundle.width, published):
            bundles_skipped += 1
            continue
        path = directory / bundle.path
        # A bundle's length depends on its entries, so only presence is checked.
        if await asyncio.to_thread(_existing_size, path) is not None:
            bundles_skipped += 1
            continue
        data = await _bundle_data(store, bundle)
        await asyncio.to_thread(_write_atomic, path, data)
        dirty.update(_ancestors(path, directory))
        bundles_written += 1

    for d in sorted(dirty, key=lambda p: len(p.parts), reverse=True):
        await asyncio.to_thread(_fsync_dir, d)

    checkpoint_written = previous != note
    if checkpoint_written:
        await asyncio.to_thread(_write_atomic, checkpoint_file, note)
        await asyncio.to_thread(_fsync_dir, directory)
    return ExportStats(
        size=signed.size,
        tiles_written=tiles_written,
        tiles_skipped=tiles_skipped,
        bundles_written=bundles_written,
        bundles_skipped=bundles_skipped,
        checkpoint_written=checkpoint_written,
    )
