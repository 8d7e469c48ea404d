"""Supervised local processes: start with a log file, wait until ready, stop cleanly.

Every component of the local platform (Asterisk, NATS, Redis, the services...) is one
ManagedProcess, so the dev command and the pytest harness start and stop them the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ReadyCheck = Callable[[], Awaitable[bool]]


class ProcessFailed(RuntimeError):
    """A managed process exited early or never became ready."""


@dataclass
class ManagedProcess:
    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ready: ReadyCheck | None = None
    ready_timeout_s: float = 30.0
    stop_signal: int = signal.SIGTERM
    stop_timeout_s: float = 10.0
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.write(f"\n=== {time.strftime('%H:%M:%S')} start {' '.join(self.argv)}\n".encode())
        log.flush()
        full_env = {**os.environ, **self.env}
        # Own process group, so a stop reaches every child (e.g. a shell wrapper's children).
        self._popen = subprocess.Popen(
            list(self.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if not self.running:
                raise ProcessFailed(f"{self.name} exited early; see {self.log_path}\n{self.tail()}")
            if self.ready is None:
                return
            with contextlib.suppress(Exception):
                if await self.ready():
                    return
            if time.monotonic() > deadline:
                raise ProcessFailed(
                    f"{self.name} not ready after {self.ready_timeout_s}s; "
                    f"see {self.log_path}\n{self.tail()}"
                )
            await asyncio.sleep(0.05)

    async def start_and_wait(self) -> None:
        self.start()
        await self.wait_ready()

    def signal(self, signum: int) -> None:
        if self._popen and self._popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._popen.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash would."""
        self.signal(signal.SIGKILL)
        if self._popen:
            self._popen.wait()

    async def stop(self) -> int | None:
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self.signal(self.stop_signal)
            deadline = time.monotonic() + self.stop_timeout_s
            # A child's exit has no awaitable here (Popen); poll it briefly.
            while self._popen.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if self._popen.poll() is None:
                self.kill()
        code = self._popen.wait()
        self._popen = None
        return code

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


async def tcp_open(host: str, port: int) -> bool:
    """True once something accepts TCP connections on host:port."""
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
