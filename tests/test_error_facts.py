"""Facts an error documents are set where it is raised."""

from __future__ import annotations

import os

import pytest

from noisefs.daemon.statusfile import take_lock
from noisefs.errors import ArenaBusy


def test_arena_busy_names_the_daemon_that_holds_the_arena(tmp_path):
    root_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        held = take_lock(root_fd, tmp_path)
        try:
            with pytest.raises(ArenaBusy) as info:
                take_lock(root_fd, tmp_path)
            assert info.value.holder_pid == os.getpid()
            assert str(os.getpid()) in str(info.value)
        finally:
            os.close(held)
    finally:
        os.close(root_fd)
