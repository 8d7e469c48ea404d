"""sipp callers (the PSTN) and phones for the tests, the benchmark and the dev platform.

sipp runs inside the Asterisk chroot, so its scenarios (tests/sipp/*.xml) are copied into a
folder inside the chroot. Every run traces its messages as sipp's "short messages" CSV, from
which we derive what happened to each call; post-dial delay comes from sipp's response-time
counters (-trace_rtt).

Phone kinds: answer, answer_and_hangup, busy, noanswer. An "unreachable" phone is simply a
port where no phone listens: Asterisk gets no answer to its INVITE.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import math
import re
import shutil
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ringwise_dev.asterisk import chroot_root, repo_root
from ringwise_dev.ports import HOST, PSTN_HOST
from ringwise_dev.proc import ManagedProcess, ProcessFailed

if TYPE_CHECKING:
    from ringwise_dev.asterisk import AsteriskInstance

# The benchmark's baseline trunk: Asterisk identifies it by this source address.
STATIC_TRUNK_HOST = "127.0.0.3"
CALLER_SCENARIO = "pstn_caller.xml"
# The caller gives up (CANCEL) after ringing for a while.
CANCELLING_CALLER_SCENARIO = "pstn_caller_cancel.xml"
REGISTER_SCENARIO = "phone_register.xml"
# A provisioned phone placing a call (digest auth as its SIP user), and the carrier's side of
# the PSTN trunk where outbound calls arrive.
PHONE_CALL_SCENARIO = "phone_call.xml"
PHONE_CANCEL_SCENARIO = "phone_call_cancel.xml"
FAR_END_SCENARIO = "pstn_far_end.xml"
# "Wait for the far end's BYE": hold long enough that only the far end ends the call.
FOREVER_MS = 3_600_000
OLD_RUN_S = 6 * 3600
_run_ids = itertools.count(1)


def scenarios_dir() -> Path:
    return repo_root() / "tests" / "sipp"


class PhoneKind(StrEnum):
    ANSWER = "answer"
    """180, then 200 after ring_ms; waits for the caller's BYE. CANCEL -> 200 + 487."""
    ANSWER_AND_HANGUP = "answer_and_hangup"
    """Like answer, then sends BYE itself after hold_ms."""
    BUSY = "busy"
    """486 Busy Here."""
    NOANSWER = "noanswer"
    """180 and rings until CANCEL (200 + 487)."""
    KEEP_RECORDING = "keep_recording"
    """Like answer, then dials the feature code *9 (SIP INFO DTMF) 1 s into the call."""
    MWI = "mwi"
    """Takes message-waiting NOTIFYs (200) and logs their counts (SippPhone.mwi_counts)."""
    ANSWER_KEY = "answer_key"
    """Like answer, then presses `key` (SIP INFO DTMF) key_ms after the answer; hangs up 4 s
    later unless the far end did first (call screening: * accepts, anything else refuses)."""

    @property
    def scenario(self) -> str:
        return f"phone_{self.value}.xml"


@dataclass
class CallOutcome:
    """One SIP call as seen by one sipp (a caller or a phone)."""

    call_id: str
    invite_at: float | None = None
    final_code: int | None = None
    provisional: list[int] = field(default_factory=list)
    ringing_at: float | None = None
    answered_at: float | None = None
    far_end_bye: bool = False
    """A BYE was received: the other side hung up."""
    sent_bye: bool = False
    cancelled: bool = False
    """A CANCEL was received (phone side)."""
    challenged: bool = False
    """The INVITE was challenged for digest credentials (a phone's call) at least once."""

    @property
    def answered(self) -> bool:
        return self.final_code == 200

    @property
    def pdd_ms(self) -> float | None:
        """INVITE -> 180 (post-dial delay)."""
        if self.invite_at is None or self.ringing_at is None:
            return None
        return (self.ringing_at - self.invite_at) * 1000.0

    @property
    def answer_ms(self) -> float | None:
        """INVITE -> 200."""
        if self.invite_at is None or self.answered_at is None:
            return None
        return (self.answered_at - self.invite_at) * 1000.0


def parse_short_messages(path: Path) -> list[CallOutcome]:
    """Per-call outcomes from sipp's -trace_shortmsg file, in order of first appearance.

    Lines are tab separated: date, time, epoch seconds, S|R, Call-ID, "CSeq:n METHOD",
    first line of the message.
    """
    calls: dict[str, CallOutcome] = {}
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 7 or parts[3] not in ("S", "R"):
            continue
        try:
            at = float(parts[2])
        except ValueError:
            continue
        direction, call_id, cseq, first = parts[3], parts[4], parts[5], parts[6].strip()
        call = calls.setdefault(call_id, CallOutcome(call_id))
        method = cseq.rsplit(" ", 1)[-1]
        if first.startswith("SIP/2.0 "):
            try:
                code = int(first.split(" ", 2)[1])
            except (IndexError, ValueError):
                continue
            if method != "INVITE":
                continue
            if code in (401, 407) and not call.challenged:
                call.challenged = True  # the first challenge is not the call's outcome
                continue
            if code < 200:
                call.provisional.append(code)
                if code == 180 and call.ringing_at is None:
                    call.ringing_at = at
            elif call.final_code is None:
                call.final_code = code
                if code == 200:
                    call.answered_at = at
            continue
        request = first.split(" ", 1)[0]
        if request == "INVITE" and call.invite_at is None:
            call.invite_at = at
        elif request == "BYE":
            if direction == "R":
                call.far_end_bye = True
            else:
                call.sent_bye = True
        elif request == "CANCEL" and direction == "R":
            call.cancelled = True
    return list(calls.values())


def register_responses(path: Path) -> list[int]:
    """Status codes of the REGISTER responses in a -trace_shortmsg file, in order."""
    codes = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) < 7 or parts[3] != "R" or not parts[5].endswith("REGISTER"):
                continue
            first = parts[6].strip()
            if first.startswith("SIP/2.0 "):
                with contextlib.suppress(IndexError, ValueError):
                    codes.append(int(first.split(" ", 2)[1]))
    return codes


@dataclass
class Registration:
    """What the registrar answered to one REGISTER exchange."""

    responses: list[int]
    exit_code: int | None
    run_dir: Path

    @property
    def final_code(self) -> int | None:
        finals = [code for code in self.responses if code >= 200]
        return finals[-1] if finals else None

    @property
    def registered(self) -> bool:
        return self.final_code == 200


def parse_rtt(paths: Sequence[Path]) -> dict[str, list[float]]:
    """Response times (ms) per rtd counter from sipp's -trace_rtt CSV files."""
    out: dict[str, list[float]] = {}
    for path in paths:
        for line in path.read_text(errors="replace").splitlines()[1:]:
            cols = line.strip().split(";")
            if len(cols) < 3:
                continue
            with contextlib.suppress(ValueError):
                out.setdefault(cols[2], []).append(float(cols[1]))
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class SippResult:
    exit_code: int | None
    """sipp's exit code: 0 all calls ended as scenario expected, 1 some failed; None if killed."""
    calls: list[CallOutcome]
    rtt: dict[str, list[float]]
    """Per rtd counter ("pdd": INVITE->180, "answer": INVITE->200), values in ms."""
    run_dir: Path
    output_tail: str

    @property
    def successful(self) -> int:
        """Answered calls (200 to the INVITE)."""
        return sum(1 for c in self.calls if c.answered)

    @property
    def failed(self) -> int:
        return len(self.calls) - self.successful

    def final_codes(self) -> list[int | None]:
        return [c.final_code for c in self.calls]

    def pdd_percentile(self, q: float) -> float | None:
        return percentile(self.rtt.get("pdd", []), q)


def _udp_port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


async def _run_to_end(proc: ManagedProcess, timeout_s: float) -> int | None:
    """Wait for a started sipp to finish; its exit code, or None if it had to be stopped."""
    deadline = time.monotonic() + timeout_s
    while proc.running:
        if time.monotonic() > deadline:
            await proc.stop()
            return None
        await asyncio.sleep(0.02)
    return await proc.stop()


class SippPhone:
    """A long-lived sipp uas: one phone answering every call sent to its port."""

    def __init__(self, kind: PhoneKind, port: int, process: ManagedProcess, run_dir: Path):
        self.kind = kind
        self.port = port
        self.process = process
        self.run_dir = run_dir

    @property
    def uri(self) -> str:
        return f"sip:phone@{HOST}:{self.port}"

    @property
    def dial_string(self) -> str:
        """What Asterisk dials to reach this phone through the generic "phones" endpoint."""
        return f"PJSIP/phones/{self.uri}"

    @property
    def short_messages(self) -> Path:
        return self.run_dir / "shortmessages.log"

    def calls(self) -> list[CallOutcome]:
        return parse_short_messages(self.short_messages)

    def mwi_counts(self) -> list[tuple[bool, int, int, int]]:
        """(waiting, new, old, urgent) of each message-waiting NOTIFY received, in order."""
        path = self.run_dir / "mwi.log"
        if not path.exists():
            return []
        found = []
        for match in re.finditer(
            r"MWI waiting=(yes|no) new=(\d+) old=(\d+) urgent=(\d+)", path.read_text()
        ):
            waiting, new, old, urgent = match.groups()
            found.append((waiting == "yes", int(new), int(old), int(urgent)))
        return found

    def calls_handled(self) -> int:
        """INVITEs (distinct calls) this phone received."""
        return sum(1 for c in self.calls() if c.invite_at is not None)

    async def wait_calls(self, count: int, timeout_s: float = 10.0) -> list[CallOutcome]:
        deadline = time.monotonic() + timeout_s
        while self.calls_handled() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"phone {self.port} saw {self.calls_handled()}/{count} calls")
            await asyncio.sleep(0.05)
        return self.calls()

    async def stop(self) -> None:
        await self.process.stop()


def parse_invites(path: Path) -> list[dict[str, str]]:
    """The headers of each INVITE received in a sipp -trace_msg file (first INVITE of each
    Call-ID, names lower-cased; repeated headers joined by ", ")."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    invites: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n(?=-{10,} )", text):
        if "message received" not in block:
            continue
        lines = block.splitlines()
        start = next((i for i, line in enumerate(lines) if line.startswith("INVITE ")), None)
        if start is None:
            continue
        headers: dict[str, str] = {"request-line": lines[start].strip()}
        for line in lines[start + 1 :]:
            if not line.strip():
                break
            name, _, value = line.partition(":")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        invites.setdefault(headers.get("call-id", str(len(invites))), headers)
    return list(invites.values())


class SippFarEnd(SippPhone):
    """The carrier's side of the PSTN trunk: answers outbound calls and keeps their INVITEs."""

    @property
    def message_log(self) -> Path:
        return self.run_dir / "messages.log"

    def invites(self) -> list[dict[str, str]]:
        return parse_invites(self.message_log)


class SippWorkspace:
    """Runs sipp inside the chroot, with scenarios and run folders under one chroot folder."""

    def __init__(
        self,
        chroot_dir: PurePosixPath,
        sip_port: int,
        chroot: Path | None = None,
        target_host: str = HOST,
    ) -> None:
        self.chroot = chroot or chroot_root()
        self.chroot_dir = chroot_dir
        self.host_dir = self.chroot / chroot_dir.relative_to("/")
        self.target = f"{target_host}:{sip_port}"
        self._prepared = False

    @classmethod
    def for_asterisk(cls, asterisk: AsteriskInstance) -> SippWorkspace:
        """A workspace in the instance's folder, calling that instance's SIP port."""
        return cls(asterisk.chroot_dir / "sipp", asterisk.ports.sip, chroot=asterisk.chroot)

    def _prepare(self) -> None:
        if self._prepared:
            return
        scen = self.host_dir / "scenarios"
        scen.mkdir(parents=True, exist_ok=True)
        for path in scenarios_dir().glob("*.xml"):
            shutil.copyfile(path, scen / path.name)
        # Traces of earlier sessions pile up otherwise; anything this old is no longer running.
        cutoff = time.time() - OLD_RUN_S
        for run in (self.host_dir / "runs").glob("*"):
            with contextlib.suppress(OSError):
                if run.stat().st_mtime < cutoff:
                    shutil.rmtree(run)
        self._prepared = True

    def _new_run(self, label: str) -> tuple[Path, PurePosixPath]:
        name = f"{time.strftime('%H%M%S')}-{next(_run_ids):04d}-{label}"
        host = self.host_dir / "runs" / name
        if host.exists():
            shutil.rmtree(host)
        host.mkdir(parents=True)
        return host, self.chroot_dir / "runs" / name

    def _argv(self, run_in_chroot: PurePosixPath, scenario: str, args: Sequence[str]) -> list[str]:
        return [
            "chroot",
            str(self.chroot),
            # sipp writes its -trace_rtt file into its working directory.
            "env",
            "-C",
            str(run_in_chroot),
            "sipp",
            "-sf",
            str(self.chroot_dir / "scenarios" / scenario),
            "-nostdin",
            # The statistics screen goes to the log; refresh it rarely.
            "-f",
            "60",
            # Answer stray INFO/NOTIFY/OPTIONS/UPDATE with 200 instead of failing the call.
            "-aa",
            "-trace_shortmsg",
            "-shortmessage_file",
            str(run_in_chroot / "shortmessages.log"),
            "-trace_err",
            "-error_file",
            str(run_in_chroot / "errors.log"),
            *args,
        ]

    async def call(
        self,
        number: str,
        *,
        caller: str = "+15550001",
        source_ip: str = PSTN_HOST,
        local_port: int | None = None,
        hold_ms: int = 1000,
        wait_for_far_bye: bool = False,
        cancel_after_ms: int | None = None,
        calls: int = 1,
        rate: float | None = None,
        rate_period_ms: int = 1000,
        limit: int | None = None,
        timeout_s: float = 30.0,
        extra_args: Sequence[str] = (),
        scenario: str | None = None,
    ) -> SippResult:
        """Place `calls` calls to `number` (sipp uac) and wait until sipp ends.

        hold_ms: we hang up that long after the answer, unless the far end hangs up first;
        wait_for_far_bye: only the far end ends the call. cancel_after_ms: the caller hangs up
        (CANCEL) that long after the 180, before any answer. rate/limit: sipp -r/-l.
        source_ip PSTN_HOST reaches the Stasis trunk, STATIC_TRUNK_HOST the bench-static one.
        scenario: another caller scenario of tests/sipp (e.g. one that talks or sends DTMF;
        its -set variables in extra_args).
        """
        await asyncio.to_thread(self._prepare)
        run_host, run_chroot = await asyncio.to_thread(self._new_run, "caller")
        args = [
            "-i",
            source_ip,
            "-s",
            number,
            "-set",
            "caller",
            caller,
            "-d",
            str(
                cancel_after_ms
                if cancel_after_ms is not None
                else FOREVER_MS
                if wait_for_far_bye
                else hold_ms
            ),
            "-m",
            str(calls),
            "-trace_rtt",
            "-rtt_freq",
            "1",
        ]
        if local_port is not None:  # otherwise sipp takes the first free port from 5060
            args += ["-p", str(local_port)]
        if rate is not None:
            args += ["-r", f"{rate:g}", "-rp", str(rate_period_ms)]
        if limit is not None:
            args += ["-l", str(limit)]
        args += [*extra_args, self.target]
        proc = ManagedProcess(
            name=f"sipp-caller-{number}",
            argv=self._argv(
                run_chroot,
                scenario
                or (CALLER_SCENARIO if cancel_after_ms is None else CANCELLING_CALLER_SCENARIO),
                args,
            ),
            log_path=run_host / "sipp.log",
        )
        proc.start()
        code = await _run_to_end(proc, timeout_s)
        return SippResult(
            exit_code=code,
            calls=parse_short_messages(run_host / "shortmessages.log"),
            rtt=parse_rtt(sorted(run_host.glob("*_rtt.csv"))),
            run_dir=run_host,
            output_tail=proc.tail(15),
        )

    async def register(
        self,
        user: str,
        password: str,
        *,
        contact_port: int,
        expires_s: int = 120,
        local_port: int | None = None,
        timeout_s: float = 15.0,
    ) -> Registration:
        """REGISTER user (digest auth with password) so that calls for it go to a sipp phone
        answering on contact_port. expires_s 0 unregisters."""
        await asyncio.to_thread(self._prepare)
        run_host, run_chroot = await asyncio.to_thread(self._new_run, f"register-{user}")
        args = [
            "-i", HOST,
            "-au", user,
            "-ap", password,
            "-set", "user", user,
            "-set", "contact_port", str(contact_port),
            "-set", "expires", str(expires_s),
            "-m", "1",
        ]  # fmt: skip
        if local_port is not None:
            args += ["-p", str(local_port)]
        proc = ManagedProcess(
            name=f"sipp-register-{user}",
            argv=self._argv(run_chroot, REGISTER_SCENARIO, [*args, self.target]),
            log_path=run_host / "sipp.log",
        )
        proc.start()
        code = await _run_to_end(proc, timeout_s)
        return Registration(
            responses=register_responses(run_host / "shortmessages.log"),
            exit_code=code,
            run_dir=run_host,
        )

    async def place_phone_call(
        self,
        user: str,
        password: str,
        dialled: str,
        *,
        local_port: int,
        hold_ms: int = 1000,
        pin: str = "",
        pin_wait_ms: int = 1500,
        cancel_after_ms: int | None = None,
        timeout_s: float = 30.0,
    ) -> SippResult:
        """A provisioned phone (SIP user `user`) dials `dialled`: digest-authenticated
        INVITE, `pin` keyed as SIP INFO DTMF pin_wait_ms after the answer, hang-up hold_ms
        after the answer unless the other side ends the call first. cancel_after_ms: the
        phone gives up (CANCEL) that long after its 180 instead."""
        return await self.call(
            dialled,
            caller=user,
            source_ip=HOST,
            local_port=local_port,
            hold_ms=hold_ms if cancel_after_ms is None else cancel_after_ms,
            timeout_s=timeout_s,
            scenario=PHONE_CALL_SCENARIO if cancel_after_ms is None else PHONE_CANCEL_SCENARIO,
            extra_args=[
                "-au", user,
                "-ap", password,
                "-set", "pin", pin,
                "-set", "pin_wait_ms", str(pin_wait_ms),
            ],
        )  # fmt: skip

    async def start_far_end(self, port: int, *, ring_ms: int = 300) -> SippFarEnd:
        """The carrier's side of the trunk on PSTN_HOST:port (routing's trunk address)."""
        await asyncio.to_thread(self._prepare)
        run_host, run_chroot = await asyncio.to_thread(self._new_run, f"far-end-{port}")
        args = ["-i", PSTN_HOST, "-p", str(port), "-set", "ring_ms", str(ring_ms)]
        args += ["-trace_msg", "-message_file", str(run_chroot / "messages.log")]

        async def bound() -> bool:
            return _udp_port_taken(PSTN_HOST, port)

        if _udp_port_taken(PSTN_HOST, port):
            raise ProcessFailed(f"UDP {PSTN_HOST}:{port} is already in use")
        proc = ManagedProcess(
            name=f"sipp-far-end-{port}",
            argv=self._argv(run_chroot, FAR_END_SCENARIO, args),
            log_path=run_host / "sipp.log",
            ready=bound,
            ready_timeout_s=10.0,
            stop_timeout_s=3.0,
        )
        await proc.start_and_wait()
        return SippFarEnd(PhoneKind.ANSWER, port, proc, run_host)

    async def start_phone(
        self,
        kind: PhoneKind | str,
        port: int,
        *,
        ring_ms: int = 0,
        hold_ms: int = 1000,
        key: str = "*",
        key_ms: int = 1500,
        host: str = HOST,
    ) -> SippPhone:
        """Start a phone (sipp uas) on host:port; it serves calls until stopped."""
        kind = PhoneKind(kind)
        await asyncio.to_thread(self._prepare)
        run_host, run_chroot = await asyncio.to_thread(self._new_run, f"phone-{kind}-{port}")
        args = ["-i", host, "-p", str(port)]
        # sipp refuses -set for variables a scenario does not declare.
        if kind in (
            PhoneKind.ANSWER,
            PhoneKind.ANSWER_AND_HANGUP,
            PhoneKind.KEEP_RECORDING,
            PhoneKind.ANSWER_KEY,
        ):
            args += ["-set", "ring_ms", str(ring_ms)]
        if kind is PhoneKind.ANSWER_KEY:
            args += ["-set", "key", key, "-set", "key_ms", str(key_ms)]
        if kind is PhoneKind.ANSWER_AND_HANGUP:
            args += ["-set", "hold_ms", str(hold_ms)]
        if kind is PhoneKind.MWI:
            args += ["-trace_logs", "-log_file", str(run_chroot / "mwi.log")]

        async def bound() -> bool:
            return _udp_port_taken(host, port)

        if _udp_port_taken(host, port):
            raise ProcessFailed(f"UDP {host}:{port} is already in use")
        proc = ManagedProcess(
            name=f"sipp-phone-{kind}-{port}",
            argv=self._argv(run_chroot, kind.scenario, args),
            log_path=run_host / "sipp.log",
            ready=bound,
            ready_timeout_s=10.0,
            stop_timeout_s=3.0,
        )
        await proc.start_and_wait()
        return SippPhone(kind, port, proc, run_host)
