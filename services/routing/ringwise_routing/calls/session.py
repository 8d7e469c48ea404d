"""The ARI executor of one inbound call: carries out the routing decision and records the CDR.

One CallSession per call, running as its own task and fed that call's ARI events in order.
The caller may hang up at any moment: every wait raises CallerHungUp when that happens, so
each step only handles its own outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram
from ringwise.events.v1 import call_pb2
from ringwise_kit.ari import (
    AriClient,
    AriError,
    AriEvent,
    AriNotFound,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    Dial,
    PlaybackFinished,
    StasisEnd,
    StasisStart,
    calls,
)
from ringwise_kit.events import event_header
from ringwise_kit.logs import bind_call, get_logger
from ringwise_kit.subjects import CALL_ANSWERED, CALL_ROUTED, CALL_STARTED

from ringwise_routing.calls import policy, recording
from ringwise_routing.calls.cdr import CallRecord, call_ended
from ringwise_routing.calls.directory_client import NumberDirectory
from ringwise_routing.calls.publisher import EventPublisher

if TYPE_CHECKING:
    from ringwise_routing.calls.voicemail_step import VoicemailStep

log = get_logger(__name__)

CALLS = Counter("ringwise_routing_calls_total", "Inbound calls by disposition", ["disposition"])
ROUTE_SECONDS = Histogram(
    "ringwise_routing_decision_seconds",
    "StasisStart to the callee's dial request",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
)

FINAL_DIAL_STATUSES = frozenset(
    {"ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL", "DONTCALL", "TORTURE"}
)
HANGUP_EVENTS = (ChannelHangupRequest, StasisEnd, ChannelDestroyed)
PROMPT_TIMEOUT_S = 30.0
HANGUP_CONFIRM_TIMEOUT_S = 2.0
CHANNEL_CREATE_TIMEOUT_S = 2.0


class CallerHungUp(Exception):
    def __init__(self, at: datetime, cause: int) -> None:
        super().__init__(f"caller hung up (cause {cause})")
        self.at = at
        self.cause = cause


def _channel_of(event: AriEvent) -> str | None:
    channel = getattr(event, "channel", None)
    return channel.id if channel is not None else None


class CallSession:
    def __init__(
        self,
        start: StasisStart,
        ari: AriClient,
        directory: NumberDirectory,
        publisher: EventPublisher,
        register_channel: Callable[[str, CallSession], None],
        voicemail: VoicemailStep | None = None,
        recording_policies: recording.RecordingPolicies | None = None,
    ) -> None:
        self.call_id = uuid.uuid4().hex
        self.caller_id = start.channel.id
        self._start = start
        self._ari = ari
        self._directory = directory
        self._publisher = publisher
        self._register_channel = register_channel
        self._voicemail = voicemail
        self._events: asyncio.Queue[AriEvent] = asyncio.Queue()
        self._callee_id: str | None = None
        self._callee_gone = False
        self._bridge_id: str | None = None
        self._playbacks = 0
        self._started_event: call_pb2.CallStarted | None = None
        self._recording_policies = recording_policies
        self._recording_policy: asyncio.Task[recording.Policy] | None = None
        self._recording: recording.CallRecording | None = None
        self.channels: set[str] = {self.caller_id}
        channel = start.channel
        self.record = CallRecord(
            call_id=self.call_id,
            from_number=channel.caller.number,
            to_number=policy.normalize_number(channel.dialplan.exten),
            started_at=channel.creationtime or start.timestamp,
        )

    def feed(self, event: AriEvent) -> None:
        self._events.put_nowait(event)

    def gone_during_outage(self) -> None:
        """The caller's channel vanished while the ARI link was down (found by reconcile)."""
        now = datetime.now(UTC)
        self.feed(
            ChannelDestroyed(
                type="ChannelDestroyed",
                timestamp=now,
                cause=policy.CAUSE_NORMAL_CLEARING,
                channel=self._start.channel,
            )
        )

    # -- waiting -----------------------------------------------------------------------------

    async def _wait_for(
        self, match: Callable[[AriEvent], bool], timeout_s: float
    ) -> AriEvent | None:
        """Next event matching; None on timeout. Raises CallerHungUp whenever the caller goes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            # asyncio.timeout, not wait_for: no extra task per event on the hot path.
            try:
                async with asyncio.timeout(remaining):
                    event = await self._events.get()
            except TimeoutError:
                return None
            if isinstance(event, HANGUP_EVENTS) and _channel_of(event) == self._callee_id:
                self._callee_gone = True
            if match(event):
                return event
            if isinstance(event, HANGUP_EVENTS) and _channel_of(event) == self.caller_id:
                cause = getattr(event, "cause", 0) or policy.CAUSE_NORMAL_CLEARING
                raise CallerHungUp(event.timestamp, cause)

    async def wait_for(
        self, match: Callable[[AriEvent], bool], timeout_s: float
    ) -> AriEvent | None:
        """For the call's steps (voicemail_step): same contract as _wait_for."""
        return await self._wait_for(match, timeout_s)

    def track_channel(self, channel_id: str) -> None:
        """A channel a call step creates (voicemail's call back): its events come here."""
        self.channels.add(channel_id)
        self._register_channel(channel_id, self)

    # -- the call ----------------------------------------------------------------------------

    async def run(self) -> None:
        record = self.record
        with bind_call(self.call_id, channel_id=self.caller_id):
            log.debug("call_started", from_number=record.from_number, to_number=record.to_number)
            # Published together with CallRouted (one write); its time is the call's start.
            self._started_event = call_pb2.CallStarted(
                header=event_header("", self.call_id, CALL_STARTED, record.started_at),
                direction=call_pb2.DIRECTION_INBOUND,
                from_number=record.from_number,
                to_number=record.to_number,
                channel_id=self.caller_id,
                asterisk_id=self._start.asterisk_id,
            )
            try:
                await self._route()
            except CallerHungUp as gone:
                await self._caller_left(gone)
            except asyncio.CancelledError:
                # Shutdown with the call still up: it stays in Asterisk; no CDR is invented.
                log.warning("call_left_running_at_shutdown")
                raise
            except AriNotFound as exc:
                await self._not_found(exc)
            except Exception:
                log.exception("call_failed")
                await self._fail()
            await self._cleanup()
            await self._finish_recording()
            self._finish()

    async def _not_found(self, exc: AriNotFound) -> None:
        """A REST call raced a hang-up: if it was the caller's, the call simply ended."""
        if await self._ari.get_channel(self.caller_id) is None:
            log.info("caller_gone_during_request", error=str(exc))
            await self._caller_left(CallerHungUp(_now(), policy.CAUSE_NORMAL_CLEARING))
            return
        log.error("call_failed", error=str(exc))
        await self._fail()

    async def _fail(self) -> None:
        """The platform broke mid-call: end it with a retryable cause, never in silence."""
        record = self.record
        record.disposition = record.disposition or call_pb2.DISPOSITION_FAILED
        record.hangup_cause = policy.CAUSE_PLATFORM_FAILURE
        record.hangup_by = "platform"
        with contextlib.suppress(Exception):
            await self._hangup_caller(policy.CAUSE_PLATFORM_FAILURE)

    async def _route(self) -> None:
        record = self.record
        lookup = await self._directory.resolve(record.to_number)
        decision = policy.decide(record.to_number, lookup)
        record.tenant_id = decision.tenant_id
        record.user_id = decision.user_id
        with bind_call(self.call_id, tenant_id=record.tenant_id or None):
            log.info(
                "call_routed",
                from_number=record.from_number,
                to_number=record.to_number,
                action=decision.action.value,
                reasons=list(decision.reasons),
            )
            self._publish_started()
            self._publisher.publish(
                call_pb2.CallRouted(
                    header=event_header(
                        record.tenant_id, self.call_id, CALL_ROUTED, datetime.now(UTC)
                    ),
                    user_id=record.user_id,
                    decision=policy.to_proto(decision),
                )
            )
            if decision.action is policy.Action.REJECT:
                record.disposition = decision.disposition
                await self._announce_and_hang_up(decision.prompt, decision.hangup_cause)
                return
            if self._recording_policies is not None:
                # Resolved at call start, in parallel with ringing; needed once answered.
                self._recording_policy = asyncio.create_task(
                    self._recording_policies.policy_for(record.tenant_id, record.user_id)
                )
            await self._ring(decision.targets[0])

    async def _ring(self, target: policy.Target) -> None:
        record = self.record
        callee_id = f"{self.call_id}-1"
        self._callee_id = callee_id
        self.channels.add(callee_id)
        self._register_channel(callee_id, self)
        # Ringback to the caller and the callee's channel leave in one write.
        rang, created = await self._ari.run_all(
            calls.ring(self.caller_id),
            calls.create_channel(
                self._ari.app,
                target.dial_string,
                channel_id=callee_id,
                app_args=("dialed", self.call_id),
                originator=self.caller_id,
            ),
        )
        if isinstance(rang, AriNotFound):
            raise rang  # the caller is gone already
        try:
            if isinstance(created, AriError):
                raise created
            # The new channel must be in our Stasis app before it can be dialled.
            entered = await self._wait_for(
                lambda e: isinstance(e, StasisStart) and e.channel.id == callee_id,
                CHANNEL_CREATE_TIMEOUT_S,
            )
            if entered is None:
                raise AriError(504, "callee channel never entered Stasis", "POST", "/dial")
            await self._ari.dial(callee_id, caller=self.caller_id, timeout_s=target.ring_timeout_s)
        except AriError as exc:
            log.warning("dial_failed", device_id=target.device_id, error=str(exc))
            await self._unanswered("CHANUNAVAIL")
            return
        ROUTE_SECONDS.observe((datetime.now(UTC) - self._start.timestamp).total_seconds())
        log.debug("ringing", device_id=target.device_id, timeout_s=target.ring_timeout_s)

        rang = False

        def dial_result(event: AriEvent) -> bool:
            nonlocal rang
            if isinstance(event, Dial) and event.peer.id == callee_id:
                rang = rang or event.dialstatus in ("RINGING", "PROGRESS")
                return event.dialstatus in FINAL_DIAL_STATUSES
            return isinstance(event, ChannelDestroyed) and event.channel.id == callee_id

        # Asterisk enforces the ring timeout; ours is only a guard against a lost event.
        result = await self._wait_for(dial_result, target.ring_timeout_s + 5)
        if result is None:
            await self._unanswered("NOANSWER")
            return
        # Without a final Dial event (e.g. the ring timeout), the leg's destruction cause
        # says what happened: 19 no answer, 17 busy, 20 absent...
        status = (
            result.dialstatus
            if isinstance(result, Dial)
            else policy.dialstatus_for(getattr(result, "cause", 0), rang)
        )
        if status != "ANSWER":
            await self._unanswered(status)
            return
        record.answered_at = result.timestamp
        record.device_id = target.device_id
        await self._connect(callee_id)

    async def _connect(self, callee_id: str) -> None:
        record = self.record
        bridge_id = self.call_id
        self._bridge_id = bridge_id
        results = await self._ari.run_all(
            calls.answer(self.caller_id),
            calls.create_bridge(bridge_id),
            calls.add_to_bridge(bridge_id, [self.caller_id, callee_id]),
        )
        for result in results:
            if isinstance(result, AriError):
                raise result
        record.disposition = call_pb2.DISPOSITION_ANSWERED
        self._publisher.publish(
            call_pb2.CallAnswered(
                header=event_header(
                    record.tenant_id, self.call_id, CALL_ANSWERED, record.answered_at or _now()
                ),
                user_id=record.user_id,
                device_id=record.device_id,
            )
        )
        log.info("call_answered", device_id=record.device_id)
        await self._start_recording(bridge_id, callee_id)

        def callee_gone(event: AriEvent) -> bool:
            if isinstance(event, ChannelDtmfReceived) and self._recording is not None:
                self._recording.on_dtmf(event.channel.id, event.digit)  # feature codes
            return isinstance(event, HANGUP_EVENTS) and _channel_of(event) == callee_id

        # A bridged call lasts as long as the parties want; no timeout here.
        while True:
            event = await self._wait_for(callee_gone, 3600)
            if event is not None:
                break
        record.ended_at = event.timestamp
        record.hangup_by = "callee"
        record.hangup_cause = getattr(event, "cause", 0) or policy.CAUSE_NORMAL_CLEARING
        log.debug("callee_hung_up")
        # The caller's hang-up and the bridge's end leave in one write.
        await self._ari.run_all(
            calls.hangup(self.caller_id, reason_code=record.hangup_cause),
            calls.destroy_bridge(bridge_id),
        )
        self._bridge_id = None

    async def _start_recording(self, bridge_id: str, callee_id: str) -> None:
        if self._recording_policy is None:
            return
        chosen = await self._recording_policy

        def track_id(key: str) -> None:
            # The announcement (bridge), snoop channels and recordings reach this session.
            self.channels.add(key)
            self._register_channel(key, self)

        async def wait_unless_callee_leaves(
            match: Callable[[AriEvent], bool], timeout_s: float
        ) -> AriEvent | None:
            def callee_left(event: AriEvent) -> bool:
                return isinstance(event, HANGUP_EVENTS) and _channel_of(event) == callee_id

            event = await self._wait_for(lambda e: match(e) or callee_left(e), timeout_s)
            if event is not None and not match(event):
                self.feed(event)  # the callee left during the announcement: _connect sees it
                return None
            return event

        self._recording = await recording.start(
            self._ari,
            self.call_id,
            bridge_id,
            {"caller": self.caller_id, "callee": callee_id},
            chosen,
            wait_unless_callee_leaves,
            track_id,
        )

    async def _finish_recording(self) -> None:
        """After the bridge is gone: hand the recording to the archive (never fails the call)."""
        if self._recording is None:
            return
        loop = asyncio.get_running_loop()

        async def wait_past_hangups(
            match: Callable[[AriEvent], bool], timeout_s: float
        ) -> AriEvent | None:
            deadline = loop.time() + timeout_s
            while (left := deadline - loop.time()) > 0:
                with contextlib.suppress(CallerHungUp):
                    return await self._wait_for(match, left)
            return None

        try:
            self.record.ended_at = self.record.ended_at or _now()
            for finished in await self._recording.finish(self.record, wait_past_hangups):
                self._publisher.publish(finished)
        except Exception:
            log.exception("recording_not_handed_over", call_id=self.call_id)

    async def _unanswered(self, dialstatus: str) -> None:
        treatment = policy.treatment_for(dialstatus)
        self.record.disposition = treatment.disposition
        log.info("not_answered", dialstatus=dialstatus)
        if self._voicemail is not None and await self._voicemail.deposit(self, dialstatus):
            await self._announce_and_hang_up((), policy.CAUSE_NORMAL_CLEARING)
            return
        await self._announce_and_hang_up(treatment.prompt, treatment.hangup_cause)

    async def _announce_and_hang_up(self, prompt: tuple[str, ...], cause: int) -> None:
        if prompt:
            # Unanswered, Asterisk plays this as early media (183), then the hang-up cause
            # reaches the caller as the final response (1 -> 404, 19 -> 480, 17 -> 486...).
            self._playbacks += 1
            playback_id = f"{self.call_id}-p{self._playbacks}"
            await self._ari.play(self.caller_id, prompt, playback_id)
            await self._wait_for(
                lambda e: isinstance(e, PlaybackFinished) and e.playback.id == playback_id,
                PROMPT_TIMEOUT_S,
            )
        self.record.hangup_cause = cause
        self.record.hangup_by = "platform"
        await self._hangup_caller(cause)

    async def _hangup_caller(self, cause: int) -> None:
        """Hang up the caller and take the end time from Asterisk's own event."""
        if not await self._ari.hangup(self.caller_id, reason_code=cause):
            self.record.ended_at = self.record.ended_at or _now()
            return
        with contextlib.suppress(CallerHungUp):
            await self._wait_for(lambda e: False, HANGUP_CONFIRM_TIMEOUT_S)
        self.record.ended_at = self.record.ended_at or _now()

    async def _caller_left(self, gone: CallerHungUp) -> None:
        record = self.record
        if record.ended_at is None:
            record.ended_at = gone.at
        if record.disposition == call_pb2.DISPOSITION_UNSPECIFIED:
            record.disposition = call_pb2.DISPOSITION_CANCELLED
        if not record.hangup_by:
            record.hangup_by = "caller"
            record.hangup_cause = gone.cause
        log.debug("caller_hung_up", disposition=call_pb2.Disposition.Name(record.disposition))

    async def _cleanup(self) -> None:
        """Nothing of this call may be left ringing or bridged."""
        leftovers = []
        if self._callee_id and not self._callee_gone:
            leftovers.append(calls.hangup(self._callee_id))
        if self._bridge_id:
            leftovers.append(calls.destroy_bridge(self._bridge_id))
        if leftovers:
            with contextlib.suppress(Exception):
                await self._ari.run_all(*leftovers)  # gone already (404) is fine

    def _publish_started(self) -> None:
        if self._started_event is not None:
            self._publisher.publish(self._started_event)
            self._started_event = None

    def _finish(self) -> None:
        self._publish_started()  # the call ended before it was routed
        record = self.record
        record.ended_at = record.ended_at or _now()
        if record.disposition == call_pb2.DISPOSITION_UNSPECIFIED:
            record.disposition = call_pb2.DISPOSITION_FAILED
        cdr = call_ended(record)
        self._publisher.publish(cdr)
        CALLS.labels(call_pb2.Disposition.Name(record.disposition)).inc()
        with bind_call(self.call_id, tenant_id=record.tenant_id or None):
            log.info(
                "call_ended",
                disposition=call_pb2.Disposition.Name(record.disposition),
                billable_seconds=cdr.billable_seconds,
                hangup_by=record.hangup_by,
                hangup_cause=record.hangup_cause,
            )


def _now() -> datetime:
    return datetime.now(UTC)
