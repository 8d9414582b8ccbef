"""The option table: every CLI flag of `noisefs run` has its keyword in noisefs.run and
noisefs.managed takes the table's managed options, and the reverse."""

from __future__ import annotations

import pytest

from noisefs.cli import build_parser
from noisefs.commands.run import CLI_ONLY
from noisefs.errors import InputError
from noisefs.options import BY_KEYWORD, OPTIONS, RunOptions, make_run, split_options


def _run_parser():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return subparsers.choices["run"]


def test_every_cli_flag_has_a_keyword_and_every_keyword_a_flag():
    parser = _run_parser()
    cli = {
        action.dest
        for action in parser._actions
        if action.option_strings and action.dest not in ("help", "debug")
    }
    table = {spec.name for spec in OPTIONS}
    assert cli - set(CLI_ONLY) == table
    for spec in OPTIONS:  # each flag of the table reaches argparse under its keyword
        for flag in spec.flags:
            assert parser._option_string_actions[flag].dest == spec.name


def test_every_option_parses_from_the_command_line_to_the_same_value_as_from_python(tmp_path):
    argv = ["run", "c.qasm", "--trajectories", "12", "--quota", "8MiB", "--t1", "40us",
            "--keep-qubits", "1,0", "--resume", "--checkpoint-interval", "2s"]  # fmt: skip
    args = build_parser().parse_args(argv)
    from_cli = make_run(tmp_path / "c.qasm", **{s.name: getattr(args, s.name) for s in OPTIONS})
    from_api = make_run(
        tmp_path / "c.qasm", trajectories=12, quota="8MiB", t1="40us", keep_qubits=[0, 1],
        resume=True, checkpoint_interval="2s",
    )  # fmt: skip
    assert from_cli == from_api
    options, noise = from_api
    assert (options.quota_bytes, options.keep_qubits, options.checkpoint_interval_s) == (
        8 * 2**20,
        (0, 1),
        2.0,
    )
    assert noise.t1_s == pytest.approx(40e-6)


def test_every_run_options_field_is_reachable_from_the_table():
    reachable = {spec.field for spec in OPTIONS if spec.field}
    fields = set(RunOptions.__dataclass_fields__) - {"circuit"}
    assert fields == reachable


def test_field_names_are_accepted_as_aliases_and_unknown_names_refused():
    fields, _ = split_options(quota_bytes="1MiB", spill_dir="/tmp/x", arena_root="/tmp/a")
    assert fields["quota_bytes"] == 2**20 and str(fields["spill_dir"]) == "/tmp/x"
    with pytest.raises(InputError, match="unknown run option 'qouta'"):
        split_options(qouta="1MiB")


def test_managed_takes_exactly_the_tables_managed_options():
    import inspect

    import noisefs

    parameters = set(inspect.signature(noisefs.managed).parameters)
    for spec in OPTIONS:  # every managed option has its parameter (by name or an alias)
        if spec.managed:
            assert parameters & {spec.name, *spec.aliases}, spec.name
    for name in parameters - {"quiet"}:  # every other is a managed option of the table
        assert BY_KEYWORD[name].managed, name
    names = {"quota", "max_files", "spill_dir", "batch", "root"}  # the contract's names
    assert names <= parameters
    with pytest.raises(InputError, match="size .lots."):
        noisefs.managed(quota="lots")  # the table's parser and message


def test_the_put_timeout_has_one_default_for_runs_managed_and_the_arena():
    import dataclasses
    import inspect

    from noisefs.arena import Arena
    from noisefs.options import RunOptions

    run_default = {f.name: f.default for f in dataclasses.fields(RunOptions)}["put_timeout_s"]
    assert inspect.signature(Arena).parameters["timeout_s"].default == run_default
    assert f"default {run_default:g}s" in " ".join(
        spec.help for spec in OPTIONS if spec.name == "put_timeout"
    )
