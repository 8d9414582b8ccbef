"""Round trips, read-only views, keys, input validation, free list, corruption, check, close."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from noisefs.arena import Arena
from noisefs.errors import ArenaError, CorruptSnapshot, InputError
from tests.test_arena_fixtures import *  # noqa: F403 - the fixtures make_arena, shm_root, spill
from tests.test_arena_fixtures import data_files, du_bytes, inode_count, listing

DTYPES = [
    np.float32,
    np.float64,
    np.complex64,
    np.complex128,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.bool_,
]
SHAPES = [(), (0,), (0, 3), (1,), (7,), (3, 4), (2, 3, 5), (1000, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip(make_arena, dtype, shape):
    arena = make_arena()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 50).astype(dtype)
    if np.dtype(dtype).kind == "c":
        x = x + 1j * (rng.standard_normal(shape)).astype(dtype)
    key = arena.put(x, run="r1", step=3, batch=4)
    view = arena.get(key)
    assert view.dtype == x.dtype and view.shape == x.shape
    np.testing.assert_array_equal(view, x)
    assert not view.flags.writeable
    info = arena.info(key)
    assert (info["run"], info["step"], info["batch"], info["shape"], info["nbytes"]) == (
        "r1",
        3,
        4,
        shape,
        x.nbytes,
    )
    assert info["tier"] == "tmpfs"
    del view
    arena.release(key)
    assert arena.keys() == []


def test_non_contiguous_and_big_endian(make_arena):
    arena = make_arena()
    base = np.arange(60, dtype=np.float64).reshape(6, 10)
    for x in (base[::2, 1::3], base.T, np.asfortranarray(base), base.astype(">f8")):
        view = arena.get(arena.put(x))
        np.testing.assert_array_equal(view, x)
        assert view.dtype == x.dtype


def test_large_array_parallel_checksum(make_arena):
    arena = make_arena(quota="64MiB")
    x = np.random.default_rng(1).standard_normal(3 << 20)  # 24 MiB: several blocks, threaded
    key = arena.put(x)
    np.testing.assert_array_equal(arena.get(key), x)


def test_view_is_read_only(make_arena):
    arena = make_arena()
    view = arena.get(arena.put(np.arange(10.0)))
    with pytest.raises(ValueError):
        view[0] = 1.0
    with pytest.raises(ValueError):
        view.flags.writeable = True


def test_keys_unique_and_duplicates_are_separate_snapshots(make_arena):
    arena = make_arena()
    keys = [arena.put(np.full(3, i), run="r", step=0, batch=0) for i in range(20)]
    assert len(set(keys)) == 20
    assert arena.keys(run="r") == keys
    for i, key in enumerate(keys):
        assert arena.get(key)[0] == i
    assert arena.keys(run="other") == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"run": ""},
        {"run": ".hidden"},
        {"run": "a/b"},
        {"run": "x" * 129},
        {"run": 5},
        {"step": -1},
        {"batch": 1.5},
        {"step": True},
    ],
)
def test_bad_names_rejected(make_arena, kwargs):
    arena = make_arena()
    with pytest.raises(InputError):
        arena.put(np.zeros(2), **kwargs)


@pytest.mark.parametrize(
    "bad",
    [
        np.array(["a", "b"]),
        np.array([object(), 1], dtype=object),
        np.zeros(2, dtype="M8[s]"),
        np.zeros(2, dtype=[("a", "f8")]),
    ],
)
def test_non_numeric_rejected(make_arena, bad):
    arena = make_arena()
    with pytest.raises(InputError):
        arena.put(bad)
    assert arena.stats()["data_files"] == 0


def test_unknown_keys(make_arena):
    arena = make_arena()
    key = arena.put(np.zeros(2))
    arena.release(key)
    for op in (arena.get, arena.release, arena.info):
        with pytest.raises(KeyError):
            op(key)
    with pytest.raises(KeyError):
        arena.adopt([key])


def test_free_list_recycles_the_same_file(make_arena, shm_root):
    arena = make_arena()
    x = np.ones(1000)
    arena.release(arena.put(x))
    files = data_files(shm_root)
    assert len(files) == 1 and arena.stats()["free_files"] == 1
    key = arena.put(x * 2)
    assert data_files(shm_root) == files  # recycled, no new inode
    np.testing.assert_array_equal(arena.get(key), x * 2)


def test_release_with_live_view_does_not_recycle(make_arena, shm_root):
    arena = make_arena()
    key = arena.put(np.arange(100.0))
    view = arena.get(key)
    arena.release(key)
    assert data_files(shm_root) == [] and arena.stats()["free_files"] == 0
    np.testing.assert_array_equal(view, np.arange(100.0))  # the view stays valid
    arena.put(np.zeros(100))
    np.testing.assert_array_equal(view, np.arange(100.0))


def test_full_release_and_close_leave_nothing(make_arena, shm_root, spill):
    arena = make_arena(quota="2MiB")
    keys = [arena.put(np.ones(40_000) * i) for i in range(8)]  # 320 KB each: some spill
    assert arena.stats()["spilled_files"] > 0
    for key in keys:
        arena.release(key)
    arena.close()
    assert data_files(shm_root) == []
    assert os.listdir(shm_root / "owners") == []
    assert listing(spill) == []


def test_flipped_byte_detected_and_reported(make_arena, shm_root):
    arena = make_arena()
    good = arena.put(np.arange(1000.0))
    bad = arena.put(np.arange(1000.0) * 2)
    slot = _slot_of(arena, bad)
    assert slot in data_files(shm_root)
    fd = os.open(shm_root / "data" / slot, os.O_RDWR)
    old = os.pread(fd, 1, 4096 + 777)
    os.pwrite(fd, bytes([old[0] ^ 0x10]), 4096 + 777)
    os.close(fd)
    with pytest.raises(CorruptSnapshot):
        arena.get(bad)
    np.testing.assert_array_equal(arena.get(good), np.arange(1000.0))
    problems = arena.check()
    assert len([p for p in problems if "corrupt" in p]) == 1 and bad in " ".join(problems)


def _slot_of(arena, key):
    return arena.info(key)["slot"]  # its ledger row, or its record while not yet published


def test_corrupt_header_detected(make_arena, shm_root):
    arena = make_arena()
    key = arena.put(np.arange(10.0))
    fd = os.open(shm_root / "data" / _slot_of(arena, key), os.O_RDWR)
    os.pwrite(fd, b"XXXXXXXX", 0)
    os.close(fd)
    with pytest.raises(CorruptSnapshot):
        arena.get(key)


def test_check_finds_and_fixes_orphans_and_missing_files(make_arena, shm_root):
    arena = make_arena()
    key = arena.put(np.arange(10.0))
    os.unlink(shm_root / "data" / _slot_of(arena, key))
    (shm_root / "data" / "stray.snap").write_bytes(b"x" * 5000)
    problems = arena.check()
    assert any("missing" in p for p in problems) and any("no ledger row" in p for p in problems)
    arena.check(fix=True)
    assert arena.check() == []
    assert data_files(shm_root) == [] and arena.keys() == []
    assert arena.stats()["data_files"] == 0


def test_files_private_and_stats_match_du(make_arena, shm_root):
    arena = make_arena()
    for i in range(5):
        arena.put(np.ones(3000 * (i + 1)))
    assert stat.S_IMODE(os.stat(shm_root).st_mode) == 0o700
    for name in data_files(shm_root):
        assert stat.S_IMODE(os.stat(shm_root / "data" / name).st_mode) == 0o600
    s = arena.stats()
    assert du_bytes(shm_root) <= s["bytes_used"] <= du_bytes(shm_root) + 1024 * 1024
    assert inode_count(shm_root) <= s["files_used"]
    assert s["files_used"] - inode_count(shm_root) <= 2  # -wal / -shm may be absent


def test_settings_are_shared_and_persist(make_arena, shm_root, spill):
    make_arena(quota="12MiB", max_files=50, spill_quota="3MiB")
    other = Arena(shm_root)  # no explicit settings: the stored ones
    try:
        s = other.stats()
        assert (s["quota_bytes"], s["max_files"], s["spill_quota_bytes"]) == (12 << 20, 50, 3 << 20)
        assert other.spill_dir == spill
    finally:
        other.close()


def test_quota_smaller_than_metadata_refused(make_arena, shm_root, spill):
    with pytest.raises(ArenaError, match="metadata"):
        make_arena(quota=64 * 1024)
    with pytest.raises(ArenaError, match="max_files"):
        make_arena(max_files=3)
    with Arena(shm_root, spill_dir=spill) as arena:  # the refused values were not stored
        assert arena.stats()["quota_bytes"] == 1 << 30 and arena.stats()["max_files"] == 10_000


def test_bad_arguments(make_arena):
    with pytest.raises(InputError):
        make_arena(quota="-5MiB")
    with pytest.raises(InputError):
        make_arena(quota="lots")


def test_adopt_moves_ownership(make_arena, shm_root):
    a = make_arena()
    b = make_arena()
    keys = [a.put(np.zeros(3)) for _ in range(3)]
    b.adopt(keys)
    assert {b.info(k)["owner"] for k in keys} == {b.parts.owner.id}
    with pytest.raises(KeyError):
        b.adopt([keys[0], "nope:0:0:0"])
    assert a.info(keys[0])["owner"] == b.parts.owner.id


def test_handle_refuses_use_after_fork(make_arena):
    arena = make_arena()
    key = arena.put(np.zeros(2))
    pid = os.fork()
    if pid == 0:  # child: the inherited handle must refuse
        code = 1
        try:
            arena.get(key)
        except ArenaError:
            code = 0
        except BaseException:  # noqa: BLE001
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    np.testing.assert_array_equal(arena.get(key), np.zeros(2))


def test_closed_handle_refuses(make_arena):
    arena = make_arena()
    arena.close()
    arena.close()  # idempotent
    with pytest.raises(ArenaError):
        arena.put(np.zeros(1))


def test_threads_share_a_handle(make_arena):
    from concurrent.futures import ThreadPoolExecutor

    arena = make_arena(quota="32MiB")

    def work(i):
        out = []
        for j in range(20):
            x = np.full(5000 + i, i * 100 + j, dtype=np.int64)
            key = arena.put(x, run=f"t{i}", step=j)
            np.testing.assert_array_equal(arena.get(key), x)
            if j % 2:
                arena.release(key)
            else:
                out.append(key)
        return out

    with ThreadPoolExecutor(4) as pool:
        kept = [k for keys in pool.map(work, range(4)) for k in keys]
    assert sorted(arena.keys()) == sorted(kept)
    assert arena.check() == []


def test_shared_spill_dir_other_files_untouched(make_arena, shm_root, spill):
    arena = make_arena(quota="1MiB")
    key = arena.put(np.ones(200_000))  # 1.6 MB: spills
    assert arena.info(key)["tier"] == "spill"
    foreign = spill / "someone-elses.snap"
    foreign.write_bytes(b"x")
    os.utime(foreign, (1, 1))
    assert arena.gc()["orphan_files"] == 0
    arena.check(fix=True)
    assert foreign.exists()
    np.testing.assert_array_equal(arena.get(key), np.ones(200_000))
