"""Child processes with a log file and a guaranteed stop, and bounded waits."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import requests

T = TypeVar("T")


class Process:
    """A child process whose output goes to a log file; stop() always reaps it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; this process only."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self._log.close()

    def check_alive(self) -> None:
        if not self.running:
            raise AssertionError(
                f"{self.name} exited with status {self.proc.returncode}:\n{self.log_tail()}"
            )


def wait_until(
    check: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    alive: Sequence[Process] = (),
) -> T:
    """Call `check` until it returns something truthy, at most `timeout` seconds.

    Exceptions from `check` count as "not yet"; the last one is reported at the deadline.
    A process in `alive` that exits ends the wait at once, with its log.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        for process in alive:
            process.check_alive()
        try:
            result = check()
        except (requests.RequestException, AssertionError, KeyError, ValueError) as exc:
            last_error, result = exc, None
        if result:
            return result
        if time.monotonic() >= deadline:
            detail = f": last error: {last_error!r}" if last_error else ""
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(interval)
