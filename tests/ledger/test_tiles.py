"""C2SP tlog-tiles: path encoding, tile sets, bundles, and exported directories read back.

Known answers come from the spec (c2sp.org/tlog-tiles) and the Go reference
code (golang.org/x/mod/sumdb/tlog ``tile.go``, whose paths carry an extra
height element, ``tile/8/...``, that filippo.io/torchwood's ``TilePath``
strips for tlog-tiles, also renaming the ``data`` level to ``entries``).

The exported directory is checked the way an independent tile client would:
from the files alone, with :mod:`ledger.merkle` for the hashing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import tiles
from ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.db import Database
from ledger.errors import SizeNotSignedError, TileError
from ledger.merkle import HASH_SIZE, fold_right, leaf_hash, root_hash, subtrees
from ledger.note import Signer, Verifier
from ledger.store import LogStore
from ledger.tiles import (
    MAX_TILE_INDEX,
    TILE_WIDTH,
    Bundle,
    Tile,
    bundles_for_size,
    decode_bundle,
    decode_tile,
    encode_bundle,
    entries_path,
    export_tiles,
    parse_tile_path,
    tile_path,
    tiles_for_size,
)
from tests.conftest import ORIGIN

# -- paths --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "index", "width", "path"),
    [
        # c2sp.org/tlog-tiles: "index 1234067 will be encoded as x001/x234/067".
        (0, 1234067, 256, "tile/0/x001/x234/067"),
        # tile.go's doc comment: Tile{H: 3, L: 4, N: 1234067, W: 1} is
        # tile/3/4/x001/x234/067.p/1; without the height element:
        (4, 1234067, 1, "tile/4/x001/x234/067.p/1"),
        # tile.go's pathBase comment: 123456789 encodes as x123/x456/789.
        (1, 123456789, 256, "tile/1/x123/x456/789"),
        # tile_test.go's FuzzParseTilePath seeds tile/3/5/x123/x456/078[.p/2].
        (5, 123456078, 256, "tile/5/x123/x456/078"),
        (5, 123456078, 2, "tile/5/x123/x456/078.p/2"),
        (0, 0, 256, "tile/0/000"),
        (0, 0, 1, "tile/0/000.p/1"),
        (0, 999, 255, "tile/0/999.p/255"),
        (0, 1000, 256, "tile/0/x001/000"),
        (2, 1000000, 256, "tile/2/x001/x000/000"),
        (63, 0, 17, "tile/63/000.p/17"),
    ],
)
def test_tile_path_known_answers(level: int, index: int, width: int, path: str) -> None:
    assert tile_path(level, index, width) == path
    assert parse_tile_path(path) == Tile(level, index, width)


@pytest.mark.parametrize(
    ("index", "width", "path"),
    [
        (1234067, 256, "tile/entries/x001/x234/067"),
        (0, 256, "tile/entries/000"),
        (2, 188, "tile/entries/002.p/188"),
        (1000, 1, "tile/entries/x001/000.p/1"),
    ],
)
def test_entries_path_known_answers(index: int, width: int, path: str) -> None:
    assert entries_path(index, width) == path
    assert parse_tile_path(path) == Bundle(index, width)


@given(
    st.integers(0, 63),
    st.integers(0, MAX_TILE_INDEX),
    st.integers(1, TILE_WIDTH),
)
def test_paths_round_trip(level: int, index: int, width: int) -> None:
    assert parse_tile_path(tile_path(level, index, width)) == Tile(level, index, width)
    assert parse_tile_path(entries_path(index, width)) == Bundle(index, width)


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1",  # not three digits
        "tile/0/0001",
        "tile/0/1234",
        "tile/0/x000/001",  # a superfluous leading group
        "tile/0/x001",  # "x" on the last element
        "tile/0/001/234",  # no "x" on a leading element
        "tile/0/x1234/000",
        "tile/0/x001/x234/067/",
        "tile/00/000",  # level with a leading zero
        "tile/064/000",
        "tile/64/000",  # level above 63
        "tile/-1/000",
        "tile/+1/000",
        "tile/0/000.p/0",  # width outside 1..255
        "tile/0/000.p/256",  # a full tile has no .p suffix
        "tile/0/000.p/010",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/000.p/5/",
        "tile/0/000.p/1.p/2",
        "tile/0/+01",
        "tile/0/٠٠١",  # Arabic-Indic digits, which int() would take
        "tile/data/000",  # the sumdb name of the entries level
        "tile/8/0/000",  # a sumdb path with its height
        "tile/entries/000.p/256",
        "tile/entries/x000/000",
        "tile/entries/0",
        "/tile/0/000",
        "tile//000",
        "tiles/0/000",
        "tile/0/000\n",
        "checkpoint",
        "",
        "tile/0/" + "x999/" * 6 + "999",  # beyond any tree of 2^63 - 1 leaves
    ],
)
def test_bad_paths_are_rejected(path: str) -> None:
    with pytest.raises(TileError):
        parse_tile_path(path)


@pytest.mark.parametrize(
    ("level", "index", "width"),
    [
        (-1, 0, 256),
        (64, 0, 256),
        (0, -1, 256),
        (0, MAX_TILE_INDEX + 1, 256),
        (0, 0, 0),
        (0, 0, 257),
    ],
)
def test_impossible_tiles_have_no_path(level: int, index: int, width: int) -> None:
    with pytest.raises(ValueError, match="tile"):
        tile_path(level, index, width)


# -- tile sets ---------------------------------------------------------------


def test_tiles_for_size_spec_example_70000() -> None:
    # c2sp.org/tlog-tiles: "a tree of size 70,000 will be represented by 273 full
    # level 0 tiles, one partial level 0 tile of width 112, one full level 1
    # tile, one partial level 1 tile of width 17, and one partial level 2 tile
    # of width 1."
    expected = [Tile(0, n, 256) for n in range(273)]
    expected += [Tile(0, 273, 112), Tile(1, 0, 256), Tile(1, 1, 17), Tile(2, 0, 1)]
    assert tiles_for_size(70000) == expected
    assert bundles_for_size(70000) == [Bundle(n, 256) for n in range(273)] + [Bundle(273, 112)]


def test_tiles_for_size_spec_example_256() -> None:
    # "a tree of size 256 will be represented by a full level 0 tile and a
    # partial level 1 tile of width 1."
    assert tiles_for_size(256) == [Tile(0, 0, 256), Tile(1, 0, 1)]
    assert bundles_for_size(256) == [Bundle(0, 256)]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, []),  # "Empty tiles MUST NOT be served."
        (1, [Tile(0, 0, 1)]),
        (255, [Tile(0, 0, 255)]),
        (700, [Tile(0, 0, 256), Tile(0, 1, 256), Tile(0, 2, 188), Tile(1, 0, 2)]),
        (
            65536,
            [Tile(0, n, 256) for n in range(256)] + [Tile(1, 0, 256), Tile(2, 0, 1)],
        ),
    ],
)
def test_tiles_for_size(size: int, expected: list[Tile]) -> None:
    assert tiles_for_size(size) == expected


@given(st.integers(0, 2**20))
def test_tile_widths_follow_the_spec_formula(size: int) -> None:
    # "The partial tile at level l for a tree of size s has floor(s / 256**l)
    # mod 256 entries"; the full tiles of a level come before it.
    by_level: dict[int, list[int]] = {}
    for t in tiles_for_size(size):
        by_level.setdefault(t.level, []).append(t.width)
    levels = 0
    while size >= 256**levels:
        levels += 1
    assert sorted(by_level) == list(range(levels if size else 0))
    for level, widths in by_level.items():
        partial = (size // 256**level) % 256
        full = size // 256 ** (level + 1)
        assert widths == [256] * full + ([partial] if partial else [])


# -- contents ------------------------------------------------------------------


def test_bundle_encoding_known_answer() -> None:
    entries = [b"", b"a", b"\xff" * 300]
    encoded = encode_bundle(entries)
    assert encoded == b"\x00\x00" + b"\x00\x01a" + b"\x01\x2c" + b"\xff" * 300
    assert decode_bundle(encoded) == entries
    assert decode_bundle(encoded, 3) == entries
    assert decode_bundle(encode_bundle([b"x" * 0xFFFF])) == [b"x" * 0xFFFF]


@pytest.mark.parametrize(
    "data",
    [
        b"\x00",  # half a length prefix
        b"\x00\x02a",  # entry cut short
        b"\x00\x01a\x00",  # a trailing byte after the last entry
        b"\x00\x01a\x00\x05abc",
    ],
)
def test_truncated_bundles_are_rejected(data: bytes) -> None:
    with pytest.raises(TileError):
        decode_bundle(data)


def test_bundle_of_the_wrong_width_is_rejected() -> None:
    with pytest.raises(TileError, match="2 entries, not 3"):
        decode_bundle(encode_bundle([b"a", b"b"]), 3)


def test_oversized_entry_cannot_be_bundled() -> None:
    with pytest.raises(ValueError, match="65536 bytes"):
        encode_bundle([b"x" * 0x10000])


def test_hash_tiles_decode() -> None:
    hashes = [bytes([i]) * HASH_SIZE for i in range(3)]
    assert decode_tile(b"".join(hashes), 3) == hashes
    for bad in (b"", b"\x00" * 31, b"\x00" * (HASH_SIZE * 257)):
        with pytest.raises(TileError):
            decode_tile(bad)
    with pytest.raises(TileError):
        decode_tile(b"".join(hashes), 2)


# -- export ------------------------------------------------------------------


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """The export directory; beside, not around, the SQLite database in tmp_path."""
    return tmp_path / "export"


async def _store(db: Database, signer: Signer) -> LogStore:
    return await LogStore.create(db, ORIGIN, signer.verifier_key())


def _entries(start: int, stop: int) -> list[bytes]:
    # Distinct entries (the log dedups) of varied lengths, with the empty entry
    # and one of the largest size, so that bundle framing matters.
    def entry(i: int) -> bytes:
        if i == 0:
            return b""
        if i == 5:
            return b"\xab" * 0xFFFF
        return f"entry-{i};".encode() * (i % 7 + 1)

    return [entry(i) for i in range(start, stop)]


def _damage(directory: Path, names: list[str]) -> dict[str, bytes]:
    """Delete files from an export; return their contents."""
    contents = {name: (directory / name).read_bytes() for name in names}
    for name in names:
        (directory / name).unlink()
    return contents


def _publish(directory: Path, note: str) -> None:
    directory.mkdir()
    (directory / "checkpoint").write_text(note)


def _files(directory: Path) -> set[str]:
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}


def _read_tile(directory: Path, level: int, index: int, width: int) -> list[bytes]:
    return decode_tile((directory / tile_path(level, index, width)).read_bytes(), width)


def _client_read(directory: Path, verifier: Verifier) -> tuple[Checkpoint, list[bytes]]:
    """Read an exported log as a tile client: verify everything from the checkpoint down.

    Returns the verified checkpoint and every entry.
    """
    checkpoint = open_checkpoint((directory / "checkpoint").read_bytes(), verifier)
    size = checkpoint.size

    def width(level: int, index: int) -> int:
        # The spec's formula, not tiles_for_size: a full tile unless it is the
        # right-most one of its level.
        nodes = size >> (8 * level)
        return 256 if (index + 1) * 256 <= nodes else nodes % 256

    # The root from the tree's right border: each border subtree of height k
    # is the subtree of height k % 8 over hashes of the level-(k // 8) tile.
    border: list[bytes] = []
    for height, index in subtrees(0, size):
        level, below = divmod(height, 8)
        first = index << below
        tile = _read_tile(directory, level, first // 256, width(level, first // 256))
        border.append(root_hash(tile[first % 256 : first % 256 + (1 << below)]))
    assert fold_right(border) == checkpoint.root_hash

    # Every full tile hashes to its entry in the tile above, and so is
    # authenticated by the root through it.
    level = 0
    while size >> (8 * (level + 1)):
        for n in range((size >> (8 * level)) // 256):
            parent = _read_tile(directory, level + 1, n // 256, width(level + 1, n // 256))
            assert root_hash(_read_tile(directory, level, n, 256)) == parent[n % 256]
        level += 1

    # Each bundle entry hashes to the leaf hash in the level-0 tile.
    entries: list[bytes] = []
    for n in range((size + 255) // 256):
        w = width(0, n)
        bundle = decode_bundle((directory / entries_path(n, w)).read_bytes(), w)
        assert [leaf_hash(e) for e in bundle] == _read_tile(directory, 0, n, w)
        entries.extend(bundle)
    return checkpoint, entries


async def test_export_reads_back_as_a_tile_client_would(
    db: Database, signer: Signer, out: Path
) -> None:
    store = await _store(db, signer)
    data = _entries(0, 700)
    _, cp = await store.sequence(data, signer)
    stats = await export_tiles(store, out)
    assert (stats.size, stats.tiles_written, stats.tiles_skipped) == (700, 4, 0)
    assert (stats.bundles_written, stats.bundles_skipped, stats.checkpoint_written) == (3, 0, True)
    # 700 = 2 * 256 + 188: two full level-0 tiles and a partial one of 188;
    # level 1 has two nodes of height 8, so a partial tile of width 2.
    assert _files(out) == {
        "checkpoint",
        "tile/0/000",
        "tile/0/001",
        "tile/0/002.p/188",
        "tile/1/000.p/2",
        "tile/entries/000",
        "tile/entries/001",
        "tile/entries/002.p/188",
    }
    assert (out / "tile/0/000").stat().st_size == 8192
    assert (out / "checkpoint").read_text() == cp.note
    checkpoint, entries = _client_read(out, signer.verifier())
    assert (checkpoint.origin, checkpoint.size, checkpoint.root_hash) == (ORIGIN, 700, cp.root_hash)
    assert entries == data


async def test_export_is_incremental(db: Database, signer: Signer, out: Path) -> None:
    store = await _store(db, signer)
    await store.sequence(_entries(0, 300), signer)
    first = await export_tiles(store, out)
    assert (first.tiles_written, first.bundles_written) == (3, 2)
    assert _files(out) == {
        "checkpoint",
        "tile/0/000",
        "tile/0/001.p/44",
        "tile/1/000.p/1",
        "tile/entries/000",
        "tile/entries/001.p/44",
    }
    kept = {name: (out / name).stat() for name in ("tile/0/000", "tile/entries/000")}

    await store.sequence(_entries(300, 700), signer)
    second = await export_tiles(store, out)
    assert (second.size, second.tiles_written, second.tiles_skipped) == (700, 3, 1)
    assert (second.bundles_written, second.bundles_skipped) == (2, 1)
    for name, before in kept.items():
        after = (out / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # The partial tile of 44 is now the full tile 1; the old partials may stay.
    assert _files(out) == {
        "checkpoint",
        "tile/0/000",
        "tile/0/001",
        "tile/0/001.p/44",
        "tile/0/002.p/188",
        "tile/1/000.p/1",
        "tile/1/000.p/2",
        "tile/entries/000",
        "tile/entries/001",
        "tile/entries/001.p/44",
        "tile/entries/002.p/188",
    }
    # The old partial tile is a prefix of the full one that replaced it.
    assert _read_tile(out, 0, 1, 44) == _read_tile(out, 0, 1, 256)[:44]
    checkpoint, entries = _client_read(out, signer.verifier())
    assert checkpoint.size == 700
    assert entries == _entries(0, 700)

    # Nothing new: nothing written, the checkpoint file included.
    again = await export_tiles(store, out)
    assert (again.tiles_written, again.bundles_written, again.checkpoint_written) == (0, 0, False)
    assert (again.tiles_skipped, again.bundles_skipped) == (4, 3)


async def test_a_directory_without_its_checkpoint_is_repaired(
    db: Database, signer: Signer, out: Path
) -> None:
    store = await _store(db, signer)
    await store.sequence(_entries(0, 700), signer)
    await export_tiles(store, out)
    original = _damage(out, ["checkpoint", "tile/0/001", "tile/entries/002.p/188"])
    stats = await export_tiles(store, out)
    assert (stats.tiles_written, stats.tiles_skipped) == (1, 3)
    assert (stats.bundles_written, stats.bundles_skipped) == (1, 2)
    assert (out / "tile/0/001").read_bytes() == original["tile/0/001"]
    assert _client_read(out, signer.verifier())[1] == _entries(0, 700)


async def test_export_at_a_signed_size(db: Database, signer: Signer, out: Path) -> None:
    store = await _store(db, signer)
    _, old = await store.sequence(_entries(0, 300), signer)
    await store.sequence(_entries(300, 700), signer)
    stats = await export_tiles(store, out / "old", 300)
    assert stats.size == 300
    checkpoint, entries = _client_read(out / "old", signer.verifier())
    assert (checkpoint.size, checkpoint.root_hash) == (300, old.root_hash)
    assert entries == _entries(0, 300)
    with pytest.raises(SizeNotSignedError):
        await export_tiles(store, out / "never", 299)


async def test_empty_tree_exports_only_its_checkpoint(
    db: Database, signer: Signer, out: Path
) -> None:
    store = await _store(db, signer)
    _, cp = await store.sequence([], signer)
    assert cp.size == 0
    await export_tiles(store, out)
    assert _files(out) == {"checkpoint"}
    checkpoint, entries = _client_read(out, signer.verifier())
    assert (checkpoint.size, entries) == (0, [])


async def test_checkpoint_is_written_after_the_tiles(
    db: Database, signer: Signer, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await _store(db, signer)
    await store.sequence(_entries(0, 300), signer)
    await export_tiles(store, out)
    published = (out / "checkpoint").read_bytes()
    await store.sequence(_entries(300, 700), signer)

    real_write = tiles._write_atomic
    written: list[Path] = []

    def failing_write(path: Path, data: bytes) -> None:
        if len(written) == 3:
            raise OSError("disk full")
        real_write(path, data)
        written.append(path)

    monkeypatch.setattr(tiles, "_write_atomic", failing_write)
    with pytest.raises(OSError, match="disk full"):
        await export_tiles(store, out)
    # The published checkpoint is still the old one, whose tiles are all there.
    assert (out / "checkpoint").read_bytes() == published
    assert _client_read(out, signer.verifier())[0].size == 300
    assert not [f for f in _files(out) if f.rsplit("/", 1)[-1].startswith(".")]

    # A rerun finishes the job, skipping what the failed run wrote; the
    # checkpoint is the very last file written.
    def recording_write(path: Path, data: bytes) -> None:
        real_write(path, data)
        written.append(path)

    monkeypatch.setattr(tiles, "_write_atomic", recording_write)
    written.clear()
    stats = await export_tiles(store, out)
    # The failed run wrote the three new hash tiles (they come first); the
    # rerun skips them and writes the two new bundles.
    assert (stats.tiles_written, stats.tiles_skipped) == (0, 4)
    assert (stats.bundles_written, stats.bundles_skipped) == (2, 1)
    assert written[-1] == out / "checkpoint"
    assert _client_read(out, signer.verifier())[0].size == 700


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = out / "tile/0/000"
    tiles._write_atomic(path, b"first")

    def failing_fsync(fd: int) -> None:
        raise OSError("fsync failed")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        tiles._write_atomic(path, b"second")
    assert path.read_bytes() == b"first"
    assert [p.name for p in path.parent.iterdir()] == ["000"]


async def test_export_refuses_to_move_the_checkpoint_back(
    db: Database, signer: Signer, out: Path
) -> None:
    store = await _store(db, signer)
    await store.sequence(_entries(0, 300), signer)
    await store.sequence(_entries(300, 700), signer)
    await export_tiles(store, out)
    published = (out / "checkpoint").read_bytes()
    with pytest.raises(TileError, match="refusing to go back"):
        await export_tiles(store, out, 300)
    assert (out / "checkpoint").read_bytes() == published


async def test_export_refuses_a_directory_of_another_log(
    db: Database, signer: Signer, out: Path
) -> None:
    store = await _store(db, signer)
    await store.sequence(_entries(0, 10), signer)
    impostor = Signer.generate(ORIGIN)
    foreign = sign_checkpoint(Checkpoint(ORIGIN, 5, b"\x00" * 32), impostor)
    _publish(out, foreign)
    with pytest.raises(TileError, match="not of log"):
        await export_tiles(store, out)
    assert _files(out) == {"checkpoint"}


async def test_export_refuses_a_checkpoint_the_log_does_not_extend(
    db: Database, signer: Signer, out: Path
) -> None:
    # Same key, different tree at the same size: a fork. Full tiles on disk
    # could belong to it, so they must not be trusted.
    store = await _store(db, signer)
    await store.sequence(_entries(0, 10), signer)
    forked = sign_checkpoint(Checkpoint(ORIGIN, 5, b"\x00" * 32), signer)
    _publish(out, forked)
    with pytest.raises(TileError, match="not consistent"):
        await export_tiles(store, out)


async def test_export_refuses_a_hash_tile_of_the_wrong_length(
    db: Database, signer: Signer, out: Path
) -> None:
    store = await _store(db, signer)
    await store.sequence(_entries(0, 300), signer)
    (out / "tile/0").mkdir(parents=True)
    (out / "tile/0/000").write_bytes(b"\x00" * 100)
    with pytest.raises(TileError, match="100 bytes"):
        await export_tiles(store, out)
    assert not (out / "checkpoint").exists()


async def test_every_signed_size_gets_its_partial_hash_tiles(
    db: Database, signer: Signer, out: Path
) -> None:
    # A receipt may carry any checkpoint the log signed; a tile client needs
    # that size's partial tiles to check it, even after later exports.
    store = await _store(db, signer)
    await store.sequence(_entries(0, 300), signer)
    await export_tiles(store, out)
    _, mid = await store.sequence(_entries(300, 310), signer)
    await store.sequence(_entries(310, 320), signer)
    await export_tiles(store, out)
    files = _files(out)
    assert {"tile/0/001.p/44", "tile/0/001.p/54", "tile/0/001.p/64"} <= files
    # The intermediate size's partial tile plus the full tile below it give its root.
    level0 = _read_tile(out, 0, 0, 256) + _read_tile(out, 0, 1, 54)
    assert root_hash(level0) == mid.root_hash
    # Bundles only for the exported size (a prefix of the wider bundle serves the rest).
    assert "tile/entries/001.p/64" in files
    assert "tile/entries/001.p/54" not in files
