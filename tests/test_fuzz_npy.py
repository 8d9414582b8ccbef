"""Fuzzing the daemon's inbox: foreign ``.npy`` files through its probe, read and checks
(``npyfile.probe``, ``checks.shape_problem``, ``npyfile.Reader.read``,
``checks.array_problem``: what ``Ingest._take`` and ``_fold`` run on every file).

Files are real arrays of many dtypes and shapes written by numpy, then lied about (headers
naming other shapes, dtypes, lengths and versions; headers that are no dict literal, nest
deeply or never end), truncated, extended, flipped, or made links, FIFOs and directories.
The rule: the path never raises and ends in ``ok``, ``wait`` or ``reject``; ``ok`` only for
a finite, normalised state whose numbers are exactly what numpy's own reader reads.
tests/fuzzing.py has the on-demand command."""

from __future__ import annotations

import io
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from noisefs.daemon.checks import array_problem, shape_problem
from noisefs.daemon.npyfile import MAGIC, Reader, probe
from noisefs.daemon.runs import StepSum
from tests.fuzzing import fuzz_settings, outcome

DTYPES = ["<c16", "<c8", "<f8", "<f4", ">c16", ">f8", "<f2", "<i8", "|u1", "|b1", "<U3", "|S4",
          "|V8", "<M8[s]", "<m8[s]", "|O", "<g", "<G"]  # fmt: skip
STRUCTURED = [np.dtype([("re", "<f8"), ("im", "<f8")]), np.dtype(("<c16", (2,)))]
LIED_SHAPES = ["(2**62,)", "(4611686018427387904,)", "(2147483648, 2147483648)", "(-1,)",
               "(4, -4)", "(1e3,)", "('a',)", "()", "(4, 4, 4)", "(18446744073709551616,)",
               "(" + "9" * 400 + ",)", "(0,)", "(0, 0)", "(2, 2)", "(8,)", "[4]", "4"]  # fmt: skip
LIED_DESCRS = ["'|O'", "'<c8'", "'<f8'", "'>c16'", "[('a', '<f8')]", "'<U0'", "'|V0'", "'xyz'",
               "''", "None", "'<c16' * 2", "('<c16', (2,))", "{'names': ['a'], 'formats': ['<c16']}"]  # fmt: skip
HEADERS = ["[1, 2]", "{}", "{'descr': '<c16', 'fortran_order': False, 'shape': (4,), 'x': 1}",
           "{'descr': '<c16", "{'descr': '<c16', 'fortran_order': False, 'shape': (4,)",
           "(" * 5000 + ")" * 5000, "[" * 100_000, "__import__('os').system('true')",
           "{'descr': '<c16', 'fortran_order': False, 'shape': (4,)} " + "#" * 70_000,
           "\x00" * 50, "{'descr': '<c16', 'fortran_order': 0, 'shape': (4,), }", "'" * 3,
           "{'descr': '<c16', 'fortran_order': False, 'shape': (" + "(" * 3000 + ",)}"]  # fmt: skip


def state(d: int, matrix: bool, dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    psi = rng.normal(size=d) + 1j * rng.normal(size=d)
    psi /= np.linalg.norm(psi)
    arr = np.outer(psi, psi.conj()) if matrix else psi
    if dtype.kind == "f":  # a real state: a diagonal density matrix or a basis vector
        arr = np.diag(np.abs(psi) ** 2) if matrix else np.eye(d)[0]
    return arr


@st.composite
def arrays(draw) -> np.ndarray:
    kind = draw(st.integers(0, 9))  # half of them the dtypes a state is sent in
    names = ["<c16", "<c8", "<f8", ">c16"] if kind < 5 else DTYPES
    dtype = np.dtype(draw(st.sampled_from(names)) if kind else draw(st.sampled_from(STRUCTURED)))
    if draw(st.booleans()):
        d, matrix = draw(st.sampled_from([1, 2, 4, 8, 16, 32, 256, 512])), draw(st.booleans())
        shape = (d, d) if matrix else (d,)
    else:
        shape = draw(st.sampled_from([(), (0,), (3,), (2, 3), (4, 4, 1), (2, 2, 2), (1, 1), (4, 2)]))  # fmt: skip
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    content = draw(st.sampled_from(["state"] * 5 + ["random", "nan", "inf", "zeros", "huge"]))
    if content == "state" and len(shape) in (1, 2) and (len(shape) == 1 or shape[0] == shape[1]) and shape[0]:  # fmt: skip
        values = state(shape[0], len(shape) == 2, dtype, rng)
    else:
        values = rng.normal(size=shape) + 1j * rng.normal(size=shape)
        values = {"nan": values * np.nan, "inf": values * np.inf, "zeros": 0 * values, "huge": values * 1e300}.get(content, values)  # fmt: skip
    with np.errstate(all="ignore"):
        if dtype.kind == "O":
            arr = np.empty(shape, object)
            arr[...] = 1
        elif dtype.fields is not None or dtype.subdtype is not None or dtype.kind in "USVMm":
            arr = np.zeros(shape, dtype)
        elif dtype.kind in "fiub":
            arr = np.real(values).astype(dtype)
        else:
            arr = values.astype(dtype)
    return np.asfortranarray(arr) if draw(st.booleans()) else arr


def npy(arr: np.ndarray, version: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version, allow_pickle=True)
    return buf.getvalue()


def rebuilt(data: bytes, header: bytes, version: int = -1, length: int | None = None) -> bytes:
    """``data`` with its header replaced (its length field set to ``length`` when given)."""
    if len(data) < 12 or data[:6] != MAGIC or data[6] not in (1, 2, 3):
        data = MAGIC + b"\x01\x00\x00\x00"  # an earlier mutation broke it: a bare header
    major = data[6] if version < 0 else version
    start = 10 if data[6] == 1 else 12
    old_len = int.from_bytes(data[8:start], "little")
    body = data[start + old_len :]
    size = len(header) if length is None else length
    width = 2 if major == 1 else 4
    field = (size % (1 << (8 * width))).to_bytes(width, "little")
    return MAGIC + bytes([major, 0]) + field + header + body


@st.composite
def npy_files(draw) -> bytes:
    arr = draw(arrays())
    data = npy(arr, draw(st.sampled_from([(1, 0), (2, 0), (3, 0)])))
    start = 10 if data[6] == 1 else 12
    header = data[start : start + int.from_bytes(data[8:start], "little")].decode("latin-1")
    kinds = ["none", "shape", "descr", "fortran", "header", "length", "version", "magic",
             "truncate", "append", "flip"]  # fmt: skip
    for kind in draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=2)):
        event(f"mutation: {kind}")
        if kind in ("shape", "descr") and not ("'shape': " in header and ", 'fortran_order'" in header):  # fmt: skip
            kind = "header"  # an earlier mutation replaced it all
        if kind == "shape":
            lie = draw(st.sampled_from(LIED_SHAPES))
            header = header.replace(
                header[header.index("'shape': ") + 9 : header.index("}")], lie + ", "
            )
        elif kind == "descr":
            end = header.index(", 'fortran_order'")
            header = "{'descr': " + draw(st.sampled_from(LIED_DESCRS)) + header[end:]
        elif kind == "fortran":
            header = header.replace("False", "@").replace("True", "False").replace("@", "True")
        elif kind == "header":
            header = draw(st.sampled_from(HEADERS) | st.text(max_size=40))
        if kind in ("shape", "descr", "fortran", "header"):
            data = rebuilt(data, header.encode("latin-1", errors="replace"))
        elif kind == "length":
            lengths = [0, 1, 9, 2**16 - 1, 2**20, 2**20 + 1, 2**31, 2**32 - 1]
            data = rebuilt(data, header.encode("latin-1", errors="replace"), length=draw(st.sampled_from(lengths)))  # fmt: skip
        elif kind == "version":
            data = data[:6] + bytes([draw(st.sampled_from([0, 1, 2, 3, 4, 255]))]) + data[7:]
        elif kind == "magic":
            data = draw(st.sampled_from([b"\x93NUMPZ", b"", b"\x93NUM", b"PK\x03\x04"])) + data[6:]
        elif kind == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif kind == "append":
            data = data + draw(st.binary(min_size=1, max_size=64))
        elif kind == "flip":
            at = draw(st.integers(0, max(len(data) - 1, 0)))
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    return data


@pytest.fixture(scope="module")
def inbox():
    """A private step directory under /dev/shm (the inbox lives in the arena's tmpfs)."""
    root = Path("/dev/shm") / f"noisefs-fuzz-inbox-{uuid.uuid4().hex[:10]}"
    root.mkdir(mode=0o700)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    yield root, fd
    os.close(fd)
    shutil.rmtree(root, ignore_errors=True)


def take(dir_fd: int, name: str, run_qubits: int | None) -> tuple[str, str, np.ndarray | None]:
    """What the daemon does with one inbox entry, short of claiming it and folding it:
    (verdict, reason, a copy of what would be folded)."""
    p = probe(dir_fd, name)
    try:
        if p.verdict != "ok":
            return p.verdict, p.reason, None
        reason = shape_problem(p.shape, run_qubits)
        if reason:
            return "reject", reason, None
        reader = Reader()
        try:
            arr = reader.read(p)
        except (OSError, EOFError):  # as Ingest._read_and_fold: a file that shrank
            return "reject", "truncated", None
        try:
            reason = array_problem(arr)
            return ("reject", reason, None) if reason else ("ok", "", np.array(arr))
        finally:
            del arr
            reader.release()
    finally:
        p.close()


def check_taken(path: Path, verdict: str, reason: str, arr: np.ndarray | None) -> None:
    assert verdict in ("ok", "wait", "reject"), (verdict, reason)
    event(f"{verdict}: {reason}" if reason else verdict)
    if verdict != "ok":
        return
    with open(path, "rb") as handle:  # numpy's own reader, pickles refused
        version = np.lib.format.read_magic(handle)
        handle.seek(0)
        reference = np.lib.format.read_array(handle, allow_pickle=False, max_header_size=1 << 20)
        assert handle.read() == b"", "an accepted file holds more than its array"
    assert version in ((1, 0), (2, 0), (3, 0))
    assert arr.dtype == reference.dtype and arr.dtype.kind in "cf" and arr.dtype.fields is None
    assert arr.shape == reference.shape and np.array_equal(arr, reference)
    d = arr.shape[0]
    assert arr.ndim in (1, 2) and d >= 2 and d & (d - 1) == 0 and arr.shape in ((d,), (d, d))
    norm = np.vdot(arr, arr).real if arr.ndim == 1 else np.trace(arr).real
    assert np.all(np.isfinite(arr)) and abs(norm - 1) <= 1e-4
    sums = StepSum(d.bit_length() - 1)  # folded as the daemon folds it: the state it is
    (sums.add_psi if arr.ndim == 1 else sums.add_rho)(arr)
    exact = arr.astype(np.clongdouble)
    rho = np.outer(exact, exact.conj()) if arr.ndim == 1 else exact
    np.testing.assert_allclose(sums.rho(), rho.astype(complex), atol=1e-6)


def _write(root: Path, name: str, data: bytes, entry: str) -> None:
    path = root / name
    if entry == "fifo":
        os.mkfifo(path, 0o600)
    elif entry == "directory":
        path.mkdir()
    elif entry == "symlink":
        (root / f"{name}.target").write_bytes(data)
        path.symlink_to(f"{name}.target")
    elif entry == "dangling":
        path.symlink_to("/nonexistent/target.npy")
    else:
        path.write_bytes(data)
        if entry == "hardlink":
            os.link(path, root / f"{name}.link")


@fuzz_settings(ci=200)
@given(
    data=npy_files(),
    entry=st.sampled_from(["file"] * 12 + ["symlink", "hardlink", "fifo", "directory", "dangling"]),
    run_qubits=st.sampled_from([None, None, 1, 2, 3]),
)
# the crash: a header that is no dict literal (tokenize.TokenError inside numpy)
@example(data=MAGIC + b"\x01\x00\x10\x00{'descr': '<c16\n", entry="file", run_qubits=None)
@example(data=MAGIC + b"\x02\x00\xff\xff\xff\xff{", entry="file", run_qubits=None)
def test_inbox_files_are_taken_waited_for_or_rejected_never_raise(inbox, data, entry, run_qubits):
    root, fd = inbox
    name = f"{uuid.uuid4().hex[:12]}.npy"
    _write(root, name, data, entry)
    try:
        (verdict, reason, arr), _ = outcome(take, fd, name, run_qubits, expect=())
        check_taken(root / name, verdict, reason, arr)
        if entry != "file":
            assert verdict == "reject", (entry, reason)
    finally:
        for leftover in root.iterdir():
            if leftover.is_dir() and not leftover.is_symlink():
                leftover.rmdir()
            else:
                leftover.unlink()


@fuzz_settings(ci=50)
@given(arr=arrays(), version=st.sampled_from([(1, 0), (2, 0), (3, 0)]))
def test_what_numpy_writes_is_judged_like_numpy_reads_it(inbox, arr, version):
    """Unmutated files: a well-formed state is taken (no false rejection), nothing else is."""
    root, fd = inbox
    name = f"{uuid.uuid4().hex[:12]}.npy"
    (root / name).write_bytes(npy(arr, version))
    try:
        (verdict, reason, got), _ = outcome(take, fd, name, None, expect=())
        check_taken(root / name, verdict, reason, got)
        d = arr.shape[0] if arr.ndim else 0
        shaped = arr.ndim in (1, 2) and arr.shape in ((d,), (d, d)) and d >= 2 and d & (d - 1) == 0
        numbers = arr.dtype.kind in "cf" and arr.dtype.fields is None
        if not (shaped and numbers):
            assert verdict == "reject", (reason, arr.dtype, arr.shape)
            return
        wide = arr.astype(np.clongdouble)
        error = abs((np.vdot(wide, wide) if arr.ndim == 1 else np.trace(wide)).real - 1)
        if not np.all(np.isfinite(wide)) or error > 1e-3:
            assert verdict == "reject", (reason, arr.dtype, arr.shape, error)
        elif error <= 1e-7 and arr.dtype.itemsize >= 4 * (1 + (arr.dtype.kind == "c")):
            assert verdict == "ok", (reason, arr.dtype, arr.shape, error)  # no false rejection
    finally:
        (root / name).unlink()
