"""The daemon's configuration: a TOML file plus command-line overrides, validated as a whole.

Unknown keys are refused by name, sizes take human units (``512MiB``), fractions must lie
in (0, 1] with ``low_watermark < high_watermark``. A config that fails validation is never
applied: at start the daemon exits 2; on SIGHUP it keeps the old one and logs why.

Watermark defaults. Dask's worker memory thresholds are 0.6 (target: start moving data to
disk), 0.7 (spill), 0.8 (pause the writers) and 0.95 (terminate); Ray spills objects above
0.8. The daemon starts moving cold snapshots to spill at ``high_watermark = 0.8`` — Ray's
threshold and Dask's pause level: above it noisefs writers are about to be held back by the
arena's hard bound — and stops at ``low_watermark = 0.6``, Dask's target: a 20-point
hysteresis, so one episode makes room for many puts instead of moving one snapshot per put.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from noisefs.arena import default_root
from noisefs.errors import InputError
from noisefs.units import parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HIGH_WATERMARK = 0.8
LOW_WATERMARK = 0.6
TMPFS_FREE_FLOOR = 0.05  # fraction of the tmpfs (bytes and inodes) kept free for everyone

ARENA_KEYS = {
    "root",
    "quota",
    "max_files",
    "spill",
    "spill_quota",
    "results",
    "high_watermark",
    "low_watermark",
    "tmpfs_free_floor",
}
TOP_KEYS = {
    "arena",
    "results",
    "state_dir",
    "metrics_port",
    "log_level",
    "high_watermark",
    "low_watermark",
    "tmpfs_free_floor",
    "scan_interval_s",
    "scan_only_interval_s",
    "gc_interval_s",
    "police_interval_s",
    "checkpoint_interval_s",
    "status_interval_s",
    "settle_s",
    "done_grace_s",
}


def default_results_dir() -> Path:
    """``$XDG_DATA_HOME/noisefs/results`` (``~/.local/share/noisefs/results``)."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(data) / "noisefs" / "results"


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/noisefs/daemon`` (``~/.local/state/noisefs/daemon``): checkpoints,
    one subdirectory per arena, whatever the results directory."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local/state"
    )
    return Path(state) / "noisefs" / "daemon"


@dataclass(frozen=True)
class ArenaConfig:
    """One arena the daemon polices; ``None`` bounds keep what the arena has stored."""

    root: Path
    quota_bytes: int | None = None
    max_files: int | None = None
    spill_dir: Path | None = None
    spill_quota_bytes: int | None = None
    results_dir: Path = field(default_factory=default_results_dir)
    high_watermark: float = HIGH_WATERMARK
    low_watermark: float = LOW_WATERMARK
    tmpfs_free_floor: float = TMPFS_FREE_FLOOR


@dataclass(frozen=True)
class DaemonConfig:
    """The whole configuration; timings in seconds."""

    arenas: tuple[ArenaConfig, ...]
    state_dir: Path | None = None  # checkpoints; default default_state_dir()
    metrics_port: int | None = None
    log_level: str = "info"
    scan_interval_s: float = 5.0
    scan_only_interval_s: float = 0.5
    gc_interval_s: float = 2.0
    police_interval_s: float = 1.0
    checkpoint_interval_s: float = 1.0
    status_interval_s: float = 2.0
    settle_s: float = 10.0
    done_grace_s: float = 5.0
    source: str | None = None


def _fraction(where: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise InputError(f"{where}: {name} must be a number in (0, 1], not {value!r}")
    return float(value)


def _seconds(where: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise InputError(f"{where}: {name} must be seconds in (0, 3600], not {value!r}")
    return float(value)


def _int(where: str, name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(f"{where}: {name} must be an integer in [{low}, {high}], not {value!r}")
    return value


def _path(where: str, name: str, value: object) -> Path:
    if not isinstance(value, str) or not value or "\x00" in value:  # no NUL in any path
        raise InputError(f"{where}: {name} must be a path string, not {value!r}")
    return Path(os.path.abspath(os.path.expanduser(value)))


def _size(where: str, name: str, value: object) -> int:
    try:
        return parse_size(value)
    except (InputError, ValueError, TypeError) as exc:
        raise InputError(f"{where}: {name}: {exc}") from None


def _arena(where: str, table: dict, top: dict) -> ArenaConfig:
    unknown = set(table) - ARENA_KEYS
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if "root" not in table:
        raise InputError(f"{where}: 'root' is required")
    merged = {**{k: top[k] for k in top if k in ARENA_KEYS}, **table}
    kw: dict = {"root": _path(where, "root", table["root"])}
    if "quota" in merged:
        kw["quota_bytes"] = _size(where, "quota", merged["quota"])
    if "max_files" in merged:
        kw["max_files"] = _int(where, "max_files", merged["max_files"], 8, 2**40)
    if "spill" in merged:
        kw["spill_dir"] = _path(where, "spill", merged["spill"])
    if "spill_quota" in merged:
        kw["spill_quota_bytes"] = _size(where, "spill_quota", merged["spill_quota"])
    if "results" in merged:
        kw["results_dir"] = _path(where, "results", merged["results"])
    for name in ("high_watermark", "low_watermark", "tmpfs_free_floor"):
        if name in merged:
            kw[name] = _fraction(where, name, merged[name])
    cfg = ArenaConfig(**kw)
    if cfg.low_watermark >= cfg.high_watermark:
        raise InputError(
            f"{where}: low_watermark {cfg.low_watermark} must be below high_watermark "
            f"{cfg.high_watermark}"
        )
    if cfg.tmpfs_free_floor >= 0.5:
        raise InputError(f"{where}: tmpfs_free_floor must be below 0.5")
    return cfg


def parse_config(
    data: dict, source: str | None = None, overrides: dict | None = None
) -> DaemonConfig:
    """Validate a parsed TOML document plus command-line ``overrides`` (which win)."""
    where = source or "config"
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    top = dict(data)
    for key in ("quota", "max_files", "spill", "spill_quota", "results"):
        if key in overrides:
            top[key] = overrides[key]
    tables = top.pop("arena", [])
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise InputError(f"{where}: [[arena]] must be tables")
    tables = [dict(t) for t in tables]
    for t in tables:  # command-line bounds win over the file, for every arena
        for key in ("quota", "max_files", "spill", "spill_quota", "results"):
            if key in overrides:
                t[key] = overrides[key]
    known = {str(_path(where, "root", t.get("root", "?"))) for t in tables if "root" in t}
    for root in overrides.get("arenas", []):
        if str(_path("--arena", "root", root)) not in known:
            tables.append({"root": root})
    if not tables:
        tables = [{"root": str(default_root())}]
    arenas = tuple(_arena(f"{where} [[arena]] #{i + 1}", t, top) for i, t in enumerate(tables))
    roots = [a.root for a in arenas]
    if len(set(roots)) != len(roots):
        raise InputError(f"{where}: an arena is listed twice")
    kw: dict = {"arenas": arenas, "source": source}
    if "state_dir" in top:
        kw["state_dir"] = _path(where, "state_dir", top["state_dir"])
    port = overrides.get("metrics_port", top.get("metrics_port"))
    if port is not None:
        kw["metrics_port"] = _int(where, "metrics_port", port, 0, 65535)
    if "log_level" in top:
        level = str(top["log_level"]).lower()
        if level not in ("debug", "info", "warning", "error"):
            raise InputError(f"{where}: log_level must be debug, info, warning or error")
        kw["log_level"] = level
    for name in TOP_KEYS:
        if name.endswith("_s") and name in top:
            kw[name] = _seconds(where, name, top[name])
    return DaemonConfig(**kw)


def load_config(path: str | os.PathLike | None, overrides: dict | None = None) -> DaemonConfig:
    """Read and validate ``path`` (TOML; None: command line only). Whatever is wrong with
    the file (unreadable, not UTF-8, not TOML, nested deeper than the parser follows, a bad
    value) is an :class:`InputError` of one line naming the file."""
    if path is None:
        return parse_config({}, None, overrides)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise InputError(f"config {path}: cannot read it ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"config {path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line})"
        ) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"config {path}: {exc}") from None
    except RecursionError:  # [[[[...]]]] or {a = {a = ...}} thousands deep
        raise InputError(
            f"config {path}: arrays or inline tables nested too deeply to be read"
        ) from None
    return parse_config(data, str(path), overrides)
