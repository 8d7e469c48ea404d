"""The ARI executor of one call placed BY a user's phone (issue #5 "Outbound", issue #8's
credit checks).

A phone's call enters Stasis with args ["outbound"] (extensions.conf [from-phones]). The
phone is known by its PJSIP endpoint, named after the directory device's sip_username; the
directory says whose it is (resolve_user). Then, by what was dialled:

- a feature code ("*..."): the change of feature_codes.py is applied to the user's stored
  routing (ProfileSource.change, origin "feature_code"), a confirmation is played, the call
  ends. No CDR: nobody was called.
- otherwise plans.outbound.plan_outbound() decides (caller ID, dialling controls) and its
  steps run in order: Reject (prompt, cause), CollectPin (the call is answered, the user
  keys the dialling PIN and #, 3 tries), AuthoriseCredit (billing reserves talk time; no
  answer in time: the tenant's fail-open policy), Connect: an extension is handed to the
  internal-call executor; a PSTN number is dialled on the trunk with the presented caller ID
  (withheld: Privacy id, the real number in P-Asserted-Identity), ringback to the phone,
  bridged on answer, cut when the authorised talk time runs out (talk_time.py).

The CDR (CallEnded) says OUTBOUND, from the presented number to the destination, with the
user and the calling device, so billing rates it against the reservation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NoReturn

from prometheus_client import Counter
from ringwise.directory.v1 import resolve_pb2
from ringwise.events.v1 import call_pb2
from ringwise_kit.ari import (
    AriClient,
    AriError,
    AriEvent,
    AriNotFound,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    Dial,
    PlaybackFinished,
    StasisStart,
    calls,
)
from ringwise_kit.events import event_header
from ringwise_kit.logs import bind_call, get_logger
from ringwise_kit.subjects import CALL_ANSWERED, CALL_ROUTED, CALL_STARTED

from ringwise_routing.calls import feature_codes, policy
from ringwise_routing.calls.call_state import CallStateStore, recorded_before_ringing
from ringwise_routing.calls.cdr import CallRecord, call_ended
from ringwise_routing.calls.credit_client import AuthoriseReply, CreditClient
from ringwise_routing.calls.publisher import EventPublisher
from ringwise_routing.calls.talk_time import TalkTime
from ringwise_routing.calls.user_lookup import UserLookup
from ringwise_routing.calls.waiting import (
    HANGUP_EVENTS,
    CallerHungUp,
    EventInbox,
    channel_of,
    next_event,
)
from ringwise_routing.plans.engine import Reject
from ringwise_routing.plans.model import RoutingProfile
from ringwise_routing.plans.outbound import (
    CAUSE_INVALID_NUMBER,
    CAUSE_OUTGOING_BARRED,
    AuthoriseCredit,
    CollectPin,
    Connect,
    NumberClass,
    OutboundPlan,
    plan_outbound,
)
from ringwise_routing.profiles.source import ProfileSource, UserReply, UserRouting
from ringwise_routing.provisioning.edge import PhonesViaEdge

log = get_logger(__name__)

OUTBOUND_CALLS = Counter(
    "ringwise_routing_outbound_calls_total", "Calls placed by phones, by outcome", ["outcome"]
)

# What the phone hears (Asterisk core sounds; tests/e2e/test_outbound_calls.py checks each
# is installed). Refusals play as early media, then the cause reaches the phone as the final
# response (21 -> 403, 28 -> 484, 1 -> 404, 34 -> 503).
PROMPT_UNKNOWN_DEVICE = ("sound:ss-noservice",)
PROMPT_BARRED = ("sound:im-sorry", "sound:feature-not-avail-line")
PROMPT_INVALID = ("sound:im-sorry", "sound:cannot-complete-as-dialed")
PROMPT_NO_EXTENSION = ("sound:pbx-invalid",)
PROMPT_TRY_LATER = ("sound:im-sorry", "sound:please-try-call-later")
PROMPT_ENTER_PIN = ("sound:agent-pass",)  # "Please enter your password followed by #"
PROMPT_WRONG_PIN = ("sound:vm-invalid-password",)
PROMPT_GOODBYE = ("sound:vm-goodbye",)
WARNING_TONE = ("sound:beep",)
ALL_PROMPTS = (
    PROMPT_UNKNOWN_DEVICE,
    PROMPT_BARRED,
    PROMPT_INVALID,
    PROMPT_NO_EXTENSION,
    PROMPT_TRY_LATER,
    PROMPT_ENTER_PIN,
    PROMPT_WRONG_PIN,
    PROMPT_GOODBYE,
    WARNING_TONE,
)

PROMPT_TIMEOUT_S = 30.0
HANGUP_CONFIRM_TIMEOUT_S = 2.0
CHANNEL_CREATE_TIMEOUT_S = 2.0
FINAL_DIAL_STATUSES = frozenset(
    {"ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL", "DONTCALL", "TORTURE"}
)
PIN_MAX_DIGITS = 12
# The call is cut this much before its authorised talk time runs out: billing rounds every
# started second up, so a call cut at 4.05 s of a 4 s grant would be rated as 5 s.
CUT_MARGIN_S = 0.25

# An extension call continues in the internal-call executor (CallRouter.start_internal_call):
# the StasisStart of the phone's channel, who calls, who is called.
InternalHandOver = Callable[[StasisStart, UserReply, UserReply], object]
VerifySecret = Callable[[str, str], bool]


def plain_secret_matches(stored: str, entered: str) -> bool:
    """Constant-time comparison for a PIN kept as given (the profile store may keep a hash
    and pass its own verifier instead)."""
    return hmac.compare_digest(stored.encode(), entered.encode())


@dataclass(frozen=True)
class OutboundServices:
    """What an outbound call needs from the routing process (built once in main.py)."""

    ari: AriClient
    users: UserLookup
    profiles: ProfileSource
    credit: CreditClient
    publisher: EventPublisher
    trunk_dial: Callable[[str], str]
    verify_secret: VerifySecret = plain_secret_matches
    hand_over_internal: InternalHandOver | None = None
    ring_timeout_s: int = 60
    max_call_s: int = 4 * 3600  # the longest call when billing sets no limit (or fail-open)
    pin_timeout_s: float = 10.0  # for the whole PIN, per try
    # The call's state in Redis while it is up, so that a new routing instance adopts a
    # bridged call and publishes its CDR (calls/adopted.py).
    call_state: CallStateStore | None = None
    # Phones dialled through the SIP edge when it has a location service (Kubernetes).
    phones: PhonesViaEdge = field(default_factory=PhonesViaEdge)


def endpoint_name(channel_name: str) -> str:
    """ "PJSIP/alice-desk-0000002a" -> "alice-desk" (the endpoint is the device's sip_username)."""
    tech, _, rest = channel_name.partition("/")
    if tech != "PJSIP" or "-" not in rest:
        return ""
    return rest.rsplit("-", 1)[0]


def _refusal_prompt(cause: int) -> tuple[str, ...]:
    return PROMPT_INVALID if cause == CAUSE_INVALID_NUMBER else PROMPT_BARRED


class OutboundEnded(Exception):
    """The call is over (refused, cut, or the far end hung up): nothing more to do."""


class OutboundSteps:
    """The steps of an outbound call, shared by its two entry points: a call placed by a
    phone (OutboundCall below) and a call placed through the API (click_to_dial/call.py,
    which rings the user first). `caller_id` is the user's channel; `_place()` makes the plan
    and runs it with `_execute()`."""

    def __init__(
        self,
        services: OutboundServices,
        register_channel: Callable[[str, OutboundSteps], None],
        *,
        call_id: str,
        caller_id: str,
        dialled: str,
        record: CallRecord,
        start: StasisStart | None,
    ) -> None:
        self.call_id = call_id
        self.caller_id = caller_id
        self.channels: set[str] = {self.caller_id}
        # The user's channel as it entered Stasis (a click-to-dial call's once it answered).
        self._start = start
        self._s = services
        self._ari = services.ari
        self._register_channel = register_channel
        self._events = EventInbox()
        self._callee_id: str | None = None
        self._callee_gone = False
        self._bridge_id: str | None = None
        self._answered_caller = False
        self._playbacks = 0
        self._reserved = False  # billing holds funds for this call (release if never answered)
        self._publish_cdr = True
        self._handed_over = False
        self.internal_call_id = ""  # the internal call's own id once handed over
        self._fail_open = False
        # Digits keyed while something else was awaited (over a prompt): the PIN reads them.
        self._typed: list[str] = []
        # CallStarted / CallRouted not published yet (an extension call publishes none of
        # its own once handed over: the internal call's executor does).
        self._pending: list[call_pb2.CallStarted | call_pb2.CallRouted] = []
        self._ringback: str | None = None  # the in-band ringback tone's playback id
        self._started = False
        self.dialled = dialled
        self.record = record

    def feed(self, event: AriEvent) -> None:
        self._events.put_nowait(event)

    def gone_during_outage(self) -> None:
        """The phone's channel vanished while the ARI link was down (found by reconcile)."""
        self.feed(
            ChannelDestroyed(
                type="ChannelDestroyed",
                timestamp=_now(),
                cause=policy.CAUSE_NORMAL_CLEARING,
                channel=self._start.channel if self._start else Channel(id=self.caller_id),
            )
        )

    # -- waiting -----------------------------------------------------------------------------

    async def _wait_for(
        self, match: Callable[[AriEvent], bool], timeout_s: float
    ) -> AriEvent | None:
        """Next event matching; None on timeout. Raises CallerHungUp when the phone hangs up."""
        return await next_event(
            self._events,
            match,
            timeout_s,
            caller_id=self.caller_id,
            seen=self._note_callee_gone,
            unmatched=self._note_typed_ahead,
        )

    def _note_callee_gone(self, event: AriEvent) -> None:
        if isinstance(event, HANGUP_EVENTS) and channel_of(event) == self._callee_id:
            self._callee_gone = True

    def _note_typed_ahead(self, event: AriEvent) -> None:
        if isinstance(event, ChannelDtmfReceived) and event.channel.id == self.caller_id:
            self._typed.append(event.digit)

    # -- the call ----------------------------------------------------------------------------

    async def run(self) -> None:
        with bind_call(self.call_id, channel_id=self.caller_id):
            try:
                await self._place()
            except OutboundEnded:
                pass
            except CallerHungUp as gone:
                self._caller_left(gone)
            except asyncio.CancelledError:
                log.warning("call_left_running_at_shutdown")
                raise
            except AriNotFound as exc:
                if await self._ari.get_channel(self.caller_id) is None:
                    self._caller_left(CallerHungUp(_now(), policy.CAUSE_NORMAL_CLEARING))
                else:
                    log.error("outbound_call_failed", error=str(exc))
                    await self._fail()
            except Exception:
                log.exception("outbound_call_failed")
                await self._fail()
            if self._handed_over:
                return
            await self._cleanup()
            self._finish()

    async def _place(self) -> None:
        """Find the user, make the plan, run it (`_execute`); OutboundEnded when refused."""
        raise NotImplementedError

    async def _execute(self, routing: UserRouting, plan: OutboundPlan, user: UserReply) -> None:
        """Publish the plan (CallStarted, CallRouted) and run its steps for `user`."""
        record = self.record
        self._fail_open = routing.dialling.credit_fail_open
        record.from_number = routing.outbound.smartnumber or record.from_number
        internal = False
        for step in plan.steps:
            if isinstance(step, Connect):
                record.from_number = step.presented_cli
                record.to_number = step.destination
                internal = step.number_class is NumberClass.EXTENSION
        if internal:
            record.direction = call_pb2.DIRECTION_INTERNAL
        self._started_and_routed(plan)
        if not internal:
            self._flush_events()
        await self._run_plan(plan, user)

    def _call_started(self) -> call_pb2.CallStarted:
        record = self.record
        self._started = True
        return call_pb2.CallStarted(
            header=event_header(record.tenant_id, self.call_id, CALL_STARTED, record.started_at),
            direction=record.direction,
            from_number=record.from_number,
            to_number=record.to_number,
            channel_id=self.caller_id,
            asterisk_id=self._start.asterisk_id if self._start else "",
        )

    def _flush_events(self) -> None:
        for event in self._pending:
            self._s.publisher.publish(event)
        self._pending.clear()

    def _started_and_routed(self, plan: OutboundPlan) -> None:
        record = self.record
        connects = plan.steps[-1:] if isinstance(plan.steps[-1], Connect) else ()
        self._pending.append(self._call_started())
        self._pending.append(
            call_pb2.CallRouted(
                header=event_header(record.tenant_id, self.call_id, CALL_ROUTED, _now()),
                user_id=record.user_id,
                decision=call_pb2.RoutingDecision(
                    action=call_pb2.RoutingDecision.ACTION_RING
                    if connects
                    else call_pb2.RoutingDecision.ACTION_REJECT,
                    reasons=[reason.detail for reason in plan.reasons],
                    reason_codes=[reason.code for reason in plan.reasons],
                    steps=[_step_summary(step) for step in plan.steps],
                    hangup_cause=plan.steps[-1].cause if isinstance(plan.steps[-1], Reject) else 0,
                ),
            )
        )
        log.info(
            "outbound_planned",
            dialled=self.dialled,
            to_number=record.to_number,
            presented=record.from_number,
            reasons=[reason.code for reason in plan.reasons],
        )

    async def _run_plan(self, plan: OutboundPlan, user: UserReply) -> None:
        talk_time = TalkTime.unlimited(self._s.max_call_s)
        for step in plan.steps:
            if isinstance(step, Reject):
                self.record.disposition = call_pb2.DISPOSITION_FAILED
                await self._refuse(_refusal_prompt(step.cause), step.cause, "refused")
            elif isinstance(step, CollectPin):
                await self._collect_pin(step)
            elif isinstance(step, AuthoriseCredit):
                talk_time = await self._authorise(step)
            elif step.number_class is NumberClass.EXTENSION:
                await self._extension(step, user)
            else:
                await self._connect(step, talk_time)

    # -- plan steps --------------------------------------------------------------------------

    async def _collect_pin(self, step: CollectPin) -> None:
        """Answer and ask for the dialling PIN (DTMF ended by #), 3 tries."""
        await self._answer_caller()
        for attempt in range(1, step.attempts + 1):
            entered = await self._read_digits(PROMPT_ENTER_PIN)
            # argon2 takes tens of milliseconds of CPU: not on the event loop.
            matches = bool(entered) and await asyncio.to_thread(
                self._s.verify_secret, step.pin, entered
            )
            if matches:
                log.info("dialling_pin_accepted", attempt=attempt)
                return
            log.info("dialling_pin_wrong", attempt=attempt)
            if attempt < step.attempts:
                await self._play(PROMPT_WRONG_PIN)
        self.record.disposition = call_pb2.DISPOSITION_FAILED
        OUTBOUND_CALLS.labels("pin_refused").inc()
        await self._refuse(PROMPT_WRONG_PIN + PROMPT_GOODBYE, CAUSE_OUTGOING_BARRED, None)

    async def _read_digits(self, prompt: tuple[str, ...]) -> str:
        """Digits keyed until # (or the time-out): typed ahead, over the prompt, or after it.
        The PIN is a hash here, so its length is unknown: # ends it."""
        digits: list[str] = []
        while self._typed:
            digit = self._typed.pop(0)
            if digit == "#":
                return "".join(digits)
            digits.append(digit)
        playback_id = await self._start_playback(prompt)
        prompt_playing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROMPT_TIMEOUT_S + self._s.pin_timeout_s

        def relevant(event: AriEvent) -> bool:
            if isinstance(event, PlaybackFinished):
                return event.playback.id == playback_id
            return isinstance(event, ChannelDtmfReceived) and event.channel.id == self.caller_id

        while (left := deadline - loop.time()) > 0:
            event = await self._wait_for(relevant, left)
            if event is None:
                break
            if isinstance(event, PlaybackFinished):
                prompt_playing = False
                deadline = min(deadline, loop.time() + self._s.pin_timeout_s)
                continue
            if not isinstance(event, ChannelDtmfReceived):
                continue
            if prompt_playing:  # keyed over the prompt: stop it
                prompt_playing = False
                await self._ari.stop_playback(playback_id)
            if event.digit == "#":
                break
            digits.append(event.digit)
            if len(digits) >= PIN_MAX_DIGITS:
                break
        if prompt_playing:
            await self._ari.stop_playback(playback_id)
        return "".join(digits)

    async def _authorise(self, step: AuthoriseCredit) -> TalkTime:
        record = self.record
        reply = await self._s.credit.authorise(
            tenant_id=record.tenant_id,
            call_id=self.call_id,
            user_id=record.user_id,
            from_number=record.from_number,
            to_number=record.to_number,
        )
        if reply is None:
            if step.fail_open:
                log.warning("credit_fail_open")
                return TalkTime.unlimited(self._s.max_call_s)
            log.warning("credit_fail_closed")
            record.disposition = call_pb2.DISPOSITION_FAILED
            OUTBOUND_CALLS.labels("billing_unavailable").inc()
            await self._refuse(PROMPT_TRY_LATER, CAUSE_OUTGOING_BARRED, None)
        if reply.decision != AuthoriseReply.DECISION_ALLOW:
            log.info("credit_denied", reason=AuthoriseReply.Reason.Name(reply.reason))
            record.disposition = call_pb2.DISPOSITION_FAILED
            OUTBOUND_CALLS.labels("credit_denied").inc()
            prompt = tuple(p for p in reply.prompt.split(",") if p) or (step.refused_prompt,)
            await self._refuse(prompt, CAUSE_OUTGOING_BARRED, None)
        self._reserved = reply.reason == AuthoriseReply.REASON_FUNDS_RESERVED or bool(
            reply.reserved_amount
        )
        log.info(
            "credit_authorised",
            max_duration_s=reply.max_duration_s,
            warn_at_s=reply.warn_at_s,
            reserved=reply.reserved_amount,
        )
        return TalkTime.from_grant(reply, self._s.max_call_s)

    async def _extension(self, step: Connect, user: UserReply) -> None:
        callee = await self._s.users.by_extension(user.tenant_id, step.destination)
        if isinstance(callee, policy.LookupFailed):
            self.record.disposition = call_pb2.DISPOSITION_FAILED
            await self._refuse(PROMPT_TRY_LATER, policy.CAUSE_PLATFORM_FAILURE, "directory")
        if callee.status != resolve_pb2.ResolveNumberReply.STATUS_FOUND:
            self.record.disposition = call_pb2.DISPOSITION_NOT_IN_SERVICE
            await self._refuse(PROMPT_NO_EXTENSION, policy.CAUSE_UNALLOCATED, "no_extension")
        if self._s.hand_over_internal is None:
            # Internal calls are the inbound executor's (CallRouter.start_internal_call);
            # without it, say so rather than ring nobody.
            log.warning("internal_calls_not_available", extension=step.destination)
            self.record.disposition = call_pb2.DISPOSITION_FAILED
            await self._refuse(PROMPT_TRY_LATER, policy.CAUSE_PLATFORM_FAILURE, "no_internal")
        # The phone may have hung up while the directory answered: then there is nothing to
        # hand over (the new owner would never hear of that hang-up).
        while not self._events.empty():
            event = self._events.get_nowait()
            if isinstance(event, HANGUP_EVENTS) and channel_of(event) == self.caller_id:
                cause = getattr(event, "cause", 0) or policy.CAUSE_NORMAL_CLEARING
                raise CallerHungUp(event.timestamp, cause)
        OUTBOUND_CALLS.labels("extension").inc()
        if self._start is None:
            raise RuntimeError("the user's channel never entered Stasis")
        self._handed_over = True
        self._pending.clear()
        handed = self._s.hand_over_internal(self._start, user, callee)
        self.internal_call_id = handed if isinstance(handed, str) else ""

    async def _connect(self, step: Connect, talk_time: TalkTime) -> None:
        record = self.record
        dial_string = self._s.trunk_dial(step.destination)
        if not dial_string:
            log.error("no_pstn_trunk", destination=step.destination)
            record.disposition = call_pb2.DISPOSITION_FAILED
            await self._refuse(PROMPT_TRY_LATER, policy.CAUSE_PLATFORM_FAILURE, "no_trunk")
        callee_id = f"{self.call_id}-1"
        self._callee_id = callee_id
        self.channels.add(callee_id)
        self._register_channel(callee_id, self)
        # What the far end sees: the presented number in From (and P-Asserted-Identity, the
        # "pstn" endpoint has send_pai); withheld: presentation prohibited -> Privacy: id and
        # an anonymous From, the real number still in P-Asserted-Identity (trust_id_outbound).
        presentation = "prohib" if step.withheld else "allowed"
        identity = {
            "CONNECTEDLINE(num,i)": step.presented_cli,
            "CONNECTEDLINE(name,i)": "",
            "CONNECTEDLINE(pres,i)": presentation,
        }
        # Ringback: 180 to a phone still unanswered; one answered for its PIN hears the tone
        # in-band until the far end answers.
        early = not self._answered_caller
        if not early:
            self._playbacks += 1
            self._ringback = f"{self.call_id}-rb{self._playbacks}"
            await self._ari.play(self.caller_id, policy.RINGBACK_TONE, self._ringback)
        ringing = [calls.ring(self.caller_id)] if early else []
        *rang, created = await self._ari.run_all(
            *ringing,
            calls.create_channel(
                self._ari.app,
                self._s.phones.dial_string(dial_string),
                channel_id=callee_id,
                app_args=("dialed", self.call_id),
                originator=self.caller_id,
                variables=identity,
            ),
        )
        if rang and isinstance(rang[0], AriNotFound):
            raise rang[0]
        try:
            if isinstance(created, AriError):
                raise created
            # On record before the far end rings (see CallSession._ring_together).
            self._save_state(hurry=True)
            self._s.publisher.hurry()
            entered = await self._wait_for(
                lambda e: isinstance(e, StasisStart) and e.channel.id == callee_id,
                CHANNEL_CREATE_TIMEOUT_S,
            )
            if entered is None:
                raise AriError(504, "trunk channel never entered Stasis", "POST", "/dial")
            if early:
                # Bridged before it is dialled ("early bridging"; it answers nobody): what the
                # far end plays before answering (its ringback, an announcement, a 183 with
                # media) reaches the phone.
                await self._join_bridge(callee_id)
            await recorded_before_ringing(self._s.call_state, self._s.publisher)
            await self._ari.dial(callee_id, timeout_s=self._s.ring_timeout_s)
        except AriError as exc:
            log.warning("trunk_dial_failed", error=str(exc))
            await self._not_connected("CHANUNAVAIL")
        rang_out = False

        def dial_result(event: AriEvent) -> bool:
            nonlocal rang_out
            if isinstance(event, Dial) and event.peer.id == callee_id:
                rang_out = rang_out or event.dialstatus in ("RINGING", "PROGRESS")
                return event.dialstatus in FINAL_DIAL_STATUSES
            return isinstance(event, ChannelDestroyed) and event.channel.id == callee_id

        result = await self._wait_for(dial_result, self._s.ring_timeout_s + 5)
        if result is None:
            await self._not_connected("NOANSWER")
        status = (
            result.dialstatus
            if isinstance(result, Dial)
            else policy.dialstatus_for(getattr(result, "cause", 0), rang_out)
        )
        if status != "ANSWER":
            await self._not_connected(status)
        record.answered_at = result.timestamp
        await self._answered(callee_id)
        await self._talk(callee_id, talk_time)

    async def _join_bridge(self, callee_id: str) -> None:
        self._bridge_id = self.call_id
        for result in await self._ari.run_all(
            calls.create_bridge(self._bridge_id),
            # The phone's own caller ID must not replace the presented one on the trunk.
            calls.add_to_bridge(self._bridge_id, [self.caller_id, callee_id], keep_identities=True),
        ):
            if isinstance(result, AriError):
                raise result

    async def _answered(self, callee_id: str) -> None:
        """The far end answered: the phone is answered and bridged with it (if it is not
        already, early)."""
        record = self.record
        if self._ringback is not None:
            playback, self._ringback = self._ringback, None
            await self._ari.stop_playback(playback)
        if self._bridge_id is None:
            await self._join_bridge(callee_id)
        await self._answer_caller()
        record.disposition = call_pb2.DISPOSITION_ANSWERED
        self._save_state()
        self._s.publisher.publish(
            call_pb2.CallAnswered(
                header=event_header(
                    record.tenant_id, self.call_id, CALL_ANSWERED, record.answered_at or _now()
                ),
                user_id=record.user_id,
                device_id=record.device_id,
            )
        )
        OUTBOUND_CALLS.labels("answered").inc()
        log.info("outbound_answered", to_number=record.to_number)

    async def _talk(self, callee_id: str, talk_time: TalkTime) -> None:
        """Bridged: wait for a hang-up, asking billing for more time and cutting the call
        when the authorised talk time runs out."""
        record = self.record
        loop = asyncio.get_running_loop()
        # Talk time counts from Asterisk's answer (the CDR's answered_at), not from when the
        # event reached us.
        late_s = (_now() - (record.answered_at or _now())).total_seconds()
        answered = loop.time() - max(0.0, late_s)

        def next_wake() -> float:
            cut_at = talk_time.limit_s - CUT_MARGIN_S
            return cut_at if talk_time.ask_at_s is None else min(talk_time.ask_at_s, cut_at)

        def callee_gone(event: AriEvent) -> bool:
            return isinstance(event, HANGUP_EVENTS) and channel_of(event) == callee_id

        while True:
            talked = loop.time() - answered
            event = await self._wait_for(callee_gone, max(0.0, next_wake() - talked))
            if event is not None:
                record.ended_at = event.timestamp
                record.hangup_by = "callee"
                record.hangup_cause = getattr(event, "cause", 0) or policy.CAUSE_NORMAL_CLEARING
                await self._ari.run_all(
                    calls.hangup(self.caller_id, reason_code=record.hangup_cause),
                    calls.destroy_bridge(self.call_id),
                )
                self._bridge_id = None
                return
            talked = loop.time() - answered
            if talk_time.ask_at_s is not None and talked >= talk_time.ask_at_s - 0.05:
                reply = await self._s.credit.authorise(
                    tenant_id=record.tenant_id,
                    call_id=self.call_id,
                    user_id=record.user_id,
                    from_number=record.from_number,
                    to_number=record.to_number,
                    extend=True,
                )
                talk_time.extended(
                    reply,
                    loop.time() - answered,
                    fail_open=self._fail_open,
                    cap_s=self._s.max_call_s,
                )
                log.info(
                    "credit_extension",
                    granted=reply is not None and reply.decision == AuthoriseReply.DECISION_ALLOW,
                    limit_s=talk_time.limit_s,
                )
                if talk_time.warn:
                    talk_time.warn = False
                    await self._warn(self.call_id)
                continue
            if talked >= talk_time.limit_s - CUT_MARGIN_S - 0.01:
                await self._cut(talk_time.limit_s)
                return

    async def _warn(self, bridge_id: str) -> None:
        """The warning tone to both parties: no more talk time will be granted."""
        self._playbacks += 1
        with contextlib.suppress(AriError):
            await self._ari.call(
                calls.play_bridge(bridge_id, f"{self.call_id}-w{self._playbacks}", WARNING_TONE[0])
            )

    async def _cut(self, limit_s: float) -> None:
        record = self.record
        log.info("outbound_cut_at_credit_limit", talk_time_s=limit_s)
        OUTBOUND_CALLS.labels("cut_credit").inc()
        record.hangup_by = "platform"
        record.hangup_cause = policy.CAUSE_NORMAL_CLEARING
        record.ended_at = _now()
        await self._ari.run_all(
            calls.hangup(self.caller_id, reason_code=policy.CAUSE_NORMAL_CLEARING),
            calls.hangup(self._callee_id or "", reason_code=policy.CAUSE_NORMAL_CLEARING),
            calls.destroy_bridge(self.call_id),
        )
        self._callee_gone = True
        self._bridge_id = None

    async def _not_connected(self, dialstatus: str) -> NoReturn:
        """The far end did not answer: the phone gets the matching cause (busy tone etc.)."""
        treatment = policy.treatment_for(dialstatus)
        self.record.disposition = treatment.disposition
        log.info("outbound_not_answered", dialstatus=dialstatus)
        OUTBOUND_CALLS.labels(f"not_answered_{dialstatus.lower()}").inc()
        await self._announce_and_hang_up((), treatment.hangup_cause)
        raise OutboundEnded()

    # -- prompts and hang-ups ----------------------------------------------------------------

    async def _refuse(self, prompt: tuple[str, ...], cause: int, outcome: str | None) -> NoReturn:
        if outcome is not None:
            OUTBOUND_CALLS.labels(outcome).inc()
        await self._announce_and_hang_up(prompt, cause)
        raise OutboundEnded()

    async def _answer_caller(self) -> None:
        if not self._answered_caller:
            await self._ari.answer(self.caller_id)
            self._answered_caller = True

    async def _start_playback(self, prompt: tuple[str, ...]) -> str:
        self._playbacks += 1
        playback_id = f"{self.call_id}-p{self._playbacks}"
        await self._ari.play(self.caller_id, prompt, playback_id)
        return playback_id

    async def _play(self, prompt: tuple[str, ...]) -> None:
        playback_id = await self._start_playback(prompt)
        await self._wait_for(
            lambda e: isinstance(e, PlaybackFinished) and e.playback.id == playback_id,
            PROMPT_TIMEOUT_S,
        )

    async def _announce_and_hang_up(
        self, prompt: tuple[str, ...], cause: int, *, answer: bool = False
    ) -> None:
        """Play (as early media unless answered or `answer`), then hang up with `cause`."""
        if answer:
            await self._answer_caller()
        if prompt:
            await self._play(prompt)
        self.record.hangup_cause = cause
        self.record.hangup_by = "platform"
        if await self._ari.hangup(self.caller_id, reason_code=cause):
            with contextlib.suppress(CallerHungUp):
                await self._wait_for(lambda e: False, HANGUP_CONFIRM_TIMEOUT_S)
        self.record.ended_at = self.record.ended_at or _now()

    def _caller_left(self, gone: CallerHungUp) -> None:
        record = self.record
        record.ended_at = record.ended_at or gone.at
        if record.disposition == call_pb2.DISPOSITION_UNSPECIFIED:
            record.disposition = call_pb2.DISPOSITION_CANCELLED
        if not record.hangup_by:
            record.hangup_by = "caller"
            record.hangup_cause = gone.cause

    async def _fail(self) -> None:
        record = self.record
        record.disposition = record.disposition or call_pb2.DISPOSITION_FAILED
        record.hangup_cause = policy.CAUSE_PLATFORM_FAILURE
        record.hangup_by = "platform"
        with contextlib.suppress(Exception):
            await self._ari.hangup(self.caller_id, reason_code=policy.CAUSE_PLATFORM_FAILURE)

    async def _cleanup(self) -> None:
        """Nothing of this call may be left ringing or bridged; funds held for a call that
        never connected go back."""
        leftovers = []
        if self._callee_id and not self._callee_gone:
            leftovers.append(calls.hangup(self._callee_id))
        if self._bridge_id:
            leftovers.append(calls.destroy_bridge(self._bridge_id))
        if leftovers:
            with contextlib.suppress(Exception):
                await self._ari.run_all(*leftovers)
        if self._reserved and self.record.answered_at is None:
            await self._s.credit.release(tenant_id=self.record.tenant_id, call_id=self.call_id)
        if self._s.call_state is not None and self._callee_id is not None:
            self._s.call_state.forget(self.call_id)

    def _save_state(self, *, hurry: bool = False) -> None:
        """The trunk leg (and, once answered, the bridge) in Redis for a new instance."""
        store = self._s.call_state
        if store is None or self._callee_id is None:
            return
        # The bridge counts as a conversation (adopted after a restart) only once answered.
        bridge = self._bridge_id if self.record.answered_at is not None else None
        store.save(self.record, self.caller_id, [self._callee_id], bridge, hurry=hurry)

    def _finish(self) -> None:
        record = self.record
        record.ended_at = record.ended_at or _now()
        if not self._publish_cdr:
            return
        if record.disposition == call_pb2.DISPOSITION_UNSPECIFIED:
            record.disposition = call_pb2.DISPOSITION_FAILED
        if not self._started:  # refused before it was planned (unknown phone, outage)
            self._pending.insert(0, self._call_started())
        self._flush_events()
        cdr = call_ended(record)
        self._s.publisher.publish(cdr)
        log.info(
            "outbound_call_ended",
            disposition=call_pb2.Disposition.Name(record.disposition),
            billable_seconds=cdr.billable_seconds,
            hangup_by=record.hangup_by,
            hangup_cause=record.hangup_cause,
        )


class OutboundCall(OutboundSteps):
    """A call placed by a user's phone: StasisStart args ["outbound"]."""

    def __init__(
        self,
        start: StasisStart,
        services: OutboundServices,
        register_channel: Callable[[str, OutboundSteps], None],
    ) -> None:
        channel = start.channel
        call_id = uuid.uuid4().hex
        super().__init__(
            services,
            register_channel,
            call_id=call_id,
            caller_id=channel.id,
            dialled=channel.dialplan.exten,
            record=CallRecord(
                call_id=call_id,
                from_number=channel.caller.number,
                to_number=channel.dialplan.exten,
                started_at=channel.creationtime or start.timestamp,
                direction=call_pb2.DIRECTION_OUTBOUND,
            ),
            start=start,
        )
        self._phone = start

    async def _place(self) -> None:
        record = self.record
        device = endpoint_name(self._phone.channel.name)
        user = await self._s.users.by_sip_username(device) if device else None
        if isinstance(user, policy.LookupFailed):
            log.warning("outbound_directory_unavailable", device=device, reason=user.reason)
            record.disposition = call_pb2.DISPOSITION_FAILED
            await self._refuse(PROMPT_TRY_LATER, policy.CAUSE_PLATFORM_FAILURE, "directory")
        if user is None or user.status != resolve_pb2.ResolveNumberReply.STATUS_FOUND:
            log.warning("outbound_unknown_device", device=device, channel=self._phone.channel.name)
            record.disposition = call_pb2.DISPOSITION_FAILED
            await self._refuse(PROMPT_UNKNOWN_DEVICE, CAUSE_OUTGOING_BARRED, "unknown_device")
        record.tenant_id, record.user_id = user.tenant_id, user.user_id
        record.device_id = user.device_id
        with bind_call(self.call_id, tenant_id=user.tenant_id):
            if feature_codes.is_feature_code(self.dialled):
                self._publish_cdr = False  # nobody was called: nothing to rate or report
                await self._feature_code(user)
                return
            try:
                routing = await self._s.profiles.routing_for(user)
            except Exception as exc:
                log.error("outbound_profile_unavailable", error=repr(exc))
                record.disposition = call_pb2.DISPOSITION_FAILED
                await self._refuse(PROMPT_TRY_LATER, policy.CAUSE_PLATFORM_FAILURE, "profile")
            plan = plan_outbound(routing.outbound, routing.dialling, self.dialled)
            await self._execute(routing, plan, user)

    # -- feature codes -----------------------------------------------------------------------

    async def _feature_code(self, user: UserReply) -> None:
        code = feature_codes.feature_code(self.dialled)
        if code is None:
            log.info("feature_code_unknown", dialled=self.dialled)
            OUTBOUND_CALLS.labels("feature_code_unknown").inc()
            await self._announce_and_hang_up(
                feature_codes.PROMPT_UNKNOWN_CODE, CAUSE_INVALID_NUMBER, answer=True
            )
            return
        calling = next((d for d in user.devices if d.device_id == user.device_id), None)
        phone = feature_codes.CallingPhone(
            device_id=user.device_id,
            number=calling.number if calling is not None and calling.kind == "external" else "",
            # The device as this phone's own endpoint: rings it wherever it registered.
            dial_string=(calling.dial_string if calling is not None else "")
            or f"PJSIP/{endpoint_name(self._phone.channel.name)}",
        )
        refused: list[str] = []

        def change(profile: RoutingProfile) -> RoutingProfile:
            result = code.change(profile, phone)
            if isinstance(result, list):
                refused.extend(f"{e.field}: {e.message}" for e in result)
                raise FeatureCodeRefused("; ".join(refused))
            return result

        try:
            await self._s.profiles.change(user, change, origin="feature_code")
        except FeatureCodeRefused as exc:
            log.info("feature_code_refused", code=code.code, errors=str(exc))
            OUTBOUND_CALLS.labels("feature_code_refused").inc()
            await self._announce_and_hang_up(
                feature_codes.PROMPT_REFUSED, CAUSE_OUTGOING_BARRED, answer=True
            )
            return
        except Exception as exc:
            # A refusal the store found (validation) or a store that cannot be reached.
            log.warning("feature_code_not_applied", code=code.code, error=repr(exc))
            OUTBOUND_CALLS.labels("feature_code_failed").inc()
            await self._announce_and_hang_up(
                feature_codes.PROMPT_UNAVAILABLE, policy.CAUSE_PLATFORM_FAILURE, answer=True
            )
            return
        log.info("feature_code_applied", code=code.code, meaning=code.meaning)
        OUTBOUND_CALLS.labels("feature_code").inc()
        await self._announce_and_hang_up(
            code.confirmation, policy.CAUSE_NORMAL_CLEARING, answer=True
        )


class FeatureCodeRefused(Exception):
    """The profile does not allow the change (e.g. already 5 terminals)."""


def _step_summary(step: object) -> str:
    if isinstance(step, Connect):
        shown = f"{step.presented_cli} withheld" if step.withheld else step.presented_cli
        return f"connect {step.number_class.value} {step.destination} as {shown}"
    if isinstance(step, CollectPin):
        return f"pin {step.attempts} tries"
    if isinstance(step, AuthoriseCredit):
        return f"credit {'fail-open' if step.fail_open else 'fail-closed'}"
    if isinstance(step, Reject):
        return f"reject {step.cause}"
    return type(step).__name__.lower()


def _now() -> datetime:
    return datetime.now(UTC)
