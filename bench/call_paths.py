"""Benchmark: the routed call path against a static Asterisk dialplan, on the same Asterisk.

The same call three ways: a PSTN caller (sipp) dials, the user's desk phone (a sipp "answer"
phone, ring_ms=0) answers, the caller hangs up 0.5 s later.

  (a) static  caller from 127.0.0.3 -> Asterisk "bench-static" context -> Dial() the phone
  (b) routed  caller from 127.0.0.2 -> Stasis -> routing (directory lookup, the user's
              default routing, the call plan, originate, bridge, call events on JetStream)
              -> billing stores the CDR
  (c) plan3   as (b), to a user whose stored profile makes a 3-step plan (issue #5): ring the
              desk phone, then an external number (a call-flow redirect), then voicemail;
              the desk phone answers in the first step

At stepped sipp rates, alternating (a) and (b) at each rate, it reports completed/failed
calls, CPU seconds per call of Asterisk and of each service (from /proc), post-dial delay
(INVITE -> 180) percentiles and, for (b), how many CDRs were stored, then the ratios b/a.
Everything (sipp, Asterisk, infrastructure, services) shares this machine's cores, so the
numbers are ratios from one run, not absolute capacity.

    uv run python bench/call_paths.py            # full run (~10-15 min on 2 cores)
    uv run python bench/call_paths.py --quick    # smoke run (CI), under ~2 minutes
    uv run python bench/call_paths.py --rates 25,50,100 --seconds-per-step 4

Exit status: 0 when the run completed (PASS/FAIL target lines are informative), 1 when the
run itself broke (platform did not start, a step could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
from pymongo import AsyncMongoClient
from ringwise.directory.v1 import resolve_pb2
from ringwise_dev.asterisk import repo_root
from ringwise_dev.fixture import BENCH, BENCH_PLAN, TENANT
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.ports import BENCH_PORTS, PSTN_HOST
from ringwise_dev.sipp import STATIC_TRUNK_HOST, PhoneKind, SippPhone, SippResult, percentile
from ringwise_kit import subjects
from ringwise_routing.plans.engine import plan_call
from ringwise_routing.plans.explain import plan_summary
from ringwise_routing.plans.model import Caller, PlanContext
from ringwise_routing.profiles import document
from ringwise_routing.profiles.store import ProfileStore
from ringwise_routing.settings import RoutingSettings

INSTANCE = "bench"
HOLD_MS = 500
DEFAULT_RATES = (25, 50, 100, 150, 200, 300, 400, 500, 600, 800)
QUICK_RATES = (10, 25)
DEFAULT_SECONDS = 6.0
QUICK_SECONDS = 3.0
MAX_CALLS_PER_STEP = 3000
MIN_CALLS_PER_STEP = 20
# A step "sustains" its rate if every call completed and sipp kept up this share of the rate.
ACHIEVED_SHARE = 0.9
CONSECUTIVE_FAILS_TO_STOP = 2
SETTLE_TIMEOUT_S = 60.0
# Settled = the measured processes use at most this many cores over a window.
QUIET_WINDOW_S = 0.5
QUIET_CORES = 0.1
# sipp aborts a call that waits longer than this for an expected message.
RECV_TIMEOUT_MS = 20_000

# Targets (informative).
TARGET_RATE_RATIO = 0.7
TARGET_PY_CPU_MS = 2.0
TARGET_ADDED_PDD_P99_MS = 10.0

PATHS = {"a": "static", "b": "routed", "c": "plan3"}
ROUTED_PATHS = ("b", "c")
# Path (c)'s user: Available rings the desk phone (call-flow timeout), then the redirect to an
# external number through the trunk, then voicemail. Stored with routing's own store code.
PLAN3_PROFILE: dict[str, Any] = {
    "terminals": [{"id": "desk", "location": "Desk", "device_id": BENCH_PLAN.device_id}],
    "states": {
        "Available": {
            "terminals": ["desk"],
            "ring_mode": "sequential",
            "fallback": {"kind": "voicemail", "greeting": "available"},
        }
    },
    "call_flow": {
        "period": None,
        "timezone": "Europe/London",
        "call_timeout_s": 20,
        "redirects": [{"kind": "external", "target": "+15550177", "ring_timeout_s": 10}],
    },
}
PLAN3_STEPS = 3
SERVICE_NAMES = ("routing", "directory", "billing", "voicemail", "recording", "messaging")
INFRA_NAMES = ("nats", "redis", "mongo")
# Not on a call's path, but on the same cores: only in the JSON and in "busy cores".
OTHER_INFRA_NAMES = ("s3", "smtp")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- CPU from /proc
def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, CPU seconds of the process incl. its reaped children), every process."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
        except OSError:
            continue
        # comm (field 2) may hold spaces and parentheses: split after the last ')'.
        rest = raw[raw.rfind(")") + 2 :].split()
        # rest[0] is field 3 (state): ppid is field 4, utime..cstime fields 14..17.
        ppid = int(rest[1])
        ticks = int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14])
        table[int(entry.name)] = (ppid, ticks / CLK_TCK)
    return table


def _tree_cpu(table: Mapping[int, tuple[int, float]], root: int | None) -> float:
    """CPU seconds of root and all its live descendants (plus the children they reaped)."""
    if root is None or root not in table:
        return 0.0
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += table[pid][1]
        stack.extend(children.get(pid, ()))
    return total


def _comm(pid: int | None) -> str:
    if pid is None:
        return "?"
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


class CpuProbe:
    """CPU seconds of each component we care about, by process tree."""

    def __init__(self, platform: LocalPlatform, phone: SippPhone) -> None:
        self.roots: dict[str, int | None] = {"asterisk": platform.asterisk.process.pid}
        for name in SERVICE_NAMES:
            self.roots[name] = platform.services[name].pid
        infra = platform.infra
        for name in (*INFRA_NAMES, *OTHER_INFRA_NAMES):
            self.roots[name] = getattr(infra, name).pid
        self.roots["sipp_phone"] = phone.process.pid

    def describe(self) -> dict[str, str]:
        return {name: f"{pid} ({_comm(pid)})" for name, pid in self.roots.items()}

    def snapshot(self) -> dict[str, float]:
        table = _proc_table()
        return {name: _tree_cpu(table, pid) for name, pid in self.roots.items()}


def _children_cpu() -> float:
    """CPU of this process's reaped children: the sipp caller of a step."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------- results
@dataclass
class StepResult:
    path: str
    """"a" (static dialplan) or "b" (routed)."""
    rate: float
    caller: str
    requested: int
    invites: int
    completed: int
    failed: int
    sipp_exit: int | None
    offered_cps: float
    achieved_cps: float | None
    wall_s: float
    pdd_p50_ms: float | None
    pdd_p99_ms: float | None
    answer_p50_ms: float | None
    answer_p99_ms: float | None
    cpu_s: dict[str, float]
    """CPU seconds during the step (incl. settling), per component; sipp_caller included."""
    final_codes: dict[str, int]
    cdr_stored: int | None = None
    """(b) CDRs with an answer time stored for this step's caller."""
    cdr_total: int | None = None
    cdr_expected: int | None = None
    settle_s: float = 0.0
    sipp_s: float = 0.0
    busy_cores: float = 0.0
    """All measured CPU while sipp ran / that time (a step may finish its work later)."""
    leftover_channels: int = 0
    asterisk_warnings: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every requested call answered and ended cleanly, at (nearly) the offered rate."""
        kept_up = self.achieved_cps is None or self.achieved_cps >= ACHIEVED_SHARE * self.rate
        return self.failed == 0 and self.sipp_exit == 0 and kept_up

    def cpu_ms_per_call(self, name: str) -> float | None:
        if self.completed == 0:
            return None
        return 1000.0 * self.cpu_s.get(name, 0.0) / self.completed

    @property
    def python_cpu_s(self) -> float:
        return sum(self.cpu_s.get(name, 0.0) for name in SERVICE_NAMES)

    @property
    def python_ms_per_call(self) -> float | None:
        if self.completed == 0:
            return None
        return 1000.0 * self.python_cpu_s / self.completed

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["cpu_ms_per_call"] = {n: self.cpu_ms_per_call(n) for n in self.cpu_s}
        out["python_ms_per_call"] = self.python_ms_per_call
        return out


# ---------------------------------------------------------------------------- platform helpers
async def active_channels(platform: LocalPlatform) -> int:
    out = await platform.asterisk.rx("core show channels count", timeout_s=10.0)
    match = re.search(r"(\d+) active channels?", out)
    return int(match.group(1)) if match else -1


class Bench:
    def __init__(self, platform: LocalPlatform, phone: SippPhone) -> None:
        self.platform = platform
        self.phone = phone
        self.probe = CpuProbe(platform, phone)
        self.nc: Any = None
        self._cdr_cursor = ""
        self._messages_offset = 0

    async def start(self) -> None:
        self.nc = await nats.connect(self.platform.infra.endpoints.nats_url, name="bench")
        self._messages_offset = self._messages_size()

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()

    # ------------------------------------------------------------------ settling
    async def _events_pending(self) -> tuple[int, int]:
        """(messages not yet handled by the CALLS consumers, the stream's last sequence)."""
        jsm = self.nc.jetstream()
        info = await jsm.stream_info(subjects.CALLS_STREAM)
        pending = 0
        for consumer in await jsm.consumers_info(subjects.CALLS_STREAM):
            pending += (consumer.num_pending or 0) + (consumer.num_ack_pending or 0)
        return pending, int(info.state.last_seq)

    async def settle(self) -> tuple[float, int]:
        """Wait until Asterisk has no channels and every call event is consumed.

        Returns (seconds waited, channels still up at the timeout).
        """
        started = time.monotonic()
        deadline = started + SETTLE_TIMEOUT_S
        channels = await active_channels(self.platform)
        while channels != 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            channels = await active_channels(self.platform)
        # Routing publishes CallEnded after the channels are gone; wait until the stream
        # stops growing and every consumer (billing, observers) has acked everything.
        last_seq, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            pending, seq = await self._events_pending()
            if seq != last_seq:
                last_seq, stable_since = seq, time.monotonic()
            if pending == 0 and time.monotonic() - stable_since >= 0.75:
                break
            await asyncio.sleep(0.25)
        # Asterisk may still be delivering a backlog of ARI events to routing (its Stasis app
        # queue) with no channel left: wait until the processes are (nearly) idle again.
        previous = self.probe.snapshot()
        while time.monotonic() < deadline:
            await asyncio.sleep(QUIET_WINDOW_S)
            current = self.probe.snapshot()
            on_path = [n for n in current if n not in OTHER_INFRA_NAMES]
            busy = sum(current[n] - previous[n] for n in on_path) / QUIET_WINDOW_S
            previous = current
            if busy <= QUIET_CORES:
                break
        return time.monotonic() - started, max(channels, 0)

    # ------------------------------------------------------------------ CDRs
    async def _cdr_pages(self, cursor: str) -> tuple[list[dict[str, Any]], str]:
        """Every CDR after `cursor` (billing lists oldest first) and the cursor past them."""
        items: list[dict[str, Any]] = []
        while True:
            query = "?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            page = await self.platform.get_json("billing", f"/v1/cdrs{query}")
            items += page["items"]
            if page["items"]:
                cursor = _cursor_of(page["items"][-1])
            if not page.get("next_cursor"):
                return items, cursor

    async def new_cdrs(self) -> list[dict[str, Any]]:
        """CDRs stored since the previous call (billing lists them oldest first)."""
        items, self._cdr_cursor = await self._cdr_pages(self._cdr_cursor)
        return items

    async def all_cdrs(self) -> list[dict[str, Any]]:
        items, _ = await self._cdr_pages("")
        return items

    # ------------------------------------------------------------------ Asterisk log
    def _messages_size(self) -> int:
        try:
            return self.platform.asterisk.messages_log_path.stat().st_size
        except OSError:
            return 0

    def new_asterisk_warnings(self) -> dict[str, int]:
        """WARNING/ERROR lines Asterisk logged since the last call, grouped by message."""
        path = self.platform.asterisk.messages_log_path
        try:
            with path.open("rb") as f:
                f.seek(self._messages_offset)
                data = f.read()
        except OSError:
            return {}
        self._messages_offset += len(data)
        counts: Counter[str] = Counter()
        for line in data.decode(errors="replace").splitlines():
            match = re.search(r"\b(WARNING|ERROR)\[\d+\](?:\[[^\]]*\])?:?\s+(.*)", line)
            if match:
                counts[f"{match.group(1)} {_normalise(match.group(2))}"] += 1
        return dict(counts.most_common())

    # ------------------------------------------------------------------ one step
    async def step(self, path: str, rate: float, calls: int, caller: str) -> StepResult:
        number = {"a": str(self.phone.port), "b": BENCH.number, "c": BENCH_PLAN.number}[path]
        source = STATIC_TRUNK_HOST if path == "a" else PSTN_HOST
        self.new_asterisk_warnings()
        before = self.probe.snapshot()
        children_before = _children_cpu()
        started = time.monotonic()
        result = await self.platform.sipp.call(
            number,
            caller=caller,
            source_ip=source,
            hold_ms=HOLD_MS,
            calls=calls,
            rate=rate,
            rate_period_ms=1000,
            limit=max(50, int(rate * 4)),
            timeout_s=calls / rate + 60.0,
            extra_args=("-recv_timeout", str(RECV_TIMEOUT_MS)),
        )
        sipp_cpu = _children_cpu() - children_before
        sipp_s = time.monotonic() - started
        during = self.probe.snapshot()
        settle_s, leftover = await self.settle()
        after = self.probe.snapshot()
        wall = time.monotonic() - started
        cpu = {name: max(0.0, after[name] - before[name]) for name in before}
        cpu["sipp_caller"] = sipp_cpu
        step = _step_result(path, rate, caller, calls, result, cpu, wall)
        step.settle_s = settle_s
        step.sipp_s = sipp_s
        step.busy_cores = (sum(during[n] - before[n] for n in before) + sipp_cpu) / sipp_s
        step.leftover_channels = leftover
        step.asterisk_warnings = self.new_asterisk_warnings()
        if leftover:
            # Do not let a broken step's channels load the next one.
            with contextlib.suppress(Exception):
                await self.platform.asterisk.rx("channel request hangup all")
            await self.settle()
        if path in ROUTED_PATHS:
            cdrs = [c for c in await self.new_cdrs() if c["from_number"] == caller]
            step.cdr_total = len(cdrs)
            step.cdr_stored = sum(1 for c in cdrs if c.get("answered_at"))
            step.cdr_expected = step.completed
        return step


def _cursor_of(cdr: Mapping[str, Any]) -> str:
    """billing's cursor for "after this CDR" (its ended_at as billing renders it, and id)."""
    return base64.urlsafe_b64encode(f"{cdr['ended_at']}|{cdr['call_id']}".encode()).decode()


def _normalise(message: str) -> str:
    """A log message with its variable parts (ids, numbers, addresses) masked."""
    message = re.sub(r"\b(?:0x[0-9a-f]+|[0-9a-f]{8,}(?:[-.][0-9a-f]+)*)\b", "#", message)
    message = re.sub(r"\d+", "N", message)
    return message[:160]


def _step_result(
    path: str,
    rate: float,
    caller: str,
    requested: int,
    result: SippResult,
    cpu: dict[str, float],
    wall: float,
) -> StepResult:
    invites = sorted(c.invite_at for c in result.calls if c.invite_at is not None)
    achieved = None
    if len(invites) > 1 and invites[-1] > invites[0]:
        achieved = (len(invites) - 1) / (invites[-1] - invites[0])
    answer = result.rtt.get("answer", [])
    codes: Counter[str] = Counter(str(c.final_code) for c in result.calls)
    completed = result.successful
    return StepResult(
        path=path,
        rate=rate,
        caller=caller,
        requested=requested,
        invites=len(invites),
        completed=completed,
        failed=requested - completed,
        sipp_exit=result.exit_code,
        offered_cps=rate,
        achieved_cps=achieved,
        wall_s=wall,
        pdd_p50_ms=result.pdd_percentile(50),
        pdd_p99_ms=result.pdd_percentile(99),
        answer_p50_ms=percentile(answer, 50),
        answer_p99_ms=percentile(answer, 99),
        cpu_s=cpu,
        final_codes=dict(codes),
    )


# ---------------------------------------------------------------------------- summary
@dataclass
class PathSummary:
    path: str
    highest_ok_rate: float
    never_failed: bool
    asterisk_ms_per_call: float | None
    python_ms_per_call: float | None
    per_service_ms_per_call: dict[str, float | None]


def _aggregate(steps: Sequence[StepResult], names: Iterable[str]) -> float | None:
    calls = sum(s.completed for s in steps)
    if calls == 0:
        return None
    return 1000.0 * sum(s.cpu_s.get(n, 0.0) for s in steps for n in names) / calls


def summarise(steps: Sequence[StepResult], path: str, rates: Sequence[float]) -> PathSummary:
    mine = [s for s in steps if s.path == path]
    ok = [s for s in mine if s.ok]
    highest = max((s.rate for s in ok), default=0.0)
    tested = [s.rate for s in mine]
    never_failed = bool(mine) and all(s.ok for s in mine) and max(tested) == max(rates)
    return PathSummary(
        path=path,
        highest_ok_rate=highest,
        never_failed=never_failed,
        asterisk_ms_per_call=_aggregate(ok, ["asterisk"]),
        python_ms_per_call=_aggregate(ok, SERVICE_NAMES),
        per_service_ms_per_call={n: _aggregate(ok, [n]) for n in SERVICE_NAMES},
    )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def outcome_table(steps: Sequence[StepResult]) -> str:
    headers = [
        "rate",
        "path",
        "calls",
        "ok",
        "failed",
        "achieved/s",
        "pdd p50",
        "pdd p99",
        "ans p99",
        "cdr stored",
        "settle s",
        "step",
    ]
    rows = []
    for s in steps:
        cdr = "" if s.cdr_stored is None else f"{s.cdr_stored}/{s.cdr_expected}"
        rows.append(
            [
                f"{s.rate:g}",
                f"{s.path} {PATHS[s.path]}",
                str(s.requested),
                str(s.completed),
                str(s.failed),
                _fmt(s.achieved_cps, 1),
                _fmt(s.pdd_p50_ms, 1),
                _fmt(s.pdd_p99_ms, 1),
                _fmt(s.answer_p99_ms, 1),
                cdr,
                _fmt(s.settle_s, 1),
                "ok" if s.ok else "FAIL",
            ]
        )
    return _table(headers, rows)


def cpu_table(steps: Sequence[StepResult]) -> str:
    short = {
        "directory": "dir",
        "billing": "bill",
        "voicemail": "vm",
        "recording": "rec",
        "messaging": "msg",
    }
    headers = [
        "rate",
        "path",
        "asterisk",
        "python",
        *(short.get(n, n) for n in SERVICE_NAMES),
        *INFRA_NAMES,
        "sipp",
        "busy cores",
    ]
    rows = []
    for s in steps:
        sipp_ms = None
        if s.completed:
            sipp_s = s.cpu_s.get("sipp_caller", 0.0) + s.cpu_s.get("sipp_phone", 0.0)
            sipp_ms = 1000.0 * sipp_s / s.completed
        rows.append(
            [
                f"{s.rate:g}",
                f"{s.path} {PATHS[s.path]}",
                _fmt(s.cpu_ms_per_call("asterisk")),
                _fmt(s.python_ms_per_call),
                *(_fmt(s.cpu_ms_per_call(n)) for n in SERVICE_NAMES),
                *(_fmt(s.cpu_ms_per_call(n)) for n in INFRA_NAMES),
                _fmt(sipp_ms),
                _fmt(s.busy_cores),
            ]
        )
    return _table(headers, rows)


def nearest_common_step(
    steps: Sequence[StepResult], target: float, routed: str = "b"
) -> tuple[StepResult, StepResult] | None:
    """The (a, routed) steps at the tested rate nearest `target` that both paths ran."""
    by_rate: dict[float, dict[str, StepResult]] = {}
    for s in steps:
        by_rate.setdefault(s.rate, {})[s.path] = s
    common = [r for r, paths in by_rate.items() if "a" in paths and routed in paths]
    if not common:
        return None
    rate = min(common, key=lambda r: (abs(r - target), r))
    return by_rate[rate]["a"], by_rate[rate][routed]


def _ratio(b: float | None, a: float | None) -> float | None:
    if a is None or b is None or a == 0:
        return None
    return b / a


def _verdict(ok: bool | None) -> str:
    return "UNKNOWN" if ok is None else ("PASS" if ok else "FAIL")


def compare(steps: Sequence[StepResult], rates: Sequence[float]) -> dict[str, Any]:
    a = summarise(steps, "a", rates)
    b = summarise(steps, "b", rates)
    rate_ratio = _ratio(b.highest_ok_rate, a.highest_ok_rate)
    # CPU per call compared at the rates both paths ran without failures.
    both_ok = {s.rate for s in steps if s.path == "a" and s.ok} & {
        s.rate for s in steps if s.path == "b" and s.ok
    }
    a_common = [s for s in steps if s.path == "a" and s.rate in both_ok]
    b_common = [s for s in steps if s.path == "b" and s.rate in both_ok]
    ast_ratio = _ratio(_aggregate(b_common, ["asterisk"]), _aggregate(a_common, ["asterisk"]))
    half = a.highest_ok_rate / 2 if a.highest_ok_rate else min(rates)
    pair = nearest_common_step(steps, half)
    added_pdd = None
    half_step_rate = None
    half_ast_ratio = None
    if pair is not None:
        sa, sb = pair
        half_step_rate = sa.rate
        if sa.pdd_p99_ms is not None and sb.pdd_p99_ms is not None:
            added_pdd = sb.pdd_p99_ms - sa.pdd_p99_ms
        half_ast_ratio = _ratio(sb.cpu_ms_per_call("asterisk"), sa.cpu_ms_per_call("asterisk"))
    targets = {
        "rate_ratio": None if rate_ratio is None else rate_ratio >= TARGET_RATE_RATIO,
        "python_cpu": None
        if b.python_ms_per_call is None
        else b.python_ms_per_call <= TARGET_PY_CPU_MS,
        "added_pdd_p99": None if added_pdd is None else added_pdd <= TARGET_ADDED_PDD_P99_MS,
    }
    plan3 = compare_plan3(steps, rates, a) if any(s.path == "c" for s in steps) else None
    return {
        "a": asdict(a),
        "b": asdict(b),
        "plan3": plan3,
        "highest_ok_rate_ratio": rate_ratio,
        "asterisk_cpu_per_call_ratio": ast_ratio,
        "asterisk_cpu_ratio_rates": sorted(both_ok),
        "half_saturation_rate": half,
        "half_saturation_step": half_step_rate,
        "asterisk_cpu_per_call_ratio_at_half": half_ast_ratio,
        "added_pdd_p99_ms_at_half": added_pdd,
        "targets": targets,
    }


def compare_plan3(
    steps: Sequence[StepResult], rates: Sequence[float], a: PathSummary
) -> dict[str, Any]:
    """Issue #5's reading: calls/s through the 3-step plan vs bare dialplan (ratio), and the
    post-dial delay it adds at half of (a)'s saturation rate."""
    c = summarise(steps, "c", rates)
    half = a.highest_ok_rate / 2 if a.highest_ok_rate else min(rates)
    pair = nearest_common_step(steps, half, routed="c")
    added_pdd = None
    step_rate = None
    if pair is not None:
        sa, sc = pair
        step_rate = sa.rate
        if sa.pdd_p99_ms is not None and sc.pdd_p99_ms is not None:
            added_pdd = sc.pdd_p99_ms - sa.pdd_p99_ms
    return {
        "c": asdict(c),
        "highest_ok_rate_ratio": _ratio(c.highest_ok_rate, a.highest_ok_rate),
        "half_saturation_step": step_rate,
        "added_pdd_p99_ms_at_half": added_pdd,
        "targets": {
            "added_pdd_p99": None if added_pdd is None else added_pdd <= TARGET_ADDED_PDD_P99_MS
        },
    }


def summary_text(cmp: Mapping[str, Any]) -> str:
    a, b = cmp["a"], cmp["b"]
    lines = []
    for s in (a, b):
        note = " (never failed: saturation is at least this)" if s["never_failed"] else ""
        lines.append(
            f"{s['path']} {PATHS[s['path']]:>6}: highest failure-free rate "
            f"{s['highest_ok_rate']:g} calls/s{note}; over failure-free steps: "
            f"Asterisk {_fmt(s['asterisk_ms_per_call'])} ms/call, "
            f"Python {_fmt(s['python_ms_per_call'])} ms/call ("
            + ", ".join(f"{n} {_fmt(v)}" for n, v in s["per_service_ms_per_call"].items())
            + ")"
        )
    lines.append("")
    lines.append("ratios b/a:")
    lines.append(f"  highest failure-free rate      {_fmt(cmp['highest_ok_rate_ratio'])}")
    lines.append(
        f"  Asterisk CPU per call          {_fmt(cmp['asterisk_cpu_per_call_ratio'])}"
        f" (rates both ran failure-free: "
        f"{', '.join(f'{r:g}' for r in cmp['asterisk_cpu_ratio_rates']) or 'none'});"
        f" at {_fmt(cmp['half_saturation_step'], 0)}/s: "
        f"{_fmt(cmp['asterisk_cpu_per_call_ratio_at_half'])}"
    )
    lines.append(
        f"  added PDD p99 (b - a)          {_fmt(cmp['added_pdd_p99_ms_at_half'], 1)} ms"
        f" at the step {_fmt(cmp['half_saturation_step'], 0)}/s"
        f" (nearest half of a's saturation rate, {cmp['half_saturation_rate']:g}/s)"
    )
    t = cmp["targets"]
    lines.append("")
    lines.append(
        f"{_verdict(t['rate_ratio'])}: b sustains >= {TARGET_RATE_RATIO}x a's highest "
        f"failure-free rate (ratio {_fmt(cmp['highest_ok_rate_ratio'])})"
    )
    lines.append(
        f"{_verdict(t['python_cpu'])}: Python CPU <= {TARGET_PY_CPU_MS:g} ms per call across all "
        f"services (b: {_fmt(b['python_ms_per_call'])} ms)"
    )
    lines.append(
        f"{_verdict(t['added_pdd_p99'])}: added post-dial delay p99 <= "
        f"{TARGET_ADDED_PDD_P99_MS:g} ms at half the saturation rate "
        f"({_fmt(cmp['added_pdd_p99_ms_at_half'], 1)} ms)"
    )
    plan3 = cmp.get("plan3")
    if plan3:
        c = plan3["c"]
        lines.append("")
        lines.append(
            f"c {PATHS['c']:>6}: highest failure-free rate {c['highest_ok_rate']:g} calls/s; "
            f"over failure-free steps: Asterisk {_fmt(c['asterisk_ms_per_call'])} ms/call, "
            f"Python {_fmt(c['python_ms_per_call'])} ms/call (routing "
            f"{_fmt(c['per_service_ms_per_call'].get('routing'))})"
        )
        lines.append(
            f"  calls/s through the {PLAN3_STEPS}-step plan vs bare dialplan (c/a): "
            f"{_fmt(plan3['highest_ok_rate_ratio'])}"
        )
        lines.append(
            f"{_verdict(plan3['targets']['added_pdd_p99'])}: the {PLAN3_STEPS}-step plan adds "
            f"post-dial delay p99 <= {TARGET_ADDED_PDD_P99_MS:g} ms at half the saturation rate "
            f"({_fmt(plan3['added_pdd_p99_ms_at_half'], 1)} ms at "
            f"{_fmt(plan3['half_saturation_step'], 0)}/s)"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the run
def calls_for(rate: float, seconds: float) -> int:
    return max(MIN_CALLS_PER_STEP, min(MAX_CALLS_PER_STEP, round(rate * seconds)))


def caller_for(path: str, index: int, rate: float) -> str:
    """A distinct caller number per step and path, to find the step's CDRs."""
    return f"+4477{'abc'.index(path) + 1}{index:02d}{int(rate):04d}"


def progress_line(step: StepResult) -> str:
    cdr = "" if step.cdr_stored is None else f", cdr {step.cdr_stored}/{step.cdr_expected}"
    warnings = sum(step.asterisk_warnings.values())
    return (
        f"  {step.rate:>5g}/s {step.path} {PATHS[step.path]:<6} "
        f"{step.completed}/{step.requested} ok, achieved {_fmt(step.achieved_cps, 1)}/s, "
        f"pdd p99 {_fmt(step.pdd_p99_ms, 1)} ms, "
        f"asterisk {_fmt(step.cpu_ms_per_call('asterisk'))} ms/call, "
        f"python {_fmt(step.python_ms_per_call)} ms/call{cdr}, "
        f"{warnings} Asterisk warnings, {step.wall_s:.0f}s -> {'ok' if step.ok else 'FAIL'}"
    )


async def store_plan3_profile(platform: LocalPlatform) -> None:
    """Path (c)'s user gets its 3-step profile through routing's own document checks and
    store (what PUT .../routing does, without the gateway's sign-in), and the plan is checked
    to have those 3 steps before any call is timed."""
    user = resolve_pb2.ResolveNumberReply(
        status=resolve_pb2.ResolveNumberReply.STATUS_FOUND,
        tenant_id=TENANT,
        user_id=BENCH_PLAN.user_id,
        devices=[resolve_pb2.Device(device_id=BENCH_PLAN.device_id, kind="sip", dial_string="x")],
    )
    doc = document.parse_profile(PLAN3_PROFILE)
    routing = document.user_routing(user, doc, None, lambda number: f"PJSIP/pstn/{number}")
    plan = plan_call(
        routing.profile, Caller("+447700900000"), datetime.now(UTC), PlanContext(routing.tenant)
    )
    if len(plan.steps) != PLAN3_STEPS:
        raise RuntimeError(f"path (c)'s profile plans {plan_summary(plan)}")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(platform.infra.endpoints.mongo_url)
    try:
        store = ProfileStore(client, RoutingSettings().routing_db)
        current = await store.get_profile(TENANT, BENCH_PLAN.user_id)
        await store.put_profile(TENANT, BENCH_PLAN.user_id, doc, current.version, "bench")
    finally:
        await client.close()


async def idle_cpu(bench: Bench, seconds: float) -> dict[str, float]:
    """CPU ms per second of each component while no call is up."""
    before = bench.probe.snapshot()
    await asyncio.sleep(seconds)
    after = bench.probe.snapshot()
    return {n: 1000.0 * (after[n] - before[n]) / seconds for n in before}


async def run(args: argparse.Namespace) -> int:
    rates: list[float] = args.rates
    seconds: float = args.seconds_per_step
    data_dir = repo_root() / ".run" / "bench"
    shutil.rmtree(data_dir, ignore_errors=True)
    cores = os.cpu_count() or 0
    print(
        f"call_paths: {cores} cores shared by sipp (caller and phone), Asterisk, NATS, Redis, "
        f"the Mongo-wire DB and the services; ratios from one run, not absolute capacity.",
        flush=True,
    )
    print(
        f"rates {', '.join(f'{r:g}' for r in rates)} calls/s, {seconds:g} s worth per step "
        f"(>= {MIN_CALLS_PER_STEP}, <= {MAX_CALLS_PER_STEP} calls); hold {HOLD_MS} ms; "
        f"service log level {args.log_level}",
        flush=True,
    )
    platform = LocalPlatform(BENCH_PORTS, data_dir, INSTANCE, log_level=args.log_level)
    started_at = datetime.now(UTC)
    t0 = time.monotonic()
    steps: list[StepResult] = []
    meta: dict[str, Any] = {
        "started_at": started_at.isoformat(),
        "cores": cores,
        "loadavg_before": os.getloadavg(),
        "rates": rates,
        "seconds_per_step": seconds,
        "hold_ms": HOLD_MS,
        "log_level": args.log_level,
        "quick": args.quick,
    }
    phone: SippPhone | None = None
    bench: Bench | None = None
    broke: str | None = None
    try:
        await platform.start()
        print(f"platform up in {time.monotonic() - t0:.1f}s", flush=True)
        phone = await platform.sipp.start_phone(
            PhoneKind.ANSWER, BENCH.phone_port(BENCH_PORTS), ring_ms=0
        )
        bench = Bench(platform, phone)
        await bench.start()
        meta["processes"] = bench.probe.describe()
        meta["asterisk_version"] = (await platform.asterisk.rx("core show version")).strip()
        # Warm up both paths (directory cache, connections, JIT-less but lazy imports...).
        await store_plan3_profile(platform)
        for path in PATHS:
            warm = await bench.step(path, 5, 10, caller_for(path, 99, 5))
            if warm.completed == 0:
                raise RuntimeError(
                    f"warm-up calls on path {path} all failed: {warm.final_codes}; "
                    f"see {platform.sipp.host_dir / 'runs'}"
                )
        idle = await idle_cpu(bench, 3.0 if args.quick else 5.0)
        meta["idle_cpu_ms_per_s"] = idle
        print(
            "idle CPU ms/s: " + ", ".join(f"{n} {v:.0f}" for n, v in idle.items() if v >= 0.5),
            flush=True,
        )
        consecutive = dict.fromkeys(PATHS, 0)
        for index, rate in enumerate(rates):
            for path in PATHS:
                if consecutive[path] >= CONSECUTIVE_FAILS_TO_STOP:
                    continue
                calls = calls_for(rate, seconds)
                step = await bench.step(path, rate, calls, caller_for(path, index, rate))
                steps.append(step)
                consecutive[path] = 0 if step.ok else consecutive[path] + 1
                print(progress_line(step), flush=True)
            if all(c >= CONSECUTIVE_FAILS_TO_STOP for c in consecutive.values()):
                break
        # Authoritative CDR count: a full pass (a CDR stored after its step was counted).
        if any(s.path in ROUTED_PATHS for s in steps):
            await bench.settle()
            per_caller = Counter(
                c["from_number"] for c in await bench.all_cdrs() if c.get("answered_at")
            )
            for s in steps:
                if s.path in ROUTED_PATHS:
                    s.cdr_stored = per_caller.get(s.caller, 0)
    except Exception as exc:
        broke = f"{type(exc).__name__}: {exc}"
        print(f"\nthe run broke: {broke}", file=sys.stderr, flush=True)
    finally:
        if bench is not None:
            await bench.close()
        if phone is not None:
            with contextlib.suppress(Exception):
                await phone.stop()
        await platform.stop()
    meta["elapsed_s"] = time.monotonic() - t0
    meta["loadavg_after"] = os.getloadavg()
    cmp = compare(steps, rates) if steps else None
    print()
    print(
        f"Outcomes (pdd = INVITE->180, ans = INVITE->200, ms; cdr stored = answered CDRs "
        f"for the step's caller / answered calls). {cores} cores shared by everything."
    )
    print(outcome_table(steps))
    print()
    print(
        "CPU ms per completed call (incl. settling after the step; sipp = caller + phone; "
        "busy cores = measured CPU while sipp ran / that time)"
    )
    print(cpu_table(steps))
    warnings: Counter[str] = Counter()
    for s in steps:
        warnings.update(s.asterisk_warnings)
    if warnings:
        print("\nAsterisk warnings/errors during the steps (count, message):")
        for message, count in warnings.most_common(12):
            print(f"  {count:>6}  {message}")
    if cmp is not None:
        print()
        print(summary_text(cmp))
        if args.quick:
            print(
                "(--quick is a smoke run: at these low rates each process's idle cost weighs on"
                " the per-call numbers; the targets are judged on a full run, docs/benchmarks.md)"
            )
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"call_paths-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(
        json.dumps(
            {
                "meta": meta,
                "broke": broke,
                "steps": [s.to_json() for s in steps],
                "comparison": cmp,
            },
            indent=2,
            default=str,
        )
    )
    print(f"\nresults: {out} ({meta['elapsed_s']:.0f}s)")
    return 1 if broke else 0


def _rates(text: str) -> list[float]:
    rates = [float(r) for r in text.split(",") if r.strip()]
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("a comma-separated list of positive calls/s")
    return rates


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: few small steps")
    parser.add_argument("--rates", type=_rates, help="calls/s per step, e.g. 25,50,100")
    parser.add_argument("--seconds-per-step", type=float, help="calls per step = rate x this")
    parser.add_argument("--log-level", default="info", help="services' log level (info)")
    args = parser.parse_args(argv)
    if args.rates is None:
        args.rates = list(QUICK_RATES if args.quick else DEFAULT_RATES)
    if args.seconds_per_step is None:
        args.seconds_per_step = QUICK_SECONDS if args.quick else DEFAULT_SECONDS
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
