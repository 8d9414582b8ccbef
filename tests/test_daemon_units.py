"""In-process checks of the daemon's parts: safe probing, config validation, the watcher's
liveness check, missed-event counting, systemd notify and journald log lines."""

from __future__ import annotations

import io
import logging
import os
import queue
import socket
import time

import numpy as np
import pytest

from noisefs import faults
from noisefs.daemon import npyfile
from noisefs.daemon.config import parse_config
from noisefs.errors import InputError


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_probe_verdicts(tmp_path):
    d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        data = _npy(np.ones(4, complex) / 2)
        (tmp_path / "ok.npy").write_bytes(data)
        p = npyfile.probe(d, "ok.npy")
        assert (p.verdict, p.shape, p.dtype) == ("ok", (4,), np.dtype(complex))
        arr = npyfile.Reader().read(p)
        assert np.allclose(arr, 0.5)
        p.close()
        (tmp_path / "half.npy").write_bytes(data[:-8])
        assert npyfile.probe(d, "half.npy").verdict == "wait"
        (tmp_path / "head.npy").write_bytes(data[:20])
        assert npyfile.probe(d, "head.npy").reason == "incomplete"
        (tmp_path / "long.npy").write_bytes(data + b"x")
        assert npyfile.probe(d, "long.npy").reason == "size_mismatch"
        with open(tmp_path / "open.npy", "wb") as writer:  # complete, but still open
            writer.write(data)
            writer.flush()
            assert npyfile.probe(d, "open.npy").reason == "open_for_writing"
        assert npyfile.probe(d, "open.npy").verdict == "ok"
        assert npyfile.probe(d, "missing.npy").verdict == "gone"
        os.symlink("ok.npy", tmp_path / "sym.npy")
        assert npyfile.probe(d, "sym.npy").reason == "symlink"
    finally:
        os.close(d)


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"arena": [{"root": "/x", "quota": "lots"}]}, "quota"),
        ({"arena": [{"root": "/x", "colour": 1}]}, "unknown key(s) colour"),
        ({"arena": [{"root": "/x"}], "low_watermark": 0.9}, "must be below"),
        ({"arena": [{"root": "/x"}, {"root": "/x"}]}, "listed twice"),
        ({"arena": [{}]}, "'root' is required"),
        ({"arena": [{"root": "/x"}], "settle_s": -1}, "settle_s"),
        ({"arena": [{"root": "/x"}], "metrics_port": 70000}, "metrics_port"),
    ],
)
def test_config_refusals(doc, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(doc, "t.toml")


@pytest.mark.parametrize(
    "contents, message",
    [
        (b'results = "/tmp/r\xff"\n', "not UTF-8 text (byte 0xff on line 1)"),
        (b'log_level = "info"\n\xc3\x28 = 1\n', "not UTF-8 text (byte 0xc3 on line 2)"),
        (b"a = " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
        (b"a = " + b"{b = " * 5000 + b"1" + b"}" * 5000 + b"\n", "nested too deeply"),
    ],
)
def test_config_file_that_cannot_be_read_is_one_input_error(tmp_path, contents, message):
    """Invalid UTF-8 (UnicodeDecodeError) and nesting deeper than tomllib follows
    (RecursionError) are input errors of one line naming the file."""
    from noisefs.daemon.config import load_config

    path = tmp_path / "d.toml"
    path.write_bytes(contents)
    with pytest.raises(InputError) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(f"config {path}: ") and message in text and "\n" not in text


def test_command_line_wins_and_adds_arenas():
    cfg = parse_config(
        {"arena": [{"root": "/a", "quota": "1GiB"}]},
        overrides={"quota": "2GiB", "arenas": ["/b", "/a"]},
    )
    assert [str(a.root) for a in cfg.arenas] == ["/a", "/b"]
    assert all(a.quota_bytes == 2 << 30 for a in cfg.arenas)


def test_watcher_restarts_a_dead_observer(tmp_path):
    from noisefs.daemon.watch import Watcher

    hints: queue.SimpleQueue = queue.SimpleQueue()
    w = Watcher(hints)
    marker = tmp_path / "observer"
    watched = tmp_path / "inbox"
    watched.mkdir()
    try:
        w.set_paths({"k": watched})
        assert w.alive()
        marker.write_text("kill")  # the observer's emitters die (a watch limit hit)
        with faults.armed("daemon.observer-dies", value=str(marker)):
            w.check()
        assert marker.read_text() == "dead"
        marker.unlink()
        assert not w.alive()
        w.check()
        assert w.alive() and w.restarts == 1
        w.pause()
        w.check()
        assert not w.alive() and w.restarts == 1  # paused on purpose: not restarted
        w.resume()
        assert w.alive()
        (watched / "x.npy").write_bytes(b"1")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if hints.get(timeout=0.2)[2].endswith("x.npy"):
                    break
            except queue.Empty:
                pass
        else:
            pytest.fail("no event after the restart")
    finally:
        w.stop()


def test_rescan_counts_what_events_missed(tmp_path, arena_root):
    from noisefs.arena.paths import open_private_dir
    from noisefs.daemon.ingest import Inbox

    cfg = parse_config({"arena": [{"root": str(arena_root), "results": str(tmp_path)}]})
    root_fd = open_private_dir(arena_root, create=True)
    counters = {"missed_events": 0, "rejected": {}}
    inbox = Inbox(root_fd, arena_root, cfg.arenas[0], tmp_path / "state", counters, cfg)
    try:
        step = arena_root / "inbox" / "r" / "0"
        step.mkdir(parents=True)
        for name in ("old.npy", "new.npy"):
            (step / name).write_bytes(b"")
        past = time.time() - 60
        os.utime(step / "old.npy", (past, past))
        inbox.scan(count_missed=True)
        assert counters["missed_events"] == 1  # the fresh one may still have its event coming
        assert len(inbox.todo) == 2
        inbox.scan(count_missed=True)
        assert counters["missed_events"] == 1  # already known: not missed twice
    finally:
        inbox.close()
        os.close(root_fd)


def test_notify_datagrams(tmp_path, monkeypatch):
    from noisefs.daemon.notify import Notifier

    path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "10000000")
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        n = Notifier()
        assert n.watchdog_interval_s == 5.0
        n.ready("up")
        assert sock.recv(100) == b"READY=1\nSTATUS=up"
        n.reloading()
        msg = sock.recv(100).decode().split("\n")
        assert msg[0] == "RELOADING=1" and msg[1].startswith("MONOTONIC_USEC=")
        n.watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not Notifier().send("READY=1")


def test_journal_formatter():
    from noisefs.daemon.logs import JournalFormatter

    fmt = JournalFormatter("%(message)s")
    record = logging.LogRecord("noisefs.daemon", logging.WARNING, "", 0, "a\nb", None, None)
    assert fmt.format(record) == "<4>a\n  b"


def test_timer_table_runs_what_is_due_in_order():
    from noisefs.daemon.timers import Periodic, run_due

    ran: list[str] = []
    every = {"a": 1.0}

    def action(name):
        return lambda now, forced: ran.append(f"{name}{'!' if forced else ''}")

    timers = [
        Periodic("a", lambda: every["a"], action("a")),
        Periodic("tick", lambda: 0.0, action("tick")),
        Periodic("off", lambda: None, action("off")),
    ]
    run_due(timers, 100.0, forced=True)
    assert ran == ["a!", "tick!"]  # a forced tick runs all but what is switched off
    run_due(timers, 100.5)
    assert ran[2:] == ["tick"]  # a is not due yet
    every["a"] = 0.25  # intervals are read at each tick (a reload applies at once)
    run_due(timers, 100.5)
    assert ran[3:] == ["a", "tick"]
