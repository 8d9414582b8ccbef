"""Hostile ``.npy`` files in the inbox: whatever numpy's header parser raises about them
(``tokenize.TokenError``, ``RecursionError``, ``MemoryError``, ...), each is moved to
``rejected/`` with a log line and the daemon goes on folding the next valid file."""

from __future__ import annotations

import io
import os
import signal
import struct
import time

import numpy as np
import pytest

from noisefs.daemon import npyfile
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

DICT_START = b"{'descr': '<c16', 'fortran_order': False, 'shape': ("


def _v1(header: bytes, data: bytes = b"") -> bytes:
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def _v2(header: bytes, data: bytes = b"", length: int | None = None) -> bytes:
    header += b"\n"
    size = len(header) if length is None else length
    return b"\x93NUMPY\x02\x00" + struct.pack("<I", size) + header + data


def _npy(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, **kw)
    return buf.getvalue()


def _crafted() -> dict[str, tuple[bytes, str]]:
    """name -> (file contents, the reason it is rejected for)."""
    psi = np.full(8, 8**-0.5, complex)
    good = _npy(psi)
    data = psi.tobytes()
    return {
        # the header is a list, not a dict literal
        "list.npy": (_v1(b"[1, 2, 3]", data), "malformed"),
        # an unterminated string in the header: tokenize.TokenError in numpy's parser
        "token.npy": (_v1(DICT_START + b"8,), 'x': '''oops", data), "malformed"),
        # an unterminated bracket: tokenize.TokenError too
        "bracket.npy": (_v1(DICT_START + b"8,", data), "malformed"),
        # a ~400 KB header of additions: RecursionError while it is parsed
        "deep.npy": (_v2(DICT_START + b"1+" * 200_000 + b"7,)}", data), "malformed"),
        # a ~200 KB header of unary minus signs: MemoryError from the parser
        "unary.npy": (_v2(DICT_START + b"-" * 200_000 + b"8,)}", data), "malformed"),
        # a header length of 4 GiB
        "huge_header.npy": (_v2(b"{}", data, length=0xFFFF_FFF0), "malformed"),
        # a shape that lies: more data than it says, a negative size, less data
        "long.npy": (_v1(DICT_START + b"2,), }", data), "size_mismatch"),
        "negative.npy": (_v1(DICT_START + b"-8,), }", data), "size_mismatch"),
        "short.npy": (_v1(DICT_START + b"64,), }", data), "truncated"),
        "object.npy": (
            _npy(np.array([{"a": 1}, None], dtype=object), allow_pickle=True),
            "object_dtype",
        ),
        "truncated.npy": (good[:-40], "truncated"),
    }


@pytest.fixture
def daemons(tmp_path):
    yield from daemons_fixture(tmp_path)


@pytest.mark.parametrize("name", ["token.npy", "bracket.npy", "deep.npy", "unary.npy"])
def test_header_parser_failures_are_malformed(tmp_path, name):
    """What numpy's header reader raises beyond ValueError is a verdict, not a crash."""
    contents, reason = _crafted()[name]
    header = contents[: len(contents) - 128]  # the data is never needed to judge
    assert npyfile.parse_header(header) == ("reject", reason, None)
    (tmp_path / name).write_bytes(contents)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        p = npyfile.probe(fd, name)
        assert (p.verdict, p.reason, p.fd) == ("reject", reason, None)
    finally:
        os.close(fd)


def test_hostile_files_rejected_by_a_running_daemon(daemons, tmp_path, arena_root):
    cfg = write_config(tmp_path / "d.toml", arena_root, tmp_path / "results")
    proc = daemons.start("--config", str(cfg))
    wait_running(arena_root, proc)
    rng = np.random.default_rng(14)
    step = arena_root / "inbox" / "hostile" / "3"
    step.mkdir(parents=True)
    crafted = _crafted()
    for name, (contents, _) in crafted.items():
        tmp = step / f".{name}.tmp"
        tmp.write_bytes(contents)
        os.rename(tmp, step / name)
    expected: dict[str, int] = {}
    for _, reason in crafted.values():
        expected[reason] = expected.get(reason, 0) + 1

    def all_rejected():
        s = read_status(arena_root)
        return s if s["counters"]["rejected"] == expected else None

    wait_for(all_rejected, 20, f"rejections {expected}", proc)
    rejected = arena_root / "inbox" / "hostile" / "rejected"
    assert sorted(p.name for p in rejected.iterdir()) == sorted(f"3-{n}" for n in crafted)
    for name, (contents, _) in crafted.items():
        assert (rejected / f"3-{name}").read_bytes() == contents  # moved, never altered
    text = log_text(proc)
    for name, (_, reason) in crafted.items():
        assert f"hostile/3/{name}: {reason} (moved to" in text
    assert "Traceback" not in text
    # the daemon goes on: the next valid file is folded
    psi = random_psi(rng, 8)
    save_renamed(step / "good.npy", psi)
    wait_ingested(arena_root, "hostile", 1, proc)
    (step.parent / "DONE").touch()
    wait_for(lambda: (tmp_path / "results" / "hostile.npz").exists(), 10, "the result", proc)
    res = result(tmp_path / "results", "hostile")
    assert res["steps"].tolist() == [3] and res["counts"].tolist() == [1]
    assert np.abs(res["rho"][0] - np.outer(psi, psi.conj())).max() < 1e-12
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_an_unforeseen_error_rejects_the_file_and_ingest_goes_on(tmp_path, arena_root, monkeypatch):
    """Whatever reading a file raises (here a RuntimeError from the reader, as from a
    numpy surprise), the real Inbox rejects it (``error``, logged with its traceback)
    from where it lies, claimed or not, and folds the next file."""
    from noisefs.arena.paths import open_private_dir
    from noisefs.daemon.config import parse_config
    from noisefs.daemon.held import new_counters
    from noisefs.daemon.ingest import Inbox

    cfg = parse_config({"arena": [{"root": str(arena_root), "results": str(tmp_path)}]})
    root_fd = open_private_dir(arena_root, create=True)
    counters = new_counters()
    inbox = Inbox(root_fd, arena_root, cfg.arenas[0], tmp_path / "state", counters, cfg)
    real_read = npyfile.Reader.read

    def read(self, p):
        if p.shape == (4,):
            raise RuntimeError("a numpy surprise")
        return real_read(self, p)

    monkeypatch.setattr(npyfile.Reader, "read", read)
    try:
        step = arena_root / "inbox" / "r" / "0"
        step.mkdir(parents=True)
        save_renamed(step / "bad.npy", np.full(4, 0.5, complex))
        inbox.scan()
        deadline = time.monotonic() + 10
        while counters["rejected"].get("error") != 1 and time.monotonic() < deadline:
            inbox.process()
        assert counters["rejected"] == {"error": 1}
        assert (arena_root / "inbox" / "r" / "rejected" / "0-bad.npy").exists()
        assert not list((arena_root / "daemon" / "claimed").iterdir())
        psi = np.full(8, 8**-0.5, complex)
        save_renamed(step / "good.npy", psi)
        inbox.scan()
        while counters["ingested_files"] != 1 and time.monotonic() < deadline:
            inbox.process()
        assert counters["ingested_files"] == 1 and inbox.runs["r"].ingested == 1
    finally:
        inbox.close()
        os.close(root_fd)
