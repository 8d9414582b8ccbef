"""Where arenas live and how their directories are opened safely.

Every directory is opened once with ``O_DIRECTORY | O_NOFOLLOW`` and checked (a real
directory, owned by us, mode 0700); every file operation afterwards is relative to such a
directory fd, so a symlink swapped in later is never followed. Directories we create are
0700. An existing one whose mode lets others in is refused, not tightened: a mistyped
``--arena /tmp`` must not chmod a shared directory (and ``noisefs status`` must change
nothing). Foreign-owned directories and symlinks are refused too.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import tempfile
import warnings
from pathlib import Path

from noisefs.errors import InputError, UnsafePathError

log = logging.getLogger("noisefs.arena")

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC
RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def _writable_dir(path: str) -> bool:
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def default_root() -> Path:
    """``/dev/shm/noisefs-<uid>``; else ``$XDG_RUNTIME_DIR/noisefs`` or the temp dir (warned)."""
    uid = os.geteuid()
    if _writable_dir("/dev/shm"):
        return Path(f"/dev/shm/noisefs-{uid}")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and _writable_dir(runtime):
        fallback = Path(runtime) / "noisefs"
    else:
        fallback = Path(tempfile.gettempdir()) / f"noisefs-{uid}"
    warnings.warn(
        f"/dev/shm is missing or not writable; the noisefs arena lives in {fallback} "
        "(not necessarily memory-backed)",
        RuntimeWarning,
        stacklevel=3,
    )
    return fallback


def default_spill_dir(root: str | os.PathLike | None = None) -> Path:
    """``$XDG_CACHE_HOME/noisefs/spill/<root name>-<8 hex of sha256(root)>`` (``~/.cache``)."""
    root_path = Path(root) if root is not None else default_root()
    root_path = Path(os.path.abspath(root_path))
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(str(root_path).encode()).hexdigest()[:8]
    return Path(cache) / "noisefs" / "spill" / f"{root_path.name or 'root'}-{digest}"


def validate_run(run: object) -> str:
    if not isinstance(run, str) or not RUN_NAME.fullmatch(run):
        raise InputError(
            f"bad run name {run!r}: use 1-128 characters from A-Z a-z 0-9 _ . -, not starting with '.' or '-'"
        )
    return run


def validate_index(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int,)) and not hasattr(value, "__index__"):
        raise InputError(f"{name} must be a non-negative integer, not {value!r}")
    number = int(value.__index__())  # type: ignore[union-attr]
    if number < 0 or number >= 2**63:
        raise InputError(f"{name} must be a non-negative integer, not {value!r}")
    return number


def _refuse(path: Path, why: str, todo: str, what: str = "arena") -> UnsafePathError:
    option = "--spill" if what == "spill" else "--arena"
    return UnsafePathError(f"unsafe {what} path {path}: {why}; {todo.replace('--arena', option)}")


def check_dir_fd(fd: int, path: Path, what: str = "arena") -> None:
    """Refuse a directory fd that is not a directory, foreign-owned or open to others."""
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "not a directory", "remove it or choose another --arena", what)
    if st.st_uid != os.geteuid():
        raise _refuse(
            path,
            f"owned by uid {st.st_uid}, not by you (uid {os.geteuid()})",
            "choose a directory of your own with --arena",
            what,
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_ISVTX | 0o002):  # /tmp, /dev/shm: never suggest chmod there
        raise _refuse(
            path,
            f"it is a shared directory (mode {mode:04o})",
            f"use a directory of your own inside it, e.g. --arena {path / f'noisefs-{os.geteuid()}'}",
            what,
        )
    if mode & 0o077:
        raise _refuse(
            path,
            f"mode {mode:04o} lets other users in",
            f"run 'chmod 700 {path}' to make it private, or choose another --arena",
            what,
        )


def _check_ancestors(path: Path, what: str) -> None:
    """Refuse a path that passes through another user's symbolic link (e.g. one planted in
    /dev/shm to redirect the arena); links of root's or one's own are trusted."""
    current = Path(path.anchor)
    for part in path.parts[1:-1]:
        current = current / part
        try:
            st = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            return  # missing: reported by the caller when it matters
        except OSError as exc:
            raise _refuse(
                path, f"cannot look at {current} ({exc.strerror})", "check the path", what
            ) from None
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (0, os.geteuid()):
            raise _refuse(
                path,
                f"{current} is a symbolic link owned by uid {st.st_uid}",
                "choose a path that does not go through other users' links with --arena",
                what,
            )
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode) and mode & 0o002 and not mode & stat.S_ISVTX:
            # anyone may rename what lies in it (no sticky bit, unlike /tmp and /dev/shm):
            # the directory could be swapped for another one between two runs
            raise _refuse(
                path,
                f"{current} is writable by every user without the sticky bit (mode {mode:04o})",
                "choose a path under directories that only you (or root) can change with --arena",
                what,
            )


def open_private_dir(path: str | os.PathLike, create: bool = True, what: str = "arena") -> int:
    """Open (creating 0700 when asked) a private directory; return its fd.

    Raises :class:`UnsafePathError` for a symlink (or a path through another user's
    symlink), a non-directory or a foreign owner and
    ``FileNotFoundError`` when it is missing and ``create`` is false.
    """
    path = Path(os.path.abspath(path))
    _check_ancestors(path, what)
    if create:
        try:
            if path.parent.exists() and not path.parent.is_dir():
                raise _refuse(
                    path,
                    f"cannot create it ({path.parent} is not a directory)",
                    "choose another --arena",
                    what,
                )
            if not path.parent.is_dir():
                if what != "spill":  # a mistyped --arena must not grow directories at /
                    raise _refuse(
                        path,
                        f"its directory {path.parent} does not exist",
                        "create it first or choose another --arena",
                        what,
                    )
                os.makedirs(path.parent, mode=0o700, exist_ok=True)
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            if isinstance(exc, UnsafePathError):
                raise
            raise _refuse(
                path, f"cannot create it ({exc.strerror})", "choose another --arena", what
            ) from None
    try:
        st = os.lstat(path)
    except NotADirectoryError:  # a file where a parent directory should be: missing too
        raise FileNotFoundError(errno.ENOENT, "No such directory", str(path)) from None
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "it is a symbolic link", "point --arena at a real directory", what)
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "not a directory", "remove it or choose another --arena", what)
    try:
        fd = os.open(path, DIR_FLAGS)
    except OSError as exc:
        raise _refuse(path, f"cannot open it ({exc.strerror})", "check the path", what) from exc
    try:
        check_dir_fd(fd, path, what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_subdir(parent_fd: int, name: str, path: Path, create: bool = True) -> int:
    """Open ``name`` under ``parent_fd`` as a private directory (no symlinks followed)."""
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (40, 20):  # ELOOP, ENOTDIR
            raise _refuse(path / name, "a symbolic link or not a directory", "remove it") from exc
        raise
    try:
        check_dir_fd(fd, path / name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def fd_path(fd: int, name: str, fallback: Path) -> str:
    """A path to ``name`` inside the directory ``fd`` that does not re-walk the user's path."""
    proc = f"/proc/self/fd/{fd}"
    if os.path.isdir(proc):
        return f"{proc}/{name}"
    return str(fallback / name)


def unlink_quiet(name: str, dir_fd: int) -> bool:
    """Unlink ``name`` in ``dir_fd``; False when it was already gone."""
    try:
        os.unlink(name, dir_fd=dir_fd)
        return True
    except FileNotFoundError:
        return False


def allocated_bytes(name: str, dir_fd: int) -> int:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_blocks * 512
    except FileNotFoundError:
        return 0
