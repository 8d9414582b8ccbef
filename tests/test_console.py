"""The console script: the CLI's exit code, and every atexit handler run before its quick exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.circuits import GHZ4


def _console(*args: str, code: str = "from noisefs.console import main; main()", **kw):
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, **kw
    )


def test_handlers_registered_during_the_command_run_before_the_exit_with_its_code(tmp_path):
    marker = tmp_path / "handler-ran"
    code = f"""
import atexit, sys
import noisefs.cli
from noisefs.console import main

def command(argv=None):
    atexit.register(lambda: open({str(marker)!r}, "w").write("ran"))
    print("the last line", end="")  # unflushed: the exit flushes it
    return 3

noisefs.cli.main = command
main()
"""
    result = _console(code=code)
    assert result.returncode == 3
    assert result.stdout == "the last line"
    assert marker.read_text() == "ran"


def test_a_run_through_the_console_exits_0_with_its_summary_and_its_arena_closed(
    tmp_path, arena_root
):
    circuit = tmp_path / "ghz4.qasm"
    circuit.write_text(GHZ4)
    arena = Path(arena_root)
    out = tmp_path / "r.npz"
    result = _console(
        "run", str(circuit), "-k", "20", "--quiet", "--json", "-o", str(out),
        "--arena", str(arena), "--spill", str(tmp_path / "spill"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["trajectories"] == 20
    assert out.exists()
    assert list((arena / "owners").iterdir()) == []  # closed: no owner left registered


def test_argparse_errors_keep_their_exit_code():
    assert _console("run", "--no-such-option").returncode == 2
    assert _console("--help").returncode == 0
