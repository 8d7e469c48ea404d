"""The executor's decisions against a scripted Asterisk: which legs ring, which are hung up,
what the CDR and the events say. (The real Asterisk and phones: tests/e2e/
test_routing_plans.py; this covers the branches those cannot time exactly.)

Phones are dial strings: "answer" (rings, answers after 20 ms, hangs up 80 ms later),
"answer-key:<digit>" (the same, pressing a key 20 ms after answering), "busy",
"noanswer" (rings until its timeout, here 60 ms), "unavailable" (destroyed at once, never
rang).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from ringwise.directory.v1 import resolve_pb2
from ringwise.events.v1 import call_pb2
from ringwise_kit.ari import (
    AriEvent,
    CallerId,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    Dial,
    DialplanCep,
    LiveRecording,
    Playback,
    PlaybackFinished,
    RecordingFinished,
    StasisStart,
)
from ringwise_kit.ari.calls import RestCall
from ringwise_routing.calls.session import CallServices, CallSession
from ringwise_routing.plans.model import (
    Fallback,
    FallbackKind,
    LocationKind,
    RingMode,
    RoutingProfile,
    Screening,
    TenantPolicy,
    Terminal,
    standard_states,
)
from ringwise_routing.plans.outbound import OutboundProfile, TenantDialling
from ringwise_routing.profiles.source import UserRouting
from ringwise_routing.provisioning.edge import PhonesViaEdge

Reply = resolve_pb2.ResolveNumberReply
CALLER = "caller-chan"
NOANSWER_AFTER_S = 0.06


def _now() -> datetime:
    return datetime.now(UTC)


def _channel(channel_id: str) -> Channel:
    return Channel(id=channel_id)


class ScriptedAsterisk:
    """Answers the session's ARI requests and sends the events Asterisk would."""

    app = "ringwise"

    def __init__(self, timeline: list[str]) -> None:
        self.session: CallSession | None = None
        self.timeline = timeline  # shared with Published: what happened in which order
        self.dial_strings: dict[str, str] = {}
        self.dialled: list[str] = []  # channel ids, in dial order
        self.hung_up: list[str] = []
        self.played: list[tuple[str, list[str]]] = []
        self.answered: list[str] = []
        self.bridged: list[str] = []
        self._loop = asyncio.get_running_loop()

    def _send(self, event: AriEvent, after_s: float = 0.0) -> None:
        assert self.session is not None
        self._loop.call_later(after_s, self.session.feed, event)

    def _destroyed(self, channel_id: str, cause: int, after_s: float = 0.0) -> None:
        event = ChannelDestroyed(
            type="ChannelDestroyed", timestamp=_now(), cause=cause, channel=_channel(channel_id)
        )
        self._send(event, after_s)

    def _dial_event(self, channel_id: str, status: str, after_s: float = 0.0) -> None:
        event = Dial(type="Dial", timestamp=_now(), dialstatus=status, peer=_channel(channel_id))
        self._send(event, after_s)

    async def run_all(self, *requests: RestCall) -> list[Any]:
        return [self._handle(request) for request in requests]

    async def call(self, request: RestCall) -> Any:
        return self._handle(request)

    def _handle(self, request: RestCall) -> Any:
        parts = request.path.strip("/").split("/")
        if request.path == "/channels/create":
            channel_id = str(request.params["channelId"])
            self.dial_strings[channel_id] = str(request.params["endpoint"])
            start = StasisStart(type="StasisStart", timestamp=_now(), channel=_channel(channel_id))
            self._send(start)
            return {"id": channel_id}
        if parts[-1] == "dial":
            self._dial(parts[1])
        elif request.method == "DELETE" and parts[0] == "channels":
            self._hangup(parts[1], int(request.params.get("reason_code", 16)))
        elif parts[-1] == "record":
            name = str(request.params["name"])
            recording = LiveRecording(name=name, state="done", target_uri=f"channel:{parts[1]}")
            self._send(
                RecordingFinished(type="RecordingFinished", timestamp=_now(), recording=recording),
                0.01,
            )
        elif parts[-1] == "answer":
            self.answered.append(parts[1])
        elif parts[-1] == "addChannel":
            self.bridged += str(request.params["channel"]).split(",")
        return None

    def _hangup(self, channel_id: str, cause: int) -> None:
        if channel_id not in self.hung_up:
            self.hung_up.append(channel_id)
            self._destroyed(channel_id, cause)

    def _dial(self, channel_id: str) -> None:
        self.dialled.append(channel_id)
        self.timeline.append(f"dial {self.dial_strings[channel_id]}")
        phone = self.dial_strings[channel_id]
        if phone == "unavailable":
            self._destroyed(channel_id, 20, 0.005)
            return
        # A dial that fails ends with its status, then Asterisk destroys the channel.
        if phone == "busy":
            self._dial_event(channel_id, "BUSY", 0.01)
            self._destroyed(channel_id, 17, 0.011)
            return
        self._dial_event(channel_id, "RINGING")
        if phone == "noanswer":
            self._dial_event(channel_id, "NOANSWER", NOANSWER_AFTER_S)
            self._destroyed(channel_id, 19, NOANSWER_AFTER_S + 0.001)
            return
        self._dial_event(channel_id, "ANSWER", 0.02)
        if phone.startswith("answer-key:"):
            key = ChannelDtmfReceived(
                type="ChannelDtmfReceived",
                timestamp=_now(),
                digit=phone.split(":", 1)[1],
                channel=_channel(channel_id),
            )
            self._send(key, 0.04)
        # Talks a moment, then hangs up (if still up: a refused leg is hung up before).
        self._loop.call_later(0.1, self._hangup, channel_id, 16)

    async def hangup(self, channel_id: str, *, reason_code: int | None = None, **_: Any) -> bool:
        self._hangup(channel_id, reason_code or 16)
        return True

    async def play(self, channel_id: str, media: Any, playback_id: str, **_: Any) -> None:
        self.played.append((channel_id, list(media) if not isinstance(media, str) else [media]))
        if media == "tone:ring":
            return  # rings until stopped
        finished = PlaybackFinished(
            type="PlaybackFinished",
            timestamp=_now(),
            playback=Playback(id=playback_id, target_uri=f"channel:{channel_id}"),
        )
        self._send(finished, 0.005)

    async def stop_playback(self, playback_id: str) -> None:
        return None

    async def answer(self, channel_id: str) -> None:
        self.answered.append(channel_id)

    async def get_channel(self, channel_id: str) -> Channel | None:
        return None if channel_id in self.hung_up else _channel(channel_id)


class Published:
    """Events are stored as soon as published; published() notes when a call waited."""

    def __init__(self, timeline: list[str]) -> None:
        self.events: list[Any] = []
        self.timeline = timeline

    def publish(self, event: Any) -> None:
        self.events.append(event)

    def hurry(self) -> None:
        pass

    async def published(self, timeout_s: float) -> bool:
        kinds = ",".join(type(e).__name__ for e in self.events)
        self.timeline.append(f"recorded {kinds}")
        return True

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


class Directory:
    async def resolve(self, number: str) -> Reply:
        return Reply(status=Reply.STATUS_FOUND, tenant_id="acme", user_id="alice")


class Profiles:
    def __init__(self, profile: RoutingProfile) -> None:
        self.profile = profile

    async def routing_for(self, user: Reply) -> UserRouting:
        return UserRouting(
            self.profile,
            OutboundProfile("alice", smartnumber="+15550100"),
            TenantPolicy("acme"),
            TenantDialling(),
        )


def profile(
    phones: dict[str, str],
    mode: RingMode,
    *,
    screening: Screening | None = None,
    fallback: Fallback | None = None,
) -> RoutingProfile:
    terminals = tuple(
        Terminal(name, LocationKind.DESK, dial, ring_timeout_s=5) for name, dial in phones.items()
    )
    states = standard_states(tuple(phones), ring_mode=mode)
    if fallback is not None:
        available = states["Available"]
        states["Available"] = type(available)(
            available.name, available.terminal_ids, available.ring_mode, fallback
        )
    return RoutingProfile("alice", "acme", terminals, states, screening=screening or Screening())


async def run_call(
    routing: RoutingProfile, phones: PhonesViaEdge | None = None
) -> tuple[ScriptedAsterisk, Published, CallSession, Callable[[str], str]]:
    timeline: list[str] = []
    asterisk = ScriptedAsterisk(timeline)
    published = Published(timeline)
    services = CallServices(
        ari=cast(Any, asterisk),
        directory=cast(Any, Directory()),
        publisher=cast(Any, published),
        profiles=cast(Any, Profiles(routing)),
        trunk_dial=lambda _number: "",
        phones=phones or PhonesViaEdge(),
    )
    start = StasisStart(
        type="StasisStart",
        timestamp=_now(),
        args=["inbound"],
        channel=Channel(
            id=CALLER,
            caller=CallerId(number="+441632960001"),
            dialplan=DialplanCep(exten="+15550100"),
            creationtime=_now(),
        ),
    )
    session = CallSession(start, services, lambda _channel_id, _session: None)
    asterisk.session = session
    await asyncio.wait_for(session.run(), timeout=10)

    def phone_of(channel_id: str) -> str:
        return asterisk.dial_strings[channel_id]

    return asterisk, published, session, phone_of


def cdr(published: Published) -> call_pb2.CallEnded:
    [ended] = published.of(call_pb2.CallEnded)
    return cast(call_pb2.CallEnded, ended)


async def test_together_the_first_answer_wins_and_every_other_leg_is_hung_up_at_once() -> None:
    phones = {"desk": "noanswer", "mobile": "answer", "home": "busy"}
    asterisk, published, _, phone_of = await run_call(profile(phones, RingMode.SIMULTANEOUS))
    assert sorted(phone_of(c) for c in asterisk.dialled) == ["answer", "busy", "noanswer"]
    # The ringing desk was hung up as soon as the mobile answered (CANCEL), not at its timeout.
    [desk] = [c for c in asterisk.dialled if phone_of(c) == "noanswer"]
    assert desk in asterisk.hung_up
    [mobile] = [c for c in asterisk.dialled if phone_of(c) == "answer"]
    assert asterisk.bridged == [CALLER, mobile]
    ended = cdr(published)
    assert ended.disposition == call_pb2.DISPOSITION_ANSWERED
    assert (ended.device_id, ended.hangup_by) == ("mobile", "callee")
    assert not published.of(call_pb2.CallMissed)


async def test_a_busy_or_unreachable_leg_does_not_end_the_ring_while_another_rings() -> None:
    phones = {"desk": "busy", "mobile": "unavailable", "home": "noanswer"}
    asterisk, published, _, phone_of = await run_call(profile(phones, RingMode.SIMULTANEOUS))
    [home] = [c for c in asterisk.dialled if phone_of(c) == "noanswer"]
    # Home rang out its own timeout (nobody cancelled it): the caller hears "not
    # answering" (480), not busy.
    assert home not in asterisk.hung_up
    ended = cdr(published)
    assert ended.disposition == call_pb2.DISPOSITION_NO_ANSWER
    assert ended.hangup_cause == 19
    [missed] = published.of(call_pb2.CallMissed)
    assert missed.reason == "no_answer"
    assert ("caller-chan", ["sound:number-not-answering"]) in asterisk.played


async def test_with_the_edges_location_service_a_phone_is_dialled_through_the_edge() -> None:
    """Kubernetes: the pod that takes the call need not hold the phone's registration, so the
    phone's leg goes to the edge (its endpoint still applies); a trunk keeps its dial string."""
    edge = "rw-ringwise-sip-edge-internal.telephony.svc.cluster.local:5091"
    via_edge = PhonesViaEdge(edge)
    via_edge.phone_provisioned("rw00a1")
    phones = {"desk": "PJSIP/rw00a1", "pbx": "PJSIP/rw00b2"}
    asterisk, published, _, phone_of = await run_call(
        profile(phones, RingMode.SIMULTANEOUS), via_edge
    )
    assert sorted(phone_of(c) for c in asterisk.dialled) == [
        f"PJSIP/rw00a1/sip:rw00a1@{edge}",
        "PJSIP/rw00b2",
    ]
    assert cdr(published).disposition == call_pb2.DISPOSITION_ANSWERED


async def test_one_by_one_each_leg_rings_only_after_the_previous_one_ended() -> None:
    phones = {"desk": "noanswer", "home": "busy", "mobile": "answer"}
    asterisk, published, _, phone_of = await run_call(profile(phones, RingMode.SEQUENTIAL))
    assert [phone_of(c) for c in asterisk.dialled] == ["noanswer", "busy", "answer"]
    assert cdr(published).device_id == "mobile"


async def test_no_phone_rings_before_the_call_and_its_routing_are_on_record() -> None:
    # A routing crash while phones ring must leave the next instance a call to end, with its
    # CDR: the first dial waits for the stored state and CallStarted / CallRouted; later
    # ring groups of the same call do not wait again.
    phones = {"desk": "noanswer", "mobile": "answer"}
    asterisk, _, _, _ = await run_call(profile(phones, RingMode.SEQUENTIAL))
    assert asterisk.timeline == [
        "recorded CallStarted,CallRouted",
        "dial noanswer",
        "dial answer",
    ]


async def test_a_leg_that_refuses_the_screened_call_is_hung_up_and_the_plan_goes_on() -> None:
    screened = Screening(enabled=True, ask_name=True)
    routing = profile({"desk": "answer-key:1"}, RingMode.SEQUENTIAL, screening=screened)
    asterisk, published, _, _ = await run_call(routing)
    [desk] = asterisk.dialled
    assert desk in asterisk.hung_up and desk not in asterisk.bridged
    whisper = [media for channel, media in asterisk.played if channel == desk]
    assert whisper and whisper[0][0] == "sound:followme/call-from"
    ended = cdr(published)
    assert ended.device_id == "" and not ended.HasField("answered_at")
    # The caller was answered for screening, then heard "not answering" and was released.
    assert CALLER in asterisk.answered
    assert ended.disposition == call_pb2.DISPOSITION_NO_ANSWER


async def test_a_leg_that_accepts_with_star_is_bridged() -> None:
    screened = Screening(enabled=True, ask_name=True)
    routing = profile({"desk": "answer-key:*"}, RingMode.SEQUENTIAL, screening=screened)
    asterisk, published, _, _ = await run_call(routing)
    [desk] = asterisk.dialled
    assert asterisk.bridged == [CALLER, desk]
    # While the desk rang, the answered caller heard ringing as tone.
    assert (CALLER, ["tone:ring"]) in asterisk.played
    assert cdr(published).disposition == call_pb2.DISPOSITION_ANSWERED


async def test_a_plan_ending_in_no_messages_plays_then_rejects_without_a_second_prompt() -> None:
    routing = profile(
        {"desk": "noanswer"},
        RingMode.SEQUENTIAL,
        fallback=Fallback(FallbackKind.NO_MESSAGES),
    )
    asterisk, published, _, _ = await run_call(routing)
    caller_media = [media for channel, media in asterisk.played if channel == CALLER]
    assert caller_media == [["sound:vm-nobodyavail"]]
    ended = cdr(published)
    assert ended.hangup_cause == 19
    [missed] = published.of(call_pb2.CallMissed)
    assert missed.reason == "rejected"
