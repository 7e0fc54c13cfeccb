"""The cache lock against a holder outside this process's own lock (found by
`make mutation`): two `llm` commands must take turns, and a held lock is never taken."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from llm_pinference.filelock import locked

fcntl = pytest.importorskip("fcntl", reason="POSIX file locks")


def hold(path: Path) -> int:
    """Lock `path` the way another process's lock looks: an open file description of its
    own holding flock (flock locks belong to the description, not to the process)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def test_a_lock_held_elsewhere_is_waited_for_then_given_up(tmp_path: Path) -> None:
    path = tmp_path / "cache.json.lock"
    other = hold(path)
    try:
        started = time.monotonic()
        with locked(path, wait=0.3) as held:
            assert held is False
        assert 0.3 <= time.monotonic() - started < 2.0
    finally:
        os.close(other)


def test_the_lock_is_held_for_the_block_and_only_for_it(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cache.json.lock"
    with locked(path, wait=1.0) as held:
        assert held is True
        with pytest.raises(BlockingIOError):
            hold(path)  # another process cannot take it now
    os.close(hold(path))  # and can once the block is over
