"""Policing by a real daemon: dead owners reclaimed within seconds beside a live run that
ends exact; cold snapshots moved to spill at the watermarks and when another tenant fills
the tmpfs, with nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from noisefs import faults
from noisefs.daemon.config import TMPFS_FREE_FLOOR
from noisefs.daemon.statusfile import read_status
from tests.conftest import EXAMPLES, mounted_tmpfs
from tests.test_daemon_support import (
    daemons_fixture,
    log_text,
    wait_for,
    wait_running,
    write_config,
)

HOLDER = r"""
import json, sys
import numpy as np
from noisefs.arena import Arena
root, spill, quota, n, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
arena = Arena(root=root, spill_dir=spill, quota=quota)
rng = np.random.default_rng(0)
keys = [arena.put(rng.random(size // 8), run="cold", step=i) for i in range(n)]
print(json.dumps(keys), flush=True)
sys.stdin.readline()
rng = np.random.default_rng(0)
tiers = []
for key in keys:
    tiers.append(arena.info(key)["tier"])
    assert np.array_equal(np.asarray(arena.get(key)), rng.random(size // 8)), key
    arena.release(key)
print(json.dumps(tiers), flush=True)
"""

# `noisefs run` (its CLI, in a process of its own) held at the first put of its second batch
# (its arena handle registered, its lease and first batch's files in the arena) until the
# test removes the gate file: a live owner for exactly as long as the test needs one. A run
# this small is over within a second of registering, far less than a loaded machine may
# take to look at it.
GATED_RUN = r"""
import sys, time
from pathlib import Path
from noisefs.arena import Arena
from noisefs.cli import main
gate, put, held = Path(sys.argv[1]), Arena.put, []
def gated_put(self, array, run="r1", step=0, batch=0):
    if batch >= 1 and not held:
        held.append(batch)
        gate.touch()
        deadline = time.monotonic() + 600  # the test kills it long before
        while gate.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return put(self, array, run=run, step=step, batch=batch)
Arena.put = gated_put
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture
def daemons(tmp_path):
    yield from daemons_fixture(tmp_path)


def _holder(root, spill, quota, n, size):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), str(spill), quota, str(n), str(size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return proc


def _verify(holder) -> list[str]:
    holder.stdin.write("verify\n")
    holder.stdin.flush()
    line = holder.stdout.readline()
    assert holder.wait(30) == 0, "the holder lost or corrupted a snapshot"
    return json.loads(line)


def _kill(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_watermark_moves_cold_snapshots_to_spill(daemons, tmp_path, arena_root):
    spill = tmp_path / "spill"
    cfg = write_config(
        tmp_path / "d.toml",
        arena_root,
        tmp_path / "results",
        arena={"quota": "8MiB", "spill": str(spill)},
    )
    proc = daemons.start("--config", str(cfg))
    wait_running(arena_root, proc)
    holder = _holder(arena_root, spill, "8MiB", 24, 256 << 10)
    try:
        keys = json.loads(holder.stdout.readline())
        assert len(keys) == 24

        def relieved():
            s = read_status(arena_root)
            f, c = s["figures"], s["counters"]
            ok = c["moved_files"] and not s["pressure"]
            return s if ok and f["bytes_used"] <= 0.6 * f["quota_bytes"] else None

        status = wait_for(relieved, 15, "cold snapshots moved to spill", proc)
        tiers = _verify(holder)
        assert tiers.count("spill") == status["counters"]["moved_files"]
        # coldest first: what moved is a prefix of the puts
        assert tiers == sorted(tiers, key=lambda t: t != "spill")
        assert "over the high watermark" in log_text(proc)
    finally:
        _kill(holder)


def test_foreign_inbox_files_count_and_push_cold_data_to_spill(daemons, tmp_path, arena_root):
    spill = tmp_path / "spill"
    cfg = write_config(
        tmp_path / "d.toml",
        arena_root,
        tmp_path / "results",
        arena={"quota": "8MiB", "spill": str(spill)},
    )
    proc = daemons.start("--config", str(cfg))
    wait_running(arena_root, proc)
    holder = _holder(arena_root, spill, "8MiB", 16, 256 << 10)  # ~0.6 of the quota
    try:
        json.loads(holder.stdout.readline())
        step = arena_root / "inbox" / "slow" / "0"
        step.mkdir(parents=True)
        # a foreign writer's temp file (never taken): it reserves nothing, yet counts
        (step / ".big.npy.tmp").write_bytes(b"\0" * (2 << 20))

        def relieved():
            s = read_status(arena_root)
            f = s["figures"]
            ok = f.get("foreign_bytes", 0) >= 2 << 20 and s["counters"]["moved_files"]
            return s if ok and not s["pressure"] else None

        status = wait_for(relieved, 15, "inbox usage counted, cold data moved", proc)
        assert status["figures"]["bytes_used"] <= 0.6 * status["figures"]["quota_bytes"]
        tiers = _verify(holder)
        assert tiers.count("spill") == status["counters"]["moved_files"]
    finally:
        _kill(holder)


def test_tmpfs_squeezed_by_another_tenant(daemons, tmp_path):
    from noisefs.arena import Arena

    with mounted_tmpfs("size=24m,nr_inodes=2000") as mnt:
        root = mnt / "arena"
        spill = tmp_path / "spill"
        cfg = write_config(
            tmp_path / "d.toml",
            root,
            tmp_path / "results",
            arena={"quota": "10MiB", "spill": str(spill)},
        )
        proc = daemons.start("--config", str(cfg))
        wait_running(root, proc)
        # 6 MiB of snapshots; the writer's own map cache (a quarter of the quota) keeps the
        # pages of its newest ones alive after a move, the coldest ones free at once
        holder = _holder(root, spill, "10MiB", 24, 256 << 10)
        try:
            keys = json.loads(holder.stdout.readline())
            st = os.statvfs(mnt)
            filler = (st.f_bavail * st.f_frsize) - (512 << 10)
            with open(mnt / "other-tenant.bin", "wb") as handle:  # outside the arena
                handle.write(b"\1" * filler)

            def relieved():
                # back at the daemon's own low mark (twice the floor free): an empty
                # ``pressure`` alone also follows "nothing movable left" (snapshots still
                # unpublished or mapped), after which the daemon may move more
                s = read_status(root)
                f = s["figures"]
                low = 2 * TMPFS_FREE_FLOOR * f.get("tmpfs_size_bytes", 0)
                ok = s["counters"]["moved_files"] and not s["pressure"]
                return s if ok and f["tmpfs_free_bytes"] >= low else None

            status = wait_for(relieved, 60, "cold snapshots moved off the full tmpfs", proc)
            st = os.statvfs(mnt)
            assert st.f_bavail * st.f_frsize >= 0.05 * 24 * (1 << 20)
            # under its low mark with nothing writing, the daemon moves nothing more: what it
            # says it moved is what is in spill now (read now, not after the run beside,
            # whose writes on the squeezed tmpfs may make it move more, as it should)
            with Arena.open_existing(root) as arena:
                spilled = {key for key in keys if arena.info(key)["tier"] == "spill"}
            assert len(spilled) == status["counters"]["moved_files"] > 0
            # a run beside it, on the squeezed tmpfs, ends exact
            out = tmp_path / "beside.npz"
            done = subprocess.run(
                [sys.executable, "-m", "noisefs", "run", str(EXAMPLES / "ghz_5.qasm")]
                + ["--arena", str(root), "--spill", str(spill), "--trajectories", "100"]
                + ["--seed", "4", "--batch", "10", "--quiet", "--output", str(out)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            from noisefs.oracle import aer_reference

            with np.load(out, allow_pickle=False) as data:
                rho, meta = data["rho"][-1], json.loads(str(data["meta"]))
            assert np.abs(rho - aer_reference(meta)).max() < 1e-8
            tiers = _verify(holder)  # nothing lost or corrupted, wherever it is now
            moved = read_status(root)["counters"]["moved_files"]  # read after the tiers
            now_spilled = {key for key, tier in zip(keys, tiers, strict=True) if tier == "spill"}
            # moves are one way, and what of ours spilled since is among the daemon's moves
            assert spilled <= now_spilled
            assert len(now_spilled - spilled) <= moved - status["counters"]["moved_files"]
            assert (mnt / "other-tenant.bin").stat().st_size == filler  # not ours: untouched
        finally:
            _kill(holder)
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


@pytest.mark.slow
def test_killed_run_reclaimed_while_live_run_ends_exact(daemons, tmp_path, arena_root):
    from noisefs.arena import Arena
    from noisefs.oracle import aer_reference

    spill = tmp_path / "spill"
    cfg = write_config(
        tmp_path / "d.toml", arena_root, tmp_path / "results", arena={"spill": str(spill)}
    )
    proc = daemons.start("--config", str(cfg))
    wait_running(arena_root, proc)
    circuit = str(EXAMPLES / "ghz_5.qasm")
    common = ["--arena", str(arena_root), "--spill", str(spill), "--quiet"]

    def noisefs_run(seed, output, env=None, gate=None):
        head = ["-m", "noisefs"] if gate is None else ["-c", GATED_RUN, str(gate)]
        return subprocess.Popen(
            [sys.executable, *head, "run", circuit, "--seed", str(seed), *common]
            + ["--trajectories", "300", "--batch", "25", "--output", str(output)],
            env={**os.environ, **(env or {})},
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    paused, gate = tmp_path / "paused", tmp_path / "live-held"
    doomed = noisefs_run(1, tmp_path / "doomed.npz", {faults.ENV: f"arena.put-paused={paused}"})
    live = noisefs_run(9, tmp_path / "live.npz", gate=gate)
    try:

        def reached(run, marker, name):
            def check():
                if run.poll() is not None:
                    pytest.fail(f"the {name} run exited {run.returncode}: {run.stderr.read()}")
                return marker.exists()

            return check

        wait_for(reached(doomed, paused, "doomed"), 120, "the doomed run to write a snapshot", proc)
        wait_for(reached(live, gate, "live"), 120, "the live run to reach its second batch", proc)

        def both_registered():
            with Arena.open_existing(arena_root) as arena:
                return {doomed.pid, live.pid} <= {o["pid"] for o in arena.live_owners()}

        # the live run's own gc (at its arena's open, before it registers) is behind it and
        # it puts nothing while held: only the daemon can reclaim the killed run now
        wait_for(both_registered, 60, "both runs registered in the arena", proc)
        before = read_status(arena_root)["counters"]
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(10)

        seen = {}

        def reclaimed():
            with Arena.open_existing(arena_root) as arena:
                seen["gc"] = arena.gc(dry_run=True)
                seen["owners"] = arena.live_owners()
            seen["status"] = c = read_status(arena_root)["counters"]
            gone = not seen["gc"]["dead_owners"] and not seen["gc"]["partial_files"]
            # by the daemon: its own count of what it reclaimed went up
            return gone and c["reclaimed_bytes"] > before["reclaimed_bytes"]

        try:
            wait_for(reclaimed, 60, "the killed run's data reclaimed", proc)
        except BaseException:
            print(seen)
            raise
        assert seen["status"]["reclaimed_files"] > before["reclaimed_files"]
        assert "reclaimed" in log_text(proc)
        # beside a run that was live all along: it still holds its registration
        assert live.poll() is None
        assert live.pid in {o["pid"] for o in seen["owners"]}
        gate.unlink()  # let it go on
        assert live.wait(120) == 0, live.stderr.read().decode()
        with np.load(tmp_path / "live.npz", allow_pickle=False) as data:
            rho, meta = data["rho"][-1], json.loads(str(data["meta"]))
        assert np.abs(rho - aer_reference(meta)).max() < 1e-8
        assert not (tmp_path / "doomed.npz").exists()
    finally:
        _kill(doomed)
        _kill(live)
