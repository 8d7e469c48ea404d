"""The voicemail step of a call: the caller leaves a message when nobody answered.

Routing drives the media over ARI; the voicemail service decides (over NATS request/reply):
deposit_begin says whether the user has a mailbox, what greeting to play and how long to
record; deposit_complete hands over the finished recording (Asterisk's spool; voicemail
fetches, stores and deletes it). A hang-up during the recording still saves the message.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from nats.aio.client import Client as NatsClient
from prometheus_client import Counter
from ringwise.voicemail.v1 import deposit_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.ari import (
    AriClient,
    AriEvent,
    ChannelDtmfReceived,
    PlaybackFinished,
    RecordingFailed,
    RecordingFinished,
)
from ringwise_kit.events import to_timestamp
from ringwise_kit.logs import get_logger

from ringwise_routing.calls.cdr import CallRecord

log = get_logger(__name__)

VOICEMAIL_CALLS = Counter(
    "ringwise_routing_voicemail_total", "Unanswered calls offered to voicemail", ["outcome"]
)
BEEP = ("sound:beep",)
SAVED = ("sound:vm-msgsaved", "sound:vm-goodbye")  # "Your message has been saved. Goodbye."
SKIP_GREETING_DIGIT = "#"
FINISH_DIGIT = "#"
PROMPT_TIMEOUT_S = 60.0
# After a hang-up, Asterisk closes the file and sends RecordingFinished within moments.
RECORDING_CLOSE_TIMEOUT_S = 3.0
COMPLETE_ATTEMPTS = 5

AVAILABILITY = {
    "NOANSWER": deposit_pb2.AVAILABILITY_AVAILABLE,
    "BUSY": deposit_pb2.AVAILABILITY_BUSY,
}


class CallerGone(Protocol):
    at: datetime


class Call(Protocol):
    """What the step needs of the call session (session.CallSession)."""

    call_id: str
    caller_id: str
    record: CallRecord

    async def wait_for(
        self, match: Callable[[AriEvent], bool], timeout_s: float
    ) -> AriEvent | None: ...


class VoicemailStep:
    def __init__(
        self,
        nc: NatsClient,
        ari: AriClient,
        caller_gone: type[Exception],
        *,
        timeout_s: float = 1.0,
    ) -> None:
        self._nc = nc
        self._ari = ari
        # session.CallerHungUp: what call.wait_for raises when the caller hangs up.
        self._caller_gone = caller_gone
        self._timeout_s = timeout_s

    async def deposit(self, call: Call, dialstatus: str) -> bool:
        """Take a message if the user has a mailbox; False leaves the caller to the old
        treatment (nothing was played). Raises the session's CallerHungUp when the caller
        leaves (after the message, if any, is handed over)."""
        record = call.record
        if not record.tenant_id or not record.user_id:
            return False
        try:
            begin = await bus.request(
                self._nc,
                subjects.VOICEMAIL_DEPOSIT_BEGIN,
                deposit_pb2.DepositBeginRequest(
                    tenant_id=record.tenant_id,
                    user_id=record.user_id,
                    call_id=call.call_id,
                    caller_number=record.from_number,
                    availability=AVAILABILITY.get(
                        dialstatus.upper(), deposit_pb2.AVAILABILITY_UNAVAILABLE
                    ),
                ),
                deposit_pb2.DepositBeginReply,
                self._timeout_s,
            )
        except Exception as exc:
            # Voicemail down: the caller gets the usual "not answering" rather than silence.
            log.warning("voicemail_unavailable", error=repr(exc))
            VOICEMAIL_CALLS.labels("voicemail_unavailable").inc()
            return False
        reply = deposit_pb2.DepositBeginReply
        if begin.status not in (reply.STATUS_RECORD, reply.STATUS_GREETING_ONLY):
            VOICEMAIL_CALLS.labels("no_mailbox").inc()
            return False
        log.info("voicemail_deposit", greeting=begin.greeting, deposit_id=begin.deposit_id)
        await self._ari.answer(call.caller_id)
        await self._play(call, begin.greeting_media, "greeting", stop_on=SKIP_GREETING_DIGIT)
        if begin.status == reply.STATUS_GREETING_ONLY:
            VOICEMAIL_CALLS.labels("greeting_only").inc()
            return True
        await self._play(call, BEEP, "beep")
        await self._record(call, begin)
        await self._play(call, SAVED, "saved")
        return True

    async def _play(
        self, call: Call, media: Sequence[str], label: str, stop_on: str | None = None
    ) -> None:
        if not media:
            return
        playback_id = f"{call.call_id}-vm-{label}"
        await self._ari.play(call.caller_id, list(media), playback_id)

        def done(event: AriEvent) -> bool:
            if isinstance(event, PlaybackFinished):
                return event.playback.id == playback_id
            return (
                stop_on is not None
                and isinstance(event, ChannelDtmfReceived)
                and event.channel.id == call.caller_id
                and event.digit == stop_on
            )

        event = await call.wait_for(done, PROMPT_TIMEOUT_S)
        if isinstance(event, ChannelDtmfReceived):
            await self._ari.stop_playback(playback_id)

    async def _record(self, call: Call, begin: deposit_pb2.DepositBeginReply) -> None:
        name = begin.recording_name
        started = datetime.now(UTC)
        await self._ari.request(
            "POST",
            f"/channels/{call.caller_id}/record",
            params={
                "name": name,
                "format": begin.recording_format or "wav",
                "maxDurationSeconds": begin.max_seconds,
                "maxSilenceSeconds": begin.max_silence_seconds,
                "ifExists": "overwrite",
                "beep": "false",
                "terminateOn": FINISH_DIGIT,
            },
        )

        def finished(event: AriEvent) -> bool:
            return (
                isinstance(event, RecordingFinished | RecordingFailed)
                and event.recording.name == name
            )

        gone: Exception | None = None
        result: AriEvent | None = None
        try:
            result = await call.wait_for(finished, begin.max_seconds + 10)
        except self._caller_gone as exc:
            # Hung up while recording: the message still counts. Wait for Asterisk to close
            # the file (later hang-up events of the same call raise again; keep waiting).
            gone = exc
            loop = asyncio.get_running_loop()
            deadline = loop.time() + RECORDING_CLOSE_TIMEOUT_S
            while result is None and loop.time() < deadline:
                with contextlib.suppress(self._caller_gone):
                    result = await call.wait_for(finished, deadline - loop.time())
        ended = result.timestamp if result is not None else datetime.now(UTC)
        failed = isinstance(result, RecordingFailed)
        await self._complete(call, begin, started, ended, recorded=not failed)
        VOICEMAIL_CALLS.labels("recording_failed" if failed else "recorded").inc()
        if gone is not None:
            raise gone

    async def _complete(
        self,
        call: Call,
        begin: deposit_pb2.DepositBeginReply,
        started: datetime,
        ended: datetime,
        *,
        recorded: bool,
    ) -> None:
        record = call.record
        request = deposit_pb2.DepositCompleteRequest(
            deposit_id=begin.deposit_id,
            tenant_id=record.tenant_id,
            user_id=record.user_id,
            call_id=call.call_id,
            recording_name=begin.recording_name if recorded else "",
            duration_ms=max(0, round((ended - started).total_seconds() * 1000)),
            caller_number=record.from_number,
            started_at=to_timestamp(started),
            recording_format=begin.recording_format or "wav",
        )
        # The same deposit id every time: voicemail de-duplicates, so retrying is safe.
        for attempt in range(1, COMPLETE_ATTEMPTS + 1):
            try:
                done = await bus.request(
                    self._nc,
                    subjects.VOICEMAIL_DEPOSIT_COMPLETE,
                    request,
                    deposit_pb2.DepositCompleteReply,
                    2.0,
                )
            except Exception as exc:
                log.warning("voicemail_complete_retry", attempt=attempt, error=repr(exc))
                await asyncio.sleep(0.5 * attempt)
                continue
            log.info(
                "voicemail_deposited",
                deposit_id=begin.deposit_id,
                status=deposit_pb2.DepositCompleteReply.Status.Name(done.status),
            )
            return
        # The recording stays in Asterisk's spool under its deposit name for an operator.
        log.error("voicemail_complete_failed", deposit_id=begin.deposit_id)
