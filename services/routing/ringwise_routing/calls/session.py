"""The ARI executor of one call to a user: runs the routing engine's CallPlan and records the
CDR.

One CallSession per call, running as its own task and fed that call's ARI events in order.
The number is resolved (an unknown number or a directory outage gets today's treatment), the
user's routing comes from the ProfileSource, plans.engine.plan_call() turns it into steps,
and the steps run in order, each ending in "connected" or "fall through":

- Screen: the caller is answered, enters the call password (3 tries, else the plan skips to
  its final step) and/or says their name (recorded a few seconds on their channel).
- Ring: legs one by one (each its own timeout) or together ("Duet": the first ANSWER wins,
  every other leg is hung up at once so phones get CANCEL). Ringback throughout. With
  whisper, the answering leg hears "call from <name>, press star" first; anything else
  hangs that leg up and the plan goes on.
- Play, Reject (a prompt, then the cause), Voicemail (0 reaches the delegate), Divert (a
  user or delegate: their own plan; a team: its members' devices; external: the trunk).

The caller may hang up at any moment: every wait raises CallerHungUp when that happens, so
each step only handles its own outcomes. Whatever fails mid-plan, the caller hears a prompt
before the call is released, never silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram
from ringwise.directory.v1 import resolve_pb2
from ringwise.events.v1 import call_pb2
from ringwise_kit import subjects
from ringwise_kit.ari import (
    AriClient,
    AriError,
    AriEvent,
    AriNotFound,
    ChannelDestroyed,
    ChannelDtmfReceived,
    Dial,
    PlaybackFinished,
    RecordingFailed,
    RecordingFinished,
    StasisStart,
    calls,
)
from ringwise_kit.events import event_header
from ringwise_kit.logs import bind_call, get_logger
from ringwise_kit.subjects import CALL_ANSWERED, CALL_ROUTED, CALL_STARTED

from ringwise_routing.calls import policy, recording
from ringwise_routing.calls.call_state import recorded_before_ringing
from ringwise_routing.calls.cdr import CallRecord, call_ended
from ringwise_routing.calls.directory_client import NumberDirectory
from ringwise_routing.calls.publisher import EventPublisher
from ringwise_routing.calls.voicemail_step import Deposit, Keys
from ringwise_routing.calls.waiting import (
    HANGUP_EVENTS,
    CallerHungUp,
    EventInbox,
    channel_of,
    next_event,
)
from ringwise_routing.plans.engine import (
    CallPlan,
    Divert,
    DivertKind,
    Leg,
    Play,
    Reject,
    Ring,
    Screen,
    Voicemail,
    plan_call,
)
from ringwise_routing.plans.explain import plan_summary, reason_codes, step_summary
from ringwise_routing.plans.model import Caller, PlanContext, RingMode
from ringwise_routing.profiles.document import verify_secret_off_loop
from ringwise_routing.profiles.source import (
    ProfileSource,
    UserRouting,
    default_routing,
    device_dial_string,
    leg_timeout,
)
from ringwise_routing.provisioning.edge import PhonesViaEdge

if TYPE_CHECKING:
    from ringwise_routing.calls.call_state import CallStateStore
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
PROMPT_TIMEOUT_S = 30.0
HANGUP_CONFIRM_TIMEOUT_S = 2.0
CHANNEL_CREATE_TIMEOUT_S = 2.0
WHISPER_TIMEOUT_S = 20.0  # the whole "call from <name>, press star" plus the wait for a key

UserReply = resolve_pb2.ResolveNumberReply


@dataclass(frozen=True)
class CallServices:
    """What every call session uses (built once by the router)."""

    ari: AriClient
    directory: NumberDirectory
    publisher: EventPublisher
    profiles: ProfileSource
    trunk_dial: Callable[[str], str]
    voicemail: VoicemailStep | None = None
    recording_policies: recording.RecordingPolicies | None = None
    call_state: CallStateStore | None = None
    # Phones dialled through the SIP edge when it has a location service (Kubernetes).
    phones: PhonesViaEdge = field(default_factory=PhonesViaEdge)


@dataclass(frozen=True)
class InternalCall:
    """A user's phone calling another user of the tenant (extension dialling)."""

    caller: UserReply
    callee: UserReply


@dataclass
class LegCall:
    """One callee channel of the call (a ring leg)."""

    channel_id: str
    leg: Leg
    rang: bool = False
    status: str = ""  # final dial status ("" while ringing)
    gone: bool = False  # hung up / destroyed: nothing to clean up


class CallSession:
    def __init__(
        self,
        start: StasisStart,
        services: CallServices,
        register_channel: Callable[[str, CallSession], None],
        internal: InternalCall | None = None,
    ) -> None:
        self.call_id = uuid.uuid4().hex
        self.caller_id = start.channel.id
        self._start = start
        self._services = services
        self._ari = services.ari
        self._directory = services.directory
        self._publisher = services.publisher
        self._register_channel = register_channel
        self._voicemail = services.voicemail
        self._internal = internal
        self._events = EventInbox()
        self._legs: dict[str, LegCall] = {}
        self._leg_count = 0
        self._bridge_id: str | None = None
        self._playbacks = 0
        self._started_event: call_pb2.CallStarted | None = None
        self._recording_policies = services.recording_policies
        self._recording_policy: asyncio.Task[recording.Policy] | None = None
        self._recording: recording.CallRecording | None = None
        # What the plan's run has learnt so far.
        self._caller: Caller = Caller(start.channel.caller.number or None)
        # Up already: a click-to-dial user who answered their callback (in-band ringback).
        self._caller_answered = start.channel.state == "Up"
        self._ringback_playback: str | None = None
        self._screen_name: str | None = None  # the caller's recorded name (screening)
        self._last_status = "CHANUNAVAIL"  # of the last ring step; nobody rung = unreachable
        self._routed_at: float | None = None
        self._planned = False  # a user's plan ran: a CallMissed is due if nobody answered
        self._recorded = False  # state and route events stored before the first dial
        self._rejected = False
        self._diverts = 0
        self.message_left = False  # voicemail_step sets it
        self.channels: set[str] = {self.caller_id}
        channel = start.channel
        self.record = CallRecord(
            call_id=self.call_id,
            from_number=channel.caller.number,
            to_number=policy.normalize_number(channel.dialplan.exten),
            started_at=channel.creationtime or start.timestamp,
        )
        if internal is not None:
            self.record.direction = call_pb2.DIRECTION_INTERNAL
            self.record.from_number = (
                internal.caller.extension or internal.caller.smartnumber or channel.caller.number
            )
            self.record.to_number = internal.callee.extension or internal.callee.smartnumber
            self._caller = Caller(
                internal.caller.smartnumber or internal.caller.extension or None,
                internal.caller.user_name,
                internal_user_id=internal.caller.user_id,
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
        return await next_event(
            self._events, match, timeout_s, caller_id=self.caller_id, seen=self._note_leg_gone
        )

    def _note_leg_gone(self, event: AriEvent) -> None:
        if isinstance(event, HANGUP_EVENTS):
            leg = self._legs.get(channel_of(event) or "")
            if leg is not None:
                leg.gone = True

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
                direction=record.direction,
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
                # Shutdown with the call still up: it stays in Asterisk; no CDR is invented
                # here (the next instance adopts it from the call state in Redis).
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
        """The platform broke mid-call: a spoken "all circuits busy", then a retryable cause;
        never silence."""
        record = self.record
        record.disposition = record.disposition or call_pb2.DISPOSITION_FAILED
        record.hangup_cause = policy.CAUSE_PLATFORM_FAILURE
        record.hangup_by = "platform"
        with contextlib.suppress(Exception):
            await self._cleanup()
            if self._bridge_id is None:
                await self._announce(policy.PROMPT_PLATFORM_FAILURE)
        with contextlib.suppress(Exception):
            await self._hangup_caller(policy.CAUSE_PLATFORM_FAILURE)

    # -- routing -------------------------------------------------------------------------------

    async def _route(self) -> None:
        record = self.record
        if self._internal is not None:
            user: UserReply = self._internal.callee
        else:
            lookup = await self._directory.resolve(record.to_number)
            if isinstance(lookup, policy.LookupFailed) or lookup.status != UserReply.STATUS_FOUND:
                await self._refuse(policy.decide(record.to_number, lookup))
                return
            user = lookup
            self._caller = Caller(record.from_number or None, self._start.channel.caller.name)
        record.tenant_id = user.tenant_id
        record.user_id = user.user_id
        with bind_call(self.call_id, tenant_id=record.tenant_id or None):
            routing, leading = await self._routing_for(user)
            context = PlanContext(routing.tenant)
            plan = plan_call(routing.profile, self._caller, _now(), context)
            decision = policy.plan_decision(record.to_number, user, plan, leading=leading)
            log.info(
                "call_routed",
                from_number=record.from_number,
                to_number=record.to_number,
                state=plan.state,
                steps=plan_summary(plan),
                reasons=reason_codes(plan),
            )
            self._publish_started()
            self._publisher.publish(
                call_pb2.CallRouted(
                    header=event_header(record.tenant_id, self.call_id, CALL_ROUTED, _now()),
                    user_id=record.user_id,
                    decision=decision,
                )
            )
            self._planned = True
            if self._recording_policies is not None:
                # Resolved at call start, in parallel with ringing; needed once answered.
                self._recording_policy = asyncio.create_task(
                    self._recording_policies.policy_for(record.tenant_id, record.user_id)
                )
            self._save_state()
            await self._run_plan(plan, context)

    async def _refuse(self, decision: policy.Decision) -> None:
        """Not a user's number, or the directory cannot say: today's treatment."""
        record = self.record
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
                header=event_header(record.tenant_id, self.call_id, CALL_ROUTED, _now()),
                user_id=record.user_id,
                decision=policy.to_proto(decision),
            )
        )
        record.disposition = decision.disposition
        await self._announce_and_hang_up(decision.prompt, decision.hangup_cause)

    async def _routing_for(
        self, user: UserReply
    ) -> tuple[UserRouting, tuple[tuple[str, str], ...]]:
        """The user's routing; if the profile store cannot be read, the default routing (their
        devices ring) rather than a failed call."""
        try:
            return await self._services.profiles.routing_for(user), ()
        except Exception as exc:
            log.error("profile_unavailable", user_id=user.user_id, error=repr(exc))
            reason = ("profile.unavailable", "the routing profile could not be read: defaults")
            return default_routing(user, self._services.trunk_dial), (reason,)

    async def _run_plan(self, plan: CallPlan, context: PlanContext) -> None:
        """Run the steps in order until one connects the call or the final step ends it.
        A non-final step that breaks (Asterisk refused a request) goes on with the plan's
        final step, so the caller still ends somewhere audible."""
        steps = plan.steps
        index = 0
        while index < len(steps) - 1:
            step = steps[index]
            index += 1
            log.debug("plan_step", user_id=plan.user_id, step=step_summary(step))
            try:
                if isinstance(step, Screen):
                    if not await self._screen(step):
                        break  # screening failed: nobody is rung
                elif isinstance(step, Ring):
                    if await self._ring(step):
                        return
                elif isinstance(step, Play):
                    await self._announce(tuple(policy.playable(m) for m in step.media))
            except (CallerHungUp, AriNotFound):
                raise
            except AriError as exc:
                if self._bridge_id is not None:
                    raise  # the conversation itself broke: run() ends the call
                log.error("plan_step_failed", step=step_summary(step), error=str(exc))
                await self._hang_up_legs()
                break
        final = plan.final
        log.debug("plan_step", user_id=plan.user_id, step=step_summary(final))
        if isinstance(final, Reject):
            prompted = len(steps) > 1 and isinstance(steps[-2], Play) and index == len(steps) - 1
            await self._reject(final.cause, prompted=prompted)
        elif isinstance(final, Voicemail):
            await self._voicemail_step(final, plan, context)
        else:
            await self._divert(final, plan, context)

    async def _hang_up_legs(self) -> None:
        """Hang up every leg still up (a ring step that broke half-way)."""
        up = [leg for leg in self._legs.values() if not leg.gone and not leg.status]
        for leg in up:
            leg.status = "CHANUNAVAIL"
        if up:
            with contextlib.suppress(Exception):
                await self._ari.run_all(*(calls.hangup(leg.channel_id) for leg in up))

    # -- screening -----------------------------------------------------------------------------

    async def _screen(self, step: Screen) -> bool:
        """Call password and/or the caller's name. False: the password was wrong 3 times."""
        await self._answer_caller()
        keys = Keys(self._ari, self)
        if step.password is not None:
            for _attempt in range(policy.SCREEN_PASSWORD_TRIES):
                entered = await keys.number(policy.PROMPT_ENTER_PASSWORD, max_digits=12)
                if await verify_secret_off_loop(step.password, entered):
                    break
                await keys.play(policy.PROMPT_WRONG_PASSWORD)
            else:
                log.info("screen_password_refused")
                return False
        if step.ask_name:
            await keys.play(policy.PROMPT_SAY_NAME)
            name = f"rw-screen-{self.call_id}"
            try:
                await self._ari.call(
                    calls.record_channel(
                        self.caller_id,
                        name,
                        if_exists="overwrite",
                        max_duration_s=policy.SCREEN_NAME_SECONDS,
                        terminate_on="#",
                    )
                )
                done = await self._wait_for(
                    lambda e: isinstance(e, RecordingFinished | RecordingFailed)
                    and e.recording.name == name,
                    policy.SCREEN_NAME_SECONDS + 5,
                )
            except AriError as exc:
                log.warning("screen_name_not_recorded", error=str(exc))
                done = None
            if isinstance(done, RecordingFinished):
                self._screen_name = name
        await keys.play(policy.PROMPT_PLEASE_HOLD)
        return True

    async def _whisper(self, leg: LegCall) -> bool:
        """The answering leg hears who calls; True when it pressed * to accept."""
        name = (f"recording:{self._screen_name}",) if self._screen_name else ()
        media = policy.PROMPT_WHISPER_FROM + name + policy.PROMPT_WHISPER_ACCEPT
        self._playbacks += 1
        playback_id = f"{self.call_id}-w{self._playbacks}"
        await self._ari.play(leg.channel_id, list(media), playback_id)

        def answered(event: AriEvent) -> bool:
            if channel_of(event) != leg.channel_id:
                return False
            return isinstance(event, (ChannelDtmfReceived, *HANGUP_EVENTS))

        event = await self._wait_for(answered, WHISPER_TIMEOUT_S)
        await self._ari.stop_playback(playback_id)
        accepted = (
            isinstance(event, ChannelDtmfReceived) and event.digit == policy.SCREEN_ACCEPT_DIGIT
        )
        log.info("screen_whisper", accepted=accepted, device_id=leg.leg.terminal_id)
        return accepted

    # -- ringing -------------------------------------------------------------------------------

    async def _ring(self, step: Ring) -> bool:
        """Ring the step's legs; True when one answered (and the call has ended since)."""
        if step.mode is RingMode.SIMULTANEOUS:
            groups = [step.legs]
        else:
            groups = [(leg,) for leg in step.legs]
        for group in groups:
            if await self._ring_together(group, whisper=step.whisper):
                return True
        return False

    async def _ring_together(self, legs: tuple[Leg, ...], *, whisper: bool) -> bool:
        """Create and dial every leg at once; the first ANSWER wins and the others are hung up
        at once (their phones get CANCEL). A busy or unreachable leg leaves the others ringing."""
        group: dict[str, LegCall] = {}
        creates = []
        for leg in legs:
            self._leg_count += 1
            leg_call = LegCall(f"{self.call_id}-{self._leg_count}", leg)
            group[leg_call.channel_id] = leg_call
            self._legs[leg_call.channel_id] = leg_call
            self.channels.add(leg_call.channel_id)
            self._register_channel(leg_call.channel_id, self)
            creates.append(
                calls.create_channel(
                    self._ari.app,
                    self._services.phones.dial_string(leg.dial_string),
                    channel_id=leg_call.channel_id,
                    app_args=("dialed", self.call_id),
                    originator=self.caller_id,
                )
            )
        # Ringback to the caller and the legs' channels leave in one write.
        ring = [] if self._caller_answered else [calls.ring(self.caller_id)]
        results = await self._ari.run_all(*ring, *creates)
        if ring:
            if isinstance(results[0], AriNotFound):
                raise results[0]  # the caller is gone already
            results = results[1:]
        else:
            await self._ringback_tone()
        ringing: dict[str, LegCall] = {}
        for leg_call, result in zip(group.values(), results, strict=True):
            if isinstance(result, AriError):
                log.warning(
                    "leg_not_created", device_id=leg_call.leg.terminal_id, error=str(result)
                )
                leg_call.status, leg_call.gone = "CHANUNAVAIL", True
            else:
                ringing[leg_call.channel_id] = leg_call
        # The first legs: the call must be on record before a phone rings (a crash from now
        # on is ended, with its CDR, by the next instance); started now, awaited before the
        # dial, so Redis and NATS answer while the legs enter Stasis.
        first_ring = not self._recorded
        self._save_state(hurry=first_ring)
        if first_ring:
            self._publisher.hurry()
        # A new channel must be in our Stasis app before it can be dialled.
        entering = set(ringing)
        while entering:
            entered = await self._wait_for(
                lambda e: channel_of(e) in entering
                and isinstance(e, StasisStart | ChannelDestroyed),
                CHANNEL_CREATE_TIMEOUT_S,
            )
            if entered is None:
                break
            channel_id = channel_of(entered) or ""
            entering.discard(channel_id)
            if isinstance(entered, ChannelDestroyed):
                ringing.pop(channel_id).status = "CHANUNAVAIL"
        for channel_id in entering:  # never entered Stasis: give up on it
            log.warning("leg_never_entered_stasis", channel_id=channel_id)
            ringing.pop(channel_id).status = "CHANUNAVAIL"
            await self._ari.hangup(channel_id)
        if first_ring:
            await recorded_before_ringing(self._services.call_state, self._publisher)
            self._recorded = True
        dials = await self._ari.run_all(
            *(
                calls.dial(channel_id, caller=self.caller_id, timeout_s=leg_call.leg.timeout_s)
                for channel_id, leg_call in ringing.items()
            )
        )
        for (channel_id, leg_call), dialled in zip(list(ringing.items()), dials, strict=True):
            if isinstance(dialled, AriError):
                log.warning("dial_failed", device_id=leg_call.leg.terminal_id, error=str(dialled))
                del ringing[channel_id]
                leg_call.status = "CHANUNAVAIL"
                await self._ari.hangup(channel_id)
        if ringing and self._routed_at is None:
            self._routed_at = (_now() - self._start.timestamp).total_seconds()
            ROUTE_SECONDS.observe(self._routed_at)
        log.debug("ringing", devices=[c.leg.terminal_id for c in ringing.values()])

        winner, answered_at = await self._first_answer(ringing)
        losers = [c for c in ringing.values() if c is not winner and not c.status]
        for loser in losers:
            loser.status = "CANCEL"
        if losers:
            # Hung up at once: no ghost rings on the other phones.
            await self._ari.run_all(*(calls.hangup(c.channel_id) for c in losers))
        if winner is None:
            self._last_status = policy.combined_dialstatus([c.status for c in group.values()])
            log.info("not_answered", dialstatus=self._last_status)
            return False
        if whisper and not await self._whisper(winner):
            winner.status = "NOANSWER"
            self._last_status = "NOANSWER"
            await self._ari.hangup(winner.channel_id)
            return False
        record = self.record
        record.answered_at = _now() if whisper else answered_at
        record.device_id = winner.leg.terminal_id
        await self._connect(winner.channel_id)
        return True

    async def _first_answer(
        self, ringing: dict[str, LegCall]
    ) -> tuple[LegCall | None, datetime | None]:
        """Wait until a leg answers or every leg ended; (winner, when) or (None, None)."""
        active = set(ringing)

        def dial_result(event: AriEvent) -> bool:
            if isinstance(event, Dial):
                return event.peer.id in active
            return isinstance(event, ChannelDestroyed) and event.channel.id in active

        # Asterisk enforces each leg's timeout; ours is only a guard against a lost event.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max((c.leg.timeout_s for c in ringing.values()), default=0) + 5
        while active:
            event = await self._wait_for(dial_result, deadline - loop.time())
            if event is None:
                for channel_id in active:
                    ringing[channel_id].status = "NOANSWER"
                    await self._ari.hangup(channel_id, reason_code=policy.CAUSE_NO_ANSWER)
                return None, None
            if isinstance(event, Dial):
                leg_call = ringing[event.peer.id]
                if event.dialstatus in ("RINGING", "PROGRESS"):
                    leg_call.rang = True
                if event.dialstatus == "ANSWER":
                    return leg_call, event.timestamp
                if event.dialstatus not in FINAL_DIAL_STATUSES:
                    continue
                leg_call.status = event.dialstatus
            elif isinstance(event, ChannelDestroyed):
                # Without a final Dial event (e.g. the ring timeout), the leg's destruction
                # cause says what happened: 19 no answer, 17 busy, 20 absent...
                leg_call = ringing[event.channel.id]
                leg_call.status = leg_call.status or policy.dialstatus_for(
                    event.cause, leg_call.rang
                )
            else:
                continue
            active.discard(leg_call.channel_id)
        return None, None

    async def _ringback_tone(self) -> None:
        """An answered caller (screening, voicemail's 0) hears ringing as in-band tone."""
        if self._ringback_playback is not None:
            return
        self._playbacks += 1
        self._ringback_playback = f"{self.call_id}-rb{self._playbacks}"
        await self._ari.play(self.caller_id, policy.RINGBACK_TONE, self._ringback_playback)

    async def _stop_ringback(self) -> None:
        if self._ringback_playback is not None:
            playback, self._ringback_playback = self._ringback_playback, None
            await self._ari.stop_playback(playback)

    async def _answer_caller(self) -> None:
        if not self._caller_answered:
            await self._ari.answer(self.caller_id)
            self._caller_answered = True

    # -- final steps ---------------------------------------------------------------------------

    async def _reject(self, cause: int, *, prompted: bool) -> None:
        """Release with the plan's cause; a prompt first unless the plan just played one."""
        record = self.record
        self._rejected = True
        if self._legs:
            record.disposition = policy.treatment_for(self._last_status).disposition
        else:
            record.disposition = policy.disposition_for_cause(cause)
        prompt: tuple[str, ...] = ()
        if not prompted and cause != policy.CAUSE_USER_BUSY:
            prompt = (
                policy.PROMPT_NOT_ANSWERING
                if cause == policy.CAUSE_NO_ANSWER
                else policy.PROMPT_UNREACHABLE
            )
        log.info("call_rejected", cause=cause)
        await self._announce_and_hang_up(prompt, cause)

    async def _voicemail_step(self, step: Voicemail, plan: CallPlan, context: PlanContext) -> None:
        treatment = policy.treatment_for(self._last_status)
        self.record.disposition = treatment.disposition
        await self._stop_ringback()
        outcome = Deposit.NO_MAILBOX
        if self._voicemail is not None:
            outcome = await self._voicemail.deposit(
                self,
                self._last_status,
                mailbox=step.mailbox,
                greeting=step.greeting,
                breakout=step.delegate_breakout is not None,
            )
        if outcome is Deposit.NO_MAILBOX:
            await self._announce_and_hang_up(treatment.prompt, treatment.hangup_cause)
            return
        self._caller_answered = True
        if outcome is Deposit.BREAKOUT and step.delegate_breakout is not None:
            log.info("voicemail_breakout", delegate=step.delegate_breakout)
            breakout = Divert(DivertKind.DELEGATE, step.delegate_breakout, alert="delegated-call")
            await self._divert(breakout, plan, context)
            return
        await self._announce_and_hang_up((), policy.CAUSE_NORMAL_CLEARING)

    def _publish_divert(self, step: Divert, plan: CallPlan) -> None:
        record = self.record
        self._diverts += 1
        self._publisher.publish(
            call_pb2.CallDiverted(
                # One event per divert of the call (a chain can divert more than once).
                header=event_header(
                    record.tenant_id,
                    self.call_id,
                    f"{subjects.CALL_DIVERTED}-{self._diverts}",
                    _now(),
                ),
                from_user_id=plan.user_id,
                kind=step.kind.value,
                target=step.target,
                alert=step.alert or "",
                caller_number=record.from_number,
            )
        )
        log.info("call_diverted", kind=step.kind.value, target=step.target)

    async def _divert(self, step: Divert, plan: CallPlan, context: PlanContext) -> None:
        """CallDiverted goes out once the target is known to exist (a user found, a team
        resolved, a trunk to dial)."""
        record = self.record
        if step.kind in (DivertKind.USER, DivertKind.DELEGATE):
            user = await self._directory.resolve_user(record.tenant_id, step.target)
            if isinstance(user, policy.LookupFailed) or user.status != UserReply.STATUS_FOUND:
                log.warning("divert_target_not_found", target=step.target)
                await self._divert_failed(plan, context)
                return
            self._publish_divert(step, plan)
            routing, _ = await self._routing_for(user)
            chain = PlanContext(routing.tenant, (*context.divert_chain, plan.user_id))
            diverted = plan_call(routing.profile, self._caller, _now(), chain)
            log.info(
                "divert_planned",
                user_id=diverted.user_id,
                steps=plan_summary(diverted),
                reasons=reason_codes(diverted),
            )
            await self._run_plan(diverted, chain)
            return
        if step.kind is DivertKind.TEAM:
            team = await self._directory.resolve_team(record.tenant_id, step.target)
            legs: list[Leg] = []
            mode = RingMode.SIMULTANEOUS
            if isinstance(team, resolve_pb2.ResolveTeamReply) and (
                team.status == UserReply.STATUS_FOUND
            ):
                if team.ring_strategy == "sequential":
                    mode = RingMode.SEQUENTIAL
                legs = await self._team_legs(team)
            if not legs:
                log.warning("divert_team_unreachable", target=step.target)
                await self._divert_failed(plan, context)
                return
            self._publish_divert(step, plan)
            if await self._ring(Ring(mode, tuple(legs))):
                return
        else:
            dial = self._services.trunk_dial(step.target)
            if not dial:
                log.warning("divert_external_without_trunk", target=step.target)
                await self._divert_failed(plan, context)
                return
            self._publish_divert(step, plan)
            leg = Leg(step.target, "external", dial, leg_timeout(0))
            if await self._ring(Ring(RingMode.SEQUENTIAL, (leg,))):
                return
        treatment = policy.treatment_for(self._last_status)
        record.disposition = treatment.disposition
        await self._announce_and_hang_up(
            treatment.prompt or policy.PROMPT_NOT_ANSWERING, treatment.hangup_cause
        )

    async def _team_legs(self, team: resolve_pb2.ResolveTeamReply) -> list[Leg]:
        legs: list[Leg] = []
        for member_id in team.member_user_ids:
            member = await self._directory.resolve_user(self.record.tenant_id, member_id)
            if isinstance(member, policy.LookupFailed) or member.status != UserReply.STATUS_FOUND:
                continue
            timeout = leg_timeout(member.ring_timeout_s)
            for device in member.devices:
                dial = device_dial_string(device, self._services.trunk_dial)
                if dial:
                    legs.append(Leg(device.device_id, "team", dial, timeout))
        return legs

    async def _divert_failed(self, plan: CallPlan, context: PlanContext) -> None:
        """The divert cannot happen (target unknown, directory down): the diverting user's
        voicemail, else the unreachable prompt."""
        await self._voicemail_step(Voicemail(plan.user_id, "unavailable"), plan, context)

    async def _connect(self, callee_id: str) -> None:
        record = self.record
        bridge_id = self.call_id
        self._bridge_id = bridge_id
        await self._stop_ringback()
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
        self._save_state(answered_leg=callee_id)
        await self._start_recording(bridge_id, callee_id)

        def callee_gone(event: AriEvent) -> bool:
            if isinstance(event, ChannelDtmfReceived) and self._recording is not None:
                self._recording.on_dtmf(event.channel.id, event.digit)  # feature codes
            return isinstance(event, HANGUP_EVENTS) and channel_of(event) == callee_id

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
        self._legs[callee_id].gone = True

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
                return isinstance(event, HANGUP_EVENTS) and channel_of(event) == callee_id

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

    async def _announce(self, prompt: tuple[str, ...]) -> None:
        """Play to the caller and wait until it ends. Unanswered, Asterisk plays it as early
        media (183): the caller's network does not charge for it."""
        if not prompt:
            return
        await self._stop_ringback()
        self._playbacks += 1
        playback_id = f"{self.call_id}-p{self._playbacks}"
        await self._ari.play(self.caller_id, prompt, playback_id)
        await self._wait_for(
            lambda e: isinstance(e, PlaybackFinished) and e.playback.id == playback_id,
            PROMPT_TIMEOUT_S,
        )

    async def _announce_and_hang_up(self, prompt: tuple[str, ...], cause: int) -> None:
        # The hang-up cause reaches an unanswered caller as the final response
        # (1 -> 404, 19 -> 480, 17 -> 486...).
        await self._announce(prompt)
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
        """Nothing of this call may be left ringing or bridged (safe to call twice)."""
        leftovers = [
            calls.hangup(leg.channel_id)
            for leg in self._legs.values()
            if not leg.gone and leg.status != "CHANUNAVAIL"
        ]
        for leg in self._legs.values():
            leg.gone = True
        if self._bridge_id:
            leftovers.append(calls.destroy_bridge(self._bridge_id))
            self._bridge_id = None
        if self._screen_name:
            leftovers.append(calls.delete_stored_recording(self._screen_name))
            self._screen_name = None
        if leftovers:
            with contextlib.suppress(Exception):
                await self._ari.run_all(*leftovers)  # gone already (404) is fine
        if self._services.call_state is not None:
            self._services.call_state.forget(self.call_id)

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
        if self._planned and record.answered_at is None and not self.message_left:
            self._publisher.publish(
                call_pb2.CallMissed(
                    header=event_header(
                        record.tenant_id, self.call_id, subjects.CALL_MISSED, record.ended_at
                    ),
                    user_id=record.user_id,
                    caller_number=record.from_number,
                    reason=missed_reason(record, rejected=self._rejected),
                )
            )
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

    def _save_state(self, answered_leg: str | None = None, *, hurry: bool = False) -> None:
        """The call's minimal state in Redis, so that a new routing instance can adopt it."""
        store = self._services.call_state
        if store is None:
            return
        legs = (
            [answered_leg]
            if answered_leg
            else [leg.channel_id for leg in self._legs.values() if not leg.gone]
        )
        store.save(
            self.record,
            self.caller_id,
            legs,
            self._bridge_id,
            self._start.asterisk_id,
            hurry=hurry,
        )


def missed_reason(record: CallRecord, *, rejected: bool) -> str:
    if rejected:
        return "rejected"
    if record.hangup_by == "caller":
        return "caller_hung_up"
    return "no_answer"


def _now() -> datetime:
    return datetime.now(UTC)
