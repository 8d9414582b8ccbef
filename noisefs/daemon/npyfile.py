"""Probing and reading foreign ``.npy`` files safely: nothing followed, nothing unpickled.

A probe opens a directory entry relative to a directory fd with ``O_NOFOLLOW |
O_NONBLOCK`` (a symlink is never followed, a FIFO never blocks), checks that it is a
regular file with one link, that nobody holds it open for writing (a read lease,
``F_SETLEASE``, is refused while a writer has it open), and that its size is exactly what
its ``.npy`` header implies. The header is parsed by numpy's own header reader (a literal,
never ``eval``/pickle; a header it cannot read is ``malformed``, whatever it raised) and
object dtypes are refused, so the data is read as raw numbers.
"""

from __future__ import annotations

import errno
import fcntl
import io
import math
import mmap
import os
import stat
from dataclasses import dataclass

import numpy as np

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)
F_RDLCK = getattr(fcntl, "F_RDLCK", 0)
F_UNLCK = getattr(fcntl, "F_UNLCK", 2)
MAGIC = b"\x93NUMPY"
HEADER_PROBE = 4096
ACCEPTED_KINDS = "cf"  # complex amplitudes / matrices; real density matrices


@dataclass
class Probe:
    """What a probe found. ``verdict`` is ``ok``, ``wait`` (retry later), ``reject`` or
    ``gone``; for ``ok`` the open ``fd`` (caller closes it) and the array layout are set."""

    verdict: str
    reason: str = ""
    fd: int | None = None
    st: os.stat_result | None = None
    dtype: np.dtype | None = None
    shape: tuple[int, ...] = ()
    fortran: bool = False
    offset: int = 0
    leased: bool = False  # a read lease is held while the fd is open: no writer can race

    def close(self) -> None:
        """Close the probe's fd, if any."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


_leases_work = True


def take_lease(fd: int) -> str:
    """Take a read lease on ``fd``: ``held`` (nobody has the file open for writing, and
    nobody can open it for writing or truncate it until the fd closes without waiting for
    us), ``busy`` (a writer has it open) or ``none`` (leases unavailable: disabled, or not
    our file; the size check still holds)."""
    global _leases_work
    if not _leases_work:
        return "none"
    try:
        fcntl.fcntl(fd, F_SETLEASE, F_RDLCK)
    except OSError as exc:
        if exc.errno == errno.EAGAIN:
            return "busy"
        if exc.errno in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            _leases_work = False
        return "none"
    return "held"


_parsed: dict[bytes, tuple] = {}  # header bytes -> layout: a run's files share one header


def parse_header(head: bytes) -> tuple[str, str, tuple | None]:
    """(``verdict``, ``reason``, (dtype, shape, fortran, offset)) for the first bytes of a
    file; ``wait`` while the header may still be being written."""
    n = len(head)
    if head[: min(n, 6)] != MAGIC[: min(n, 6)]:
        return "reject", "not_npy", None
    if n < 10:
        return "wait", "incomplete", None
    major = head[6]
    if major == 1:
        hlen, start = int.from_bytes(head[8:10], "little"), 10
    elif major in (2, 3):
        if n < 12:
            return "wait", "incomplete", None
        hlen, start = int.from_bytes(head[8:12], "little"), 12
    else:
        return "reject", "malformed", None
    if n < start + hlen:
        return ("wait", "incomplete", None) if hlen <= 1 << 20 else ("reject", "malformed", None)
    cached = _parsed.get(head[: start + hlen])
    if cached is not None:
        return cached
    try:
        fp = io.BytesIO(head[: start + hlen])
        version = np.lib.format.read_magic(fp)
        reader = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = reader(fp, max_header_size=1 << 20)
    except Exception:  # noqa: BLE001 - a foreign header: whatever the parser raises
        # ValueError and SyntaxError mostly, but also tokenize.TokenError (an unterminated
        # string or bracket), RecursionError and MemoryError (a deeply nested expression)
        return "reject", "malformed", None
    if dtype.hasobject:
        return "reject", "object_dtype", None
    found = ("ok", "", (dtype, tuple(int(s) for s in shape), bool(fortran), start + hlen))
    if len(_parsed) >= 256:
        _parsed.clear()
    _parsed[head[: start + hlen]] = found
    return found


def probe(dir_fd: int, name: str) -> Probe:
    """Look at ``name`` in ``dir_fd`` without following anything; see the module docstring."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return Probe("gone")
    if stat.S_ISLNK(st.st_mode):
        return Probe("reject", "symlink", st=st)
    if not stat.S_ISREG(st.st_mode):
        return Probe("reject", "not_regular", st=st)
    if st.st_nlink > 1:
        return Probe("reject", "hard_link", st=st)
    try:
        fd = os.open(name, OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return Probe("gone")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Probe("reject", "symlink", st=st)
        raise
    result = Probe("wait", fd=fd)
    try:
        fst = os.fstat(fd)
        result.st = fst
        if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(fst.st_mode):
            result.reason = "replaced"
            return result
        if fst.st_nlink > 1:
            result.verdict, result.reason = "reject", "hard_link"
            return result
        lease = take_lease(fd)
        if lease == "busy":
            result.reason = "open_for_writing"
            return result
        result.leased = lease == "held"
        head = os.pread(fd, HEADER_PROBE, 0)
        if len(head) >= 12 and head[:6] == MAGIC:
            want = (10 if head[6] == 1 else 12) + int.from_bytes(
                head[8:10] if head[6] == 1 else head[8:12], "little"
            )
            if len(head) < want <= (1 << 20) + 12:
                head = os.pread(fd, want, 0)
        verdict, reason, layout = parse_header(head)
        result.verdict, result.reason = verdict, reason
        if layout is None:
            return result
        dtype, shape, fortran, offset = layout
        expected = offset + math.prod(shape) * dtype.itemsize
        if fst.st_size < expected:
            result.verdict, result.reason = "wait", "incomplete"
        elif fst.st_size > expected:
            result.verdict, result.reason = "reject", "size_mismatch"
        elif dtype.kind not in ACCEPTED_KINDS or dtype.fields is not None:
            result.verdict, result.reason = "reject", "dtype"
        else:
            result.dtype, result.shape, result.fortran, result.offset = (
                dtype,
                shape,
                fortran,
                offset,
            )
        return result
    finally:
        if result.verdict != "ok":
            result.close()


MMAP_MIN = 1 << 20


class Reader:
    """Reads a probed file's numbers: small files into a reused buffer, large ones
    (``MMAP_MIN``) mapped, which saves a copy. Files are mapped only under a read lease,
    which holds off any writer or truncation (a truncated mapping would raise SIGBUS)."""

    def __init__(self) -> None:
        self._buf = np.empty(0, np.uint8)
        self._map: mmap.mmap | None = None

    def read(self, p: Probe) -> np.ndarray:
        """The array of an ``ok`` probe: valid until :meth:`release` or the next read
        (fold or copy it first)."""
        assert p.fd is not None and p.dtype is not None
        self.release()
        nbytes = math.prod(p.shape) * p.dtype.itemsize
        order = "F" if p.fortran else "C"
        if p.leased and nbytes >= MMAP_MIN:
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # one fault, not 4096
            self._map = mmap.mmap(p.fd, p.offset + nbytes, flags, mmap.PROT_READ)
            flat = np.frombuffer(self._map, p.dtype, math.prod(p.shape), p.offset)
            return flat.reshape(p.shape, order=order)
        if self._buf.nbytes < nbytes or self._buf.nbytes > 4 * max(nbytes, 1 << 20):
            self._buf = np.empty(max(nbytes, 1), np.uint8)
        view = memoryview(self._buf)[:nbytes]
        done = 0
        while done < nbytes:
            got = os.preadv(p.fd, [view[done:]], p.offset + done)
            if got == 0:
                raise EOFError("file shrank while it was read")
            done += got
        return self._buf[:nbytes].view(p.dtype).reshape(p.shape, order=order)

    def release(self) -> None:
        """Unmap the last large file (every view of it must be gone)."""
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a view is still alive: the mapping goes with it
                pass
            self._map = None
