"""Benchmark: what one wake-up costs a Python service on this machine, by message rate.

A child process runs the smallest asyncio service there is (uvloop, one stream: read a line,
write it back). The parent sends it 200-byte lines at stepped rates, one at a time, and reads
each echo. It reports the child's CPU per message from the kernel's precise per-task runtime
(`/proc/<pid>/schedstat`) beside the tick-sampled utime + stime the call-path benchmark uses
(`/proc/<pid>/stat`).

Why it exists: routing's CPU per call falls steeply with the call rate (about 6.5 ms at 10
calls/s, 3 ms at 100/s) although its work per call is the same. At a low rate every message
wakes an idle process, and a cold wake-up costs several times the Python it runs; under load
one wake-up serves many messages. This prints that effect on its own, without Asterisk, NATS
or the routing code, so a per-call number can be read against it (docs/benchmarks.md).

    uv run python bench/wakeups.py                  # rates 25 ... 2000/s, 4 s each
    uv run python bench/wakeups.py --rates 25,400 --seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import time
from collections.abc import Sequence

import uvloop

LINE = b"x" * 199 + b"\n"
DEFAULT_RATES = (25, 50, 100, 400, 2000)


def _echo_service(sock: socket.socket) -> None:
    async def serve() -> None:
        reader, writer = await asyncio.open_connection(sock=sock)
        while line := await reader.readline():
            writer.write(line)

    uvloop.run(serve())


def _runtime_s(pid: int) -> float:
    """The task's precise CPU time (schedstat: nanoseconds on a CPU)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def _ticks_s(pid: int) -> float:
    """utime + stime as /proc/<pid>/stat has them (what bench/call_paths.py reads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(rates: Sequence[int], seconds: float) -> list[tuple[int, float, float]]:
    """(rate, µs per message by schedstat, µs per message by stat) per rate."""
    parent, child = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the echo service
        parent.close()
        _echo_service(child)
        os._exit(0)
    child.close()
    results = []
    try:
        for rate in rates:
            count = max(20, int(rate * seconds))
            runtime0, ticks0 = _runtime_s(pid), _ticks_s(pid)
            start = time.monotonic()
            for index in range(count):
                parent.sendall(LINE)
                received = b""
                while not received.endswith(b"\n"):
                    received += parent.recv(4096)
                pause = start + (index + 1) / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            results.append(
                (
                    rate,
                    (_runtime_s(pid) - runtime0) / count * 1e6,
                    (_ticks_s(pid) - ticks0) / count * 1e6,
                )
            )
    finally:
        parent.close()
        os.waitpid(pid, 0)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--rates",
        type=lambda text: [int(r) for r in text.split(",")],
        default=list(DEFAULT_RATES),
        help="messages/s per step, e.g. 25,400",
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per step")
    args = parser.parse_args(argv)
    print("rate/s  µs CPU per message (schedstat)  (stat ticks)")
    rows = measure(args.rates, args.seconds)
    for rate, runtime_us, ticks_us in rows:
        print(f"{rate:6d}  {runtime_us:31.1f}  {ticks_us:12.1f}")
    slowest, fastest = rows[0][1], rows[-1][1]
    print(f"lowest rate / highest rate: {slowest / fastest:.1f}x CPU per message")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
