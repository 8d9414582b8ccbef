"""The daemon claims foreign files only into the room the arena's leases leave."""

from __future__ import annotations

import os

import numpy as np
import pytest

from noisefs.daemon.durable import CheckpointStore
from noisefs.daemon.police import claim_room


@pytest.fixture
def store(tmp_path):
    claimed = tmp_path / "claimed"
    claimed.mkdir()
    fd = os.open(claimed, os.O_RDONLY | os.O_DIRECTORY)
    store = CheckpointStore(tmp_path, tmp_path / "state", fd, tmp_path / "results", {})
    yield store
    store.close()
    os.close(fd)


def _claim(store: CheckpointStore, name: str) -> None:
    psi = np.zeros(4, complex)
    psi[0] = 1
    store.average("fw").fold(0, psi, name, 4096)


def test_with_no_room_one_file_at_a_time_is_claimed(store):
    store.set_claim_room(0, 0)
    assert not store.holding_too_many()  # at least one, or the inbox would never drain
    _claim(store, "a.npy")
    assert store.holding_too_many()


def test_claims_stop_at_the_room_beyond_what_is_held(store):
    _claim(store, "a.npy")
    store.set_claim_room(2, 1 << 20)  # two more inodes free after every lease
    _claim(store, "b.npy")
    assert not store.holding_too_many()
    _claim(store, "c.npy")
    assert store.holding_too_many()


def test_the_room_is_what_the_leases_leave():
    figures = {
        "max_files": 48, "files_used": 30, "leased_files": 10,
        "quota_bytes": 1 << 20, "bytes_used": 1 << 19, "leased_bytes": 1 << 18,
    }  # fmt: skip
    assert claim_room(figures) == (8, 1 << 18)
    assert claim_room({}) is None
