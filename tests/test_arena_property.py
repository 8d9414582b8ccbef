"""Property-based accounting: random put/get/release sequences against a model; afterwards
the arena's figures equal what du and find report, and its contents equal the model's."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noisefs.arena import Arena
from noisefs.arena.admission import META_SLACK
from tests.test_arena_fixtures import du_bytes, inode_count, listing

SIZES = [0, 1, 500, 20_000, 100_000]  # float64 elements, up to 800 KB
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(SIZES)),
        st.tuples(st.just("release"), st.integers(0, 50)),
        st.tuples(st.just("get"), st.integers(0, 50)),
    ),
    min_size=1,
    max_size=40,
)


def _alloc(nbytes: int) -> int:
    return 4096 + -(-nbytes // 4096) * 4096


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, quota_mib=st.sampled_from([2, 4, 16]))
def test_accounting_matches_du_find_and_model(ops, quota_mib):
    root = Path("/dev/shm") / f"noisefs-test-prop-{uuid.uuid4().hex[:10]}"
    spill = Path(tempfile.mkdtemp(prefix="noisefs-prop-spill-"))
    model: dict[str, np.ndarray] = {}
    counter = 0
    try:
        with Arena(
            root, quota=f"{quota_mib}MiB", max_files=30, spill_dir=spill, timeout_s=0.5
        ) as arena:
            for op, arg in ops:
                if op == "put":
                    counter += 1
                    x = np.full(arg, counter, dtype=np.float64)
                    model[arena.put(x, run="p", step=counter)] = x
                elif model:
                    key = sorted(model)[arg % len(model)]
                    if op == "get":
                        np.testing.assert_array_equal(arena.get(key), model[key])
                    else:
                        arena.release(key)
                        del model[key]
                s = arena.stats()
                assert du_bytes(root) <= s["bytes_used"] <= s["quota_bytes"]
                assert inode_count(root) <= s["files_used"] <= s["max_files"]
            s = arena.stats()
            # data: exact; metadata: within the documented allowance
            assert du_bytes(root / "data") == s["data_bytes"]
            assert len(os.listdir(root / "data")) == s["data_files"]
            # the allowance: a journal as large as the ledger itself, plus the slack
            ledger_bytes = os.stat(root / "ledger.db").st_blocks * 512
            assert 0 <= s["bytes_used"] - du_bytes(root) <= META_SLACK + ledger_bytes
            assert 0 <= s["files_used"] - inode_count(root) <= 1  # the journal, even if absent
            spilled = [k for k in model if arena.info(k)["tier"] == "spill"]
            assert s["spilled_files"] == len(spilled) == len(listing(spill))
            assert s["spilled_bytes"] == sum(_alloc(model[k].nbytes) for k in spilled)
            tmpfs_live = sum(_alloc(model[k].nbytes) for k in model if k not in spilled)
            assert s["data_bytes"] == tmpfs_live + s["free_bytes"]
            assert s["free_bytes"] <= s["quota_bytes"] // 4
            assert sorted(arena.keys()) == sorted(model)
            for key, x in model.items():
                np.testing.assert_array_equal(arena.get(key), x)
            assert arena.check() == []
            for key in list(model):
                arena.release(key)
        assert os.listdir(root / "data") == [] and listing(spill) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(spill, ignore_errors=True)
