"""Fuzzing the files users hand over: calibration files (JSON and TOML) through
``noise_params(calibration=...)``, and the daemon's TOML config through ``load_config``.

Documents are generated from the real keys (and their typos), serialised as JSON or TOML,
then mutated (truncation, flipped bytes, bytes that are not UTF-8, deep nesting). A
calibration that is accepted must also run: its Aer model is built for three qubits and a
small batch simulated, every state finite and normalised. tests/fuzzing.py has the rule
and the on-demand command."""

from __future__ import annotations

import json
import math

import numpy as np
import qiskit_aer  # noqa: F401 - QuantumCircuit.save_statevector
from hypothesis import event, example, given
from hypothesis import strategies as st
from qiskit import QuantumCircuit

from noisefs.daemon.config import TOP_KEYS, DaemonConfig, load_config
from noisefs.errors import InputError, NoiseParameterError
from noisefs.sim.aer import SimulationJob, simulate
from noisefs.sim.batches import Batch
from noisefs.sim.noise import NoiseParams, build_noise_model, noise_params
from tests.fuzzing import fuzz_settings, outcome

# -- documents ------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 0.0, -0.0, 1, 1.0, 5e-324, 1e-320, 1e-300, 1e300, 2**63, 2**64, -1,
                     50e-6, 70e-6, 300e-9, 1e-3, 0.5, 1 - 1e-16, 16 / 15, 10**400]),
    st.integers(-(2**70), 2**70),
)  # fmt: skip
UNITS = st.builds(
    lambda n, u: f"{n}{u}",
    NUMBERS.map(repr) | st.sampled_from(["", "-", "1e", "nan", "inf", "9" * 500]),
    st.sampled_from(["", "s", "ms", "us", "µs", "ns", "ps", "MiB", "GiB", "k", "x", " us", "uss"]),
)
SCALARS = st.one_of(NUMBERS, UNITS, st.booleans(), st.text(max_size=10))
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6
)  # fmt: skip
QUBIT_KEYS = st.sampled_from(["0", "1", "2", "3", "01", " 1", "-1", "1.0", "²", "٣", "１", "",
                              "a", "99", "9" * 12, "1e3"])  # fmt: skip
PAIR_KEYS = st.builds(lambda a, s, b: f"{a}{s}{b}", QUBIT_KEYS, st.sampled_from([",", ", ", ";", ",,"]), QUBIT_KEYS)  # fmt: skip


TIMES = st.one_of(
    st.floats(0, 1e-3),
    st.builds(lambda x, u: f"{x:g}{u}", st.floats(0, 500), st.sampled_from(["us", "ns", "µs", "ms", "s", ""])),
    st.sampled_from([0, 0.0, 5e-324, 1e-300, 1e300, "0ns", "1e-320s"]),
)  # fmt: skip
PROBABILITIES = st.floats(0, 1) | st.sampled_from([0, 1, 1.0, 5e-324, 1e-320, 1 - 1e-16, "0.5"])
NOISY = SCALARS | VALUES


def plausible(kind: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly well-formed values (one in ten is noise): the deep paths get reached."""
    return st.integers(0, 9).flatmap(lambda i: kind if 0 < i < 9 else NOISY)


def tables(times: list[str], probabilities: list[str], odd: list[str] = ()) -> st.SearchStrategy:
    """A table of the given keys, now and then with one key it must not have."""
    known = st.fixed_dictionaries(
        {},
        optional={
            **{k: plausible(TIMES) for k in times},
            **{k: plausible(PROBABILITIES) for k in probabilities},
        },
    )
    extra = st.dictionaries(st.sampled_from([*odd, ""]) | st.text(max_size=5), NOISY, max_size=1)
    return st.builds(lambda a, b: {**a, **b}, known, st.one_of(*[st.just({})] * 5, extra))


QUBIT_TABLE = tables(["t1", "t2", "time_1q"], ["p1", "readout"], ["t1_s", "p2", ""])
PAIR_TABLE = tables(["time_2q"], ["p2"], ["time_2q_s", "p1"])
GOOD_QUBITS = st.dictionaries(st.sampled_from(["0", "1", "2"]), QUBIT_TABLE, max_size=3)
QUBITS = st.one_of(GOOD_QUBITS, GOOD_QUBITS, st.dictionaries(QUBIT_KEYS, QUBIT_TABLE, max_size=4), st.lists(QUBIT_TABLE, max_size=4), VALUES)  # fmt: skip
GOOD_PAIRS = st.dictionaries(st.sampled_from(["0,1", "1,0", "1,2", "2,0"]), PAIR_TABLE, max_size=3)  # fmt: skip
PAIRS = st.one_of(GOOD_PAIRS, GOOD_PAIRS, st.dictionaries(PAIR_KEYS, PAIR_TABLE, max_size=3), VALUES)  # fmt: skip
CALIBRATION = st.builds(
    lambda top, qubits, pairs: {**top, **qubits, **pairs},
    tables(["t1", "t2", "time_1q", "time_2q"], ["p1", "p2", "readout"], ["t1_s", "T1", "qubit"]),
    st.one_of(st.just({}), QUBITS.map(lambda q: {"qubits": q})),
    st.one_of(st.just({}), PAIRS.map(lambda p: {"pairs": p})),
)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)  # fmt: skip
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {_toml_value(v)}" for k, v in value.items()) + "}"  # fmt: skip


def to_toml(doc: dict, array_tables: tuple[str, ...] = ()) -> str:
    """``doc`` as TOML: scalars at the top, tables inline; ``array_tables`` keys holding
    lists of tables written as ``[[key]]``."""
    lines, after = [], []
    for key, value in doc.items():
        if key in array_tables and isinstance(value, list) and all(isinstance(v, dict) for v in value):  # fmt: skip
            for table in value:
                after.append(f"[[{key}]]")
                after += [f"{json.dumps(k, ensure_ascii=False)} = {_toml_value(v)}" for k, v in table.items()]  # fmt: skip
        else:
            lines.append(f"{json.dumps(key, ensure_ascii=False)} = {_toml_value(value)}")
    return "\n".join(lines + after) + "\n"


@st.composite
def serialised(draw, docs, suffixes=(".json", ".toml"), array_tables=()) -> tuple[bytes, str]:
    """(file bytes, suffix): a generated document as JSON or TOML, maybe mutated."""
    doc = draw(docs)
    suffix = draw(st.sampled_from(suffixes))
    text = json.dumps(doc, ensure_ascii=False) if suffix == ".json" else to_toml(doc, array_tables)  # fmt: skip
    data = text.encode("utf-8", errors="surrogatepass")
    kind = draw(st.sampled_from(["none"] * 5 + ["truncate", "flip", "insert", "nest", "bom", "cr"]))
    event(f"{suffix} {kind}")
    at = draw(st.integers(0, len(data)))
    if kind == "truncate":
        data = data[:at]
    elif kind == "flip":
        data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1 :]
    elif kind == "insert":
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif kind == "nest":
        depth = draw(st.sampled_from([50, 1000, 100_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ("{a = ", "}")]))
        inner = opener * depth + "1" + closer * draw(st.sampled_from([0, depth]))
        data = data + (f"\nx = {inner}\n" if suffix == ".toml" else inner).encode()
    elif kind == "bom":
        data = b"\xef\xbb\xbf" + data
    elif kind == "cr":
        data = data.replace(b"\n", b"\r")
    return data, suffix


# -- calibration ----------------------------------------------------------------------------


def _probe_circuit() -> QuantumCircuit:
    qc = QuantumCircuit(3, 3)
    qc.sx(0)
    qc.x(1)
    qc.rz(0.3, 2)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.cx(2, 0)
    qc.measure(range(3), range(3))
    qc.save_statevector(label="s0", pershot=True)
    return qc


PROBE = _probe_circuit()


def check_runs(params: NoiseParams) -> None:
    """An accepted calibration builds its model and simulates: states finite, normalised."""
    model, error = outcome(build_noise_model, params, 3, expect=NoiseParameterError)
    if error is not None:  # a qubit or pair beyond the circuit's three: refused for it
        event("model refused for 3 qubits")
        return
    job = SimulationJob(PROBE, ("s0",), model, "factored", "fuzz", aer_threads=1)
    (rows,), _ = outcome(simulate, job, Batch(index=0, start=0, size=4, seed=7), expect=())
    states = np.stack(rows)  # Aer's per-shot rows, one per trajectory
    assert states.shape == (4, 8) and np.all(np.isfinite(states))
    np.testing.assert_allclose(np.linalg.norm(states, axis=1), 1.0, atol=1e-6)
    event("simulated")


@fuzz_settings(ci=150)
@given(file=serialised(CALIBRATION))
@example(file=(b'{"qubits": {"\xc2\xb2": {"t1": "50us"}}}', ".json"))
@example(file=(b'{"readout": 1e-320, "p2": 1.0, "time_1q": 0, "time_2q": 0}', ".json"))
@example(file=(b"x = " + b"[" * 100_000 + b"]" * 100_000, ".toml"))
def test_calibration_files_load_and_run_or_are_one_input_error(file, tmp_path):
    data, suffix = file
    path = tmp_path / f"cal{suffix}"
    path.write_bytes(data)
    params, error = outcome(noise_params, calibration=path)
    if error is not None:
        event("refused")
        return
    assert isinstance(params, NoiseParams)
    params.validate()
    check_runs(params)


# -- the daemon's config --------------------------------------------------------------------


def plausible_or(kind: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """``kind`` mostly, one in ten ``odd``, one in twenty noise."""
    return st.integers(0, 19).flatmap(lambda i: kind if 0 < i < 18 else odd if i != 18 else NOISY)


PATHS = plausible_or(
    st.sampled_from(["/dev/shm/noisefs-fuzz-a", "/tmp/noisefs-fuzz", "relative/dir", "~", "."]),
    st.sampled_from(["", "a\x00b", "/a\nb", "/" + "x" * 5000, "~nobody/x", "/", "\udcff"]),
)
SIZES = plausible_or(
    st.sampled_from(["64MiB", "1GiB", "0", "1.5KiB"]) | st.integers(0, 2**62),
    st.sampled_from(["-1", "1e99999999", "9" * 500, "1.5B", "8EiB", 2**63, -1, 1.5]),
)
ODD_FRACTIONS = st.sampled_from([0, 1.5, -0.1, 0.5, 0.6, 1e-320, 2**64])
LOW, HIGH, FLOOR = (plausible_or(st.floats(a, b), ODD_FRACTIONS) for a, b in ((0.01, 0.59), (0.6, 1), (0.01, 0.49)))  # fmt: skip
COUNTS = plausible_or(st.integers(8, 10**6), st.sampled_from([0, 7, 2**40 + 1, 2**63, -1, 1.0]))
SECONDS = plausible_or(st.floats(1e-3, 3600), st.sampled_from([0, 3600.0000001, 1e-320, -1]))
PORTS = plausible_or(st.integers(0, 65535), st.sampled_from([-1, 65536, 2**63, 80.0, "8080"]))
ARENA = st.fixed_dictionaries(
    {"root": PATHS},
    optional={"quota": SIZES, "max_files": COUNTS, "spill": PATHS, "spill_quota": SIZES,
              "results": PATHS, "high_watermark": HIGH, "low_watermark": LOW,
              "tmpfs_free_floor": FLOOR},
)  # fmt: skip
CONFIG = st.builds(
    lambda doc, odd: {**doc, **odd},
    st.fixed_dictionaries(
        {},
        optional={
            "arena": plausible_or(st.lists(ARENA, max_size=3, unique_by=lambda t: repr(t["root"])), ARENA | st.lists(VALUES)),
            "state_dir": PATHS, "results": PATHS, "metrics_port": PORTS,
            "log_level": plausible_or(st.sampled_from(["info", "DEBUG", "warning", "error"]),
                                      st.sampled_from(["warn", "", "error\n", "info "])),
            **{k: SECONDS for k in sorted(TOP_KEYS) if k.endswith("_s")},
            "high_watermark": HIGH, "low_watermark": LOW, "tmpfs_free_floor": FLOOR,
        },
    ),
    st.one_of(*[st.just({})] * 7, st.dictionaries(st.sampled_from(["quota", "spill", "root"]) | st.text(max_size=8), NOISY, max_size=1)),
)  # fmt: skip


def check_config(cfg: object) -> None:
    assert isinstance(cfg, DaemonConfig) and cfg.arenas
    assert len({a.root for a in cfg.arenas}) == len(cfg.arenas)
    for arena in cfg.arenas:
        for path in (arena.root, arena.spill_dir, arena.results_dir):
            assert path is None or (path.is_absolute() and "\x00" not in str(path)), path
        for size in (arena.quota_bytes, arena.spill_quota_bytes):
            assert size is None or (type(size) is int and 0 <= size < 2**63)
        assert arena.max_files is None or 8 <= arena.max_files <= 2**40
        assert 0 < arena.low_watermark < arena.high_watermark <= 1
        assert 0 < arena.tmpfs_free_floor < 0.5
    assert cfg.state_dir is None or "\x00" not in str(cfg.state_dir)
    assert cfg.metrics_port is None or 0 <= cfg.metrics_port <= 65535
    assert cfg.log_level in ("debug", "info", "warning", "error")
    for name in TOP_KEYS:
        if name.endswith("_s"):
            assert 0 < getattr(cfg, name) <= 3600


@fuzz_settings(ci=150)
@given(file=serialised(CONFIG, suffixes=(".toml",), array_tables=("arena",)))
@example(file=(b'log_level = "info"\n\xff\xfe\n', ".toml"))
@example(
    file=(b'"state_dir" = "a\\u0000b"\n', ".toml")
)  # found: a NUL in a path (ValueError later)
@example(file=(b"x = " + b"[" * 100_000 + b"]" * 100_000, ".toml"))
def test_daemon_config_loads_sanely_or_is_one_input_error(file, tmp_path):
    data, suffix = file
    path = tmp_path / f"daemon{suffix}"
    path.write_bytes(data)
    cfg, error = outcome(load_config, path, expect=InputError)
    if error is not None:
        assert str(path) in str(error)
        event("refused")
        return
    check_config(cfg)
    event("accepted")


def test_documents_written_by_these_generators_are_read_as_meant(tmp_path):
    """The JSON and TOML writers above produce what the readers accept: the accepting
    paths are reachable, and a refusal in the fuzz is the mutation's doing."""
    good = {"t1": "60us", "p2": 0.02, "qubits": {"1": {"readout": 0.01}}, "pairs": {"0,1": {"p2": 0.03}}}  # fmt: skip
    for suffix, text in ((".json", json.dumps(good)), (".toml", to_toml(good))):
        path = tmp_path / f"cal{suffix}"
        path.write_text(text)
        params = noise_params(calibration=path)
        assert params.t1_s == 60e-6 and params.qubit(1)["readout"] == 0.01
        assert params.pair(1, 0)["p2"] == 0.03
    config = {"log_level": "debug", "arena": [{"root": "/dev/shm/noisefs-fuzz-x", "quota": "1MiB"}]}  # fmt: skip
    path = tmp_path / "daemon.toml"
    path.write_text(to_toml(config, ("arena",)))
    cfg = load_config(path)
    assert cfg.log_level == "debug" and cfg.arenas[0].quota_bytes == 2**20
