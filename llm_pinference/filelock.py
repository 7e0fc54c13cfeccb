"""An exclusive, advisory lock on a sidecar file, held for a short read-merge-write.

Two processes (two `llm` commands for two accounts) that both read the cache file, add
their own entry and replace the file would each drop the other's entry; the lock makes
their read-merge-writes take turns. `flock` on POSIX (released by the kernel if the holder
dies, so never stale), `msvcrt.locking` on Windows, and a plain in-process lock where
neither exists. The wait is bounded: past it the caller goes on unlocked, since a cache
write is not worth hanging a command for.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

if sys.platform == "win32":
    import msvcrt

    fcntl = None
else:
    try:
        import fcntl
    except ImportError:  # a POSIX-like platform without it: the in-process lock only
        fcntl = None  # type: ignore[assignment]
    msvcrt = None

DEFAULT_WAIT = 2.0
_POLL = 0.005
# Threads of one process take turns here first: cheap, and the only lock if the platform
# has no file locks.
_threads = threading.Lock()


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        elif msvcrt is not None:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:  # held by another process (BlockingIOError, or EACCES on Windows)
        return False
    return True


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        elif msvcrt is not None:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


@contextlib.contextmanager
def locked(path: Path, wait: float = DEFAULT_WAIT) -> Iterator[bool]:
    """Hold the lock on `path` (created if need be) for the block; yields whether it was
    obtained (False: an unwritable directory, or `wait` seconds passed)."""
    if not _threads.acquire(timeout=wait):
        yield False
        return
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            yield False
            return
        try:
            deadline = time.monotonic() + wait
            held = _try_lock(fd)
            while not held and time.monotonic() < deadline:
                time.sleep(_POLL)
                held = _try_lock(fd)
            try:
                yield held
            finally:
                if held:
                    _unlock(fd)
        finally:
            os.close(fd)
    finally:
        _threads.release()
