"""The daemon as a process: one per arena, signals, reload, systemd notify, journald
logs, metrics, scan-only fallback, and `noisefs status`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

from noisefs import faults
from noisefs.daemon.statusfile import read_status
from tests.test_daemon_support import (
    daemons_fixture,
    log_text,
    random_psi,
    result,
    save_renamed,
    wait_for,
    wait_ingested,
    wait_running,
    write_config,
)


@pytest.fixture
def daemons(tmp_path):
    yield from daemons_fixture(tmp_path)


def _stored_quota(root) -> int:
    from noisefs.arena import Arena

    with Arena.open_existing(root) as arena:
        return arena.quota_bytes


def test_second_daemon_exits_3_naming_the_holder(daemons, tmp_path, arena_root):
    err = tmp_path / "daemon.log"
    err.touch()
    st = os.stat(err)
    env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}  # stderr is "the journal"
    cfg = write_config(tmp_path / "d.toml", arena_root, tmp_path / "results")
    first = daemons.start("--config", str(cfg), env=env)
    wait_running(arena_root, first)
    second = subprocess.run(
        [sys.executable, "-m", "noisefs", "daemon", "--arena", str(arena_root)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 3, second.stderr
    assert f"pid {first.pid}" in second.stderr and "Traceback" not in second.stderr
    assert "<6>policing" in log_text(first)  # journald priority prefix (info)
    out = subprocess.run(
        [sys.executable, "-m", "noisefs", "status", "--arena", str(arena_root)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0
    assert f"pid {first.pid}" in out.stdout and "inotify" in out.stdout
    first.send_signal(signal.SIGINT)
    assert first.wait(10) == 0


def test_sigterm_flushes_averages_and_exits_0(daemons, tmp_path, arena_root):
    cfg = write_config(tmp_path / "d.toml", arena_root, tmp_path / "results")
    proc = daemons.start("--config", str(cfg))
    wait_running(arena_root, proc)
    rng = np.random.default_rng(2)
    step = arena_root / "inbox" / "partial" / "4"
    step.mkdir(parents=True)
    states = [random_psi(rng, 4) for _ in range(30)]
    for i, psi in enumerate(states):
        save_renamed(step / f"{i}.npy", psi)
    wait_ingested(arena_root, "partial", 30, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    res = result(tmp_path / "results", "partial")
    expected = np.mean([np.outer(p, p.conj()) for p in states], axis=0)
    assert np.abs(res["rho"][0] - expected).max() < 1e-12
    assert res["steps"].tolist() == [4] and res["counts"].tolist() == [30]
    assert json.loads(str(res["meta"]))["complete"] is False
    assert read_status(arena_root)["running"] is False
    # a restart continues the same averages; DONE then writes the complete result
    proc = daemons.start("--config", str(cfg), log="again.log")
    wait_running(arena_root, proc)
    more = [random_psi(rng, 4) for _ in range(10)]
    for i, psi in enumerate(more):
        save_renamed(step / f"more{i}.npy", psi)
    (step.parent / "DONE").touch()
    wait_for(
        lambda: json.loads(str(result(tmp_path / "results", "partial")["meta"]))["complete"],
        15,
        "the complete result",
        proc,
    )
    res = result(tmp_path / "results", "partial")
    expected = np.mean([np.outer(p, p.conj()) for p in states + more], axis=0)
    assert res["counts"].tolist() == [40]
    assert np.abs(res["rho"][0] - expected).max() < 1e-12


def test_sighup_applies_bounds_keeps_old_config_when_broken(daemons, tmp_path, arena_root):
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(20)
    try:
        cfg = write_config(
            tmp_path / "d.toml", arena_root, tmp_path / "results", arena={"quota": "64MiB"}
        )
        proc = daemons.start("--config", str(cfg), env={"NOTIFY_SOCKET": str(sock_path)})
        assert sock.recv(4096).startswith(b"READY=1")
        wait_running(arena_root, proc)
        assert _stored_quota(arena_root) == 64 << 20
        write_config(cfg, arena_root, tmp_path / "results", arena={"quota": "48MiB"})
        proc.send_signal(signal.SIGHUP)
        assert sock.recv(4096).startswith(b"RELOADING=1")
        assert sock.recv(4096).startswith(b"READY=1")
        assert _stored_quota(arena_root) == 48 << 20
        assert read_status(arena_root)["reloads"] == {"ok": 1, "error": 0}
        cfg.write_text(cfg.read_text() + "high_watermark = 0.3\nlow_watermark = 0.5\n")
        proc.send_signal(signal.SIGHUP)
        assert sock.recv(4096).startswith(b"RELOADING=1")
        assert sock.recv(4096).startswith(b"READY=1")
        cfg.write_text("this is [not toml\n")
        proc.send_signal(signal.SIGHUP)
        assert sock.recv(4096).startswith(b"RELOADING=1")
        assert sock.recv(4096).startswith(b"READY=1")
        wait_for(
            lambda: read_status(arena_root)["reloads"] == {"ok": 1, "error": 2}, 5, "reloads", proc
        )
        assert _stored_quota(arena_root) == 48 << 20
        text = log_text(proc)
        assert "reload refused, the running configuration stays" in text
        assert "low_watermark 0.5 must be below high_watermark" in text
        assert proc.poll() is None  # still running, with the old config
        proc.send_signal(signal.SIGTERM)
        assert sock.recv(4096).startswith(b"STOPPING=1")
        assert proc.wait(10) == 0
    finally:
        sock.close()


def test_scan_only_fallback_and_metrics(daemons, tmp_path, arena_root):
    pytest.importorskip("prometheus_client")
    cfg = write_config(tmp_path / "d.toml", arena_root, tmp_path / "results", metrics_port=0)
    proc = daemons.start("--config", str(cfg), env={faults.ENV: "daemon.inotify-fails"})
    status = wait_running(arena_root, proc)
    assert status["mode"] == "scan-only"
    assert "scan-only mode" in log_text(proc)
    step = arena_root / "inbox" / "noevents" / "0"
    step.mkdir(parents=True)
    rng = np.random.default_rng(9)
    for i in range(5):
        np.save(step / f"{i}.npy", random_psi(rng, 2))
    os.symlink("/etc/passwd", step / "evil.npy")
    status = wait_ingested(arena_root, "noevents", 5, proc)
    wait_for(lambda: read_status(arena_root)["counters"]["rejected"], 5, "a reject", proc)
    port = read_status(arena_root)["metrics_port"]

    def scrape():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        return text if "noisefs_daemon_ingested_files_total" in text and " 5.0" in text else None

    text = wait_for(scrape, 5, "metrics", proc)
    for name in (
        "noisefs_arena_used_bytes",
        "noisefs_arena_quota_bytes",
        "noisefs_arena_inodes",
        "noisefs_arena_max_inodes",
        "noisefs_arena_spilled_bytes",
        "noisefs_daemon_reclaimed_bytes_total",
        "noisefs_daemon_missed_events_total",
        "noisefs_daemon_reloads_total",
        f'noisefs_daemon_rejected_files_total{{arena="{arena_root}",reason="symlink"}} 1.0',
        "noisefs_daemon_scan_only 1.0",
    ):
        assert name in text, name
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_bad_config_exits_2(tmp_path, arena_root):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[[arena]]\nroot = "{arena_root}"\nquota = "lots"\nwatermark = 2\n')
    done = subprocess.run(
        [sys.executable, "-m", "noisefs", "daemon", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "unknown key(s) watermark" in done.stderr
    assert not arena_root.exists()


UNREADABLE_CONFIGS = {
    "utf8": (b'results = "/tmp/r\xff"\n', "not UTF-8 text (byte 0xff on line 1)"),
    "nested": (b"a = " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
}


@pytest.mark.parametrize("kind", sorted(UNREADABLE_CONFIGS))
def test_unreadable_config_exits_2_in_one_line(tmp_path, arena_root, kind):
    contents, message = UNREADABLE_CONFIGS[kind]
    bad = tmp_path / "bad.toml"
    bad.write_bytes(contents)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "noisefs",
            "daemon",
            "--config",
            str(bad),
            "--arena",
            str(arena_root),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"noisefs: error: config {bad}: ")
    assert message in done.stderr and done.stderr.count("\n") == 1  # one line, no traceback
    assert not arena_root.exists()


def test_sighup_with_an_unreadable_config_keeps_the_running_one(daemons, tmp_path, arena_root):
    cfg = write_config(tmp_path / "d.toml", arena_root, tmp_path / "results")
    proc = daemons.start("--config", str(cfg))
    wait_running(arena_root, proc)
    for n, kind in enumerate(sorted(UNREADABLE_CONFIGS), 1):
        contents, message = UNREADABLE_CONFIGS[kind]
        cfg.write_bytes(contents)
        proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda n=n: read_status(arena_root)["reloads"] == {"ok": 0, "error": n},
            10,
            f"reload {n} refused",
            proc,
        )
        assert message in log_text(proc)
    step = arena_root / "inbox" / "after" / "0"
    step.mkdir(parents=True)
    save_renamed(step / "a.npy", np.array([0.0, 1.0]))
    wait_ingested(arena_root, "after", 1, proc)  # still running, with the old config
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_example_config_validates():
    from noisefs.daemon.config import load_config
    from tests.conftest import EXAMPLES

    cfg = load_config(EXAMPLES / "noisefs-daemon.toml")
    assert cfg.arenas[0].quota_bytes == 2 << 30 and cfg.arenas[0].high_watermark == 0.8
    unit = (EXAMPLES / "noisefs-daemon.service").read_text()
    settings = [line for line in unit.splitlines() if line and not line.startswith("#")]
    assert "Type=notify" in settings and "RemoveIPC=no" in settings
    assert not [line for line in settings if line.startswith("DynamicUser")]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [[], ["--safe", "--rho"]])
def test_legacy_writer_through_the_inbox(daemons, tmp_path, arena_root, mode):
    from tests.conftest import EXAMPLES

    cfg = write_config(tmp_path / "d.toml", arena_root, tmp_path / "results")
    proc = daemons.start("--config", str(cfg))
    wait_running(arena_root, proc)
    subprocess.run(
        [sys.executable, str(EXAMPLES / "legacy_writer.py"), "--arena", str(arena_root)]
        + ["--run", "ghz", "--trajectories", "40", *mode],
        check=True,
        timeout=120,
    )
    wait_for(lambda: (tmp_path / "results" / "ghz.npz").exists(), 20, "the result", proc)
    res = result(tmp_path / "results", "ghz")
    assert res["counts"].tolist() == [40, 40, 40]
    rho = res["rho"][-1]
    assert abs(np.trace(rho) - 1) < 1e-12 and np.abs(rho - rho.conj().T).max() < 1e-12
    assert abs(rho[0, 0] + rho[7, 7] - 1) < 0.05  # GHZ, a little relaxed


def test_sighup_adds_and_releases_arenas(daemons, tmp_path, arena_root):
    second = arena_root.with_name(arena_root.name + "-b")
    try:
        results = tmp_path / "results"
        cfg = write_config(tmp_path / "d.toml", arena_root, results)
        proc = daemons.start("--config", str(cfg))
        wait_running(arena_root, proc)
        text = cfg.read_text()
        cfg.write_text(text + f'[[arena]]\nroot = "{second}"\n')
        proc.send_signal(signal.SIGHUP)
        wait_running(second, proc)
        step = second / "inbox" / "b" / "0"
        step.mkdir(parents=True)
        save_renamed(step / "x.npy", np.array([1.0, 0.0]))
        wait_ingested(second, "b", 1, proc)
        cfg.write_text(text.replace(str(arena_root), str(second)))  # only the second now
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: read_status(arena_root)["running"] is False, 10, "release", proc)
        assert read_status(second)["running"]
        other = daemons.start("--arena", str(arena_root), "--results", str(results), log="o.log")
        wait_running(arena_root, other)  # the released arena can be taken by another daemon
        assert proc.poll() is None
    finally:
        import shutil

        shutil.rmtree(second, ignore_errors=True)


def test_results_change_keeps_the_running_averages(daemons, tmp_path, arena_root):
    """Checkpoints are keyed by the arena, not the results directory: a restart with
    another ``--results`` and a SIGHUP that changes ``results`` both carry the averages."""
    rng = np.random.default_rng(21)
    cfg = write_config(tmp_path / "d.toml", arena_root, tmp_path / "a")
    proc = daemons.start("--config", str(cfg))
    wait_running(arena_root, proc)
    step = arena_root / "inbox" / "moving" / "0"
    step.mkdir(parents=True)
    states = [random_psi(rng, 4) for _ in range(5)]
    for i, psi in enumerate(states[:3]):
        save_renamed(step / f"a{i}.npy", psi)
    wait_ingested(arena_root, "moving", 3, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    write_config(cfg, arena_root, tmp_path / "b")  # restart elsewhere
    proc = daemons.start("--config", str(cfg), log="b.log")
    wait_running(arena_root, proc)
    save_renamed(step / "b0.npy", states[3])
    wait_ingested(arena_root, "moving", 4, proc)
    write_config(cfg, arena_root, tmp_path / "c")  # and change it while running
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: read_status(arena_root)["reloads"]["ok"] == 1, 5, "the reload", proc)
    save_renamed(step / "c0.npy", states[4])
    (step.parent / "DONE").touch()
    wait_for(lambda: (tmp_path / "c" / "moving.npz").exists(), 10, "the result in c", proc)
    res = result(tmp_path / "c", "moving")
    assert res["counts"].tolist() == [5]
    assert json.loads(str(res["meta"]))["complete"] is True
    expected = np.mean([np.outer(p, p.conj()) for p in states], axis=0)
    assert np.abs(res["rho"][0] - expected).max() < 1e-12
    assert not (tmp_path / "b" / "moving.npz").exists()
    assert list((tmp_path / "state").iterdir())  # checkpoints live under $XDG_STATE_HOME
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_status_reader_at_start_never_stops_a_daemon(daemons, tmp_path, arena_root):
    """A shared flock held for an instant (an older `noisefs status`) when a daemon starts:
    the daemon retries and starts. A lock held for good by something that is not a live
    daemon named in the file: exit 3 after the retry, naming no stale pid. And
    ``read_status`` takes no lock itself."""
    import fcntl
    import threading

    arena_root.mkdir(mode=0o700)
    lock = arena_root / "daemon.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(f"{dead.pid}\n")  # a pid that no longer runs
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # not a daemon: a flock, no OFD lock
        assert read_status(arena_root)["running"] is False  # probed, nothing taken
        busy = subprocess.run(
            [sys.executable, "-m", "noisefs", "daemon", "--arena", str(arena_root)],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")},
        )
        assert busy.returncode == 3, busy.stderr
        assert f"pid {dead.pid}" not in busy.stderr
        assert "another noisefs daemon" in busy.stderr
        fcntl.flock(fd, fcntl.LOCK_SH)  # a reader's shared lock, released in 0.4 s
        threading.Timer(0.4, fcntl.flock, (fd, fcntl.LOCK_UN)).start()
        cfg = write_config(tmp_path / "d.toml", arena_root, tmp_path / "results")
        proc = daemons.start("--config", str(cfg))
        status = wait_running(arena_root, proc)
        assert status["pid"] == proc.pid
    finally:
        os.close(fd)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_failed_reloads_leak_no_fd_and_no_thread(daemons, tmp_path, arena_root):
    """A reload refused after a new arena was opened (the next one is busy), and one whose
    new inbox fails partway (its state directory cannot be made): each closes all it
    opened, checkpoint thread included."""
    import fcntl
    import hashlib

    new, busy, broken = (arena_root.with_name(f"{arena_root.name}-{x}") for x in "abc")
    try:
        busy.mkdir(mode=0o700)
        lock_fd = os.open(busy / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock_fd, fcntl.LOCK_EX)  # another daemon holds it
        tag = hashlib.sha256(str(broken).encode()).hexdigest()[:8]
        state = tmp_path / "state" / "noisefs" / "daemon"
        state.mkdir(parents=True)
        (state / f"{broken.name}-{tag}").write_text("a file, not a directory")
        cfg = write_config(tmp_path / "d.toml", arena_root, tmp_path / "results")
        base_text = cfg.read_text()
        proc = daemons.start("--config", str(cfg))
        wait_running(arena_root, proc)

        def usage():
            fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            return fds, len(os.listdir(f"/proc/{proc.pid}/task"))

        before = min(usage() for _ in range(5))
        for n, extra in enumerate([(new, busy), (new, busy), (broken,), (broken,)], 1):
            cfg.write_text(base_text + "".join(f'[[arena]]\nroot = "{r}"\n' for r in extra))
            proc.send_signal(signal.SIGHUP)
            wait_for(
                lambda n=n: read_status(arena_root)["reloads"]["error"] == n, 10, "refusal", proc
            )
        assert "reload refused" in log_text(proc)
        wait_for(lambda: usage()[0] <= before[0], 3, f"fds back to {before}: {usage()}", proc)
        assert usage()[1] <= before[1], (usage(), before)
        assert read_status(new)["running"] is False  # released again
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        os.close(lock_fd)
    finally:
        import shutil

        for root in (new, busy, broken):
            shutil.rmtree(root, ignore_errors=True)
