"""Recording control in routing: the keep feature code, the events handed to the archive, and
which ARI events the router hands to a call."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from nats.aio.msg import Msg
from ringwise.events.v1 import recording_pb2
from ringwise_kit.ari import (
    AriEvent,
    Channel,
    Dial,
    LiveRecording,
    RecordingFailed,
    RecordingFinished,
)
from ringwise_routing.calls.cdr import CallRecord
from ringwise_routing.calls.recording import (
    CallRecording,
    RecordingPolicies,
    Track,
    recording_name,
)
from ringwise_routing.calls.router import CallRouter
from ringwise_routing.calls.session import CallSession

START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
ON_DEMAND = recording_pb2.RecordingPolicy(
    mode=recording_pb2.RECORDING_MODE_ON_DEMAND, retention_days=365
)


def on_demand() -> CallRecording:
    return CallRecording("c1", ON_DEMAND, user_channel="callee-leg")


@pytest.mark.parametrize(
    ("presses", "kept"),
    [
        ([("callee-leg", "*"), ("callee-leg", "9")], True),
        ([("callee-leg", "1"), ("callee-leg", "*"), ("callee-leg", "9")], True),
        ([("callee-leg", "*"), ("callee-leg", "8")], False),
        ([("callee-leg", "9"), ("callee-leg", "*")], False),
        ([("caller-leg", "*"), ("caller-leg", "9")], False),  # only the user's leg counts
        ([("callee-leg", "*"), ("caller-leg", "9")], False),
    ],
)
def test_the_user_keeps_the_recording_with_star_9(
    presses: list[tuple[str, str]], kept: bool
) -> None:
    recording = on_demand()
    for channel, digit in presses:
        recording.on_dtmf(channel, digit)
    assert recording.keep_requested is kept


def record() -> CallRecord:
    return CallRecord(
        call_id="c1",
        from_number="+441",
        to_number="+1555",
        started_at=START,
        tenant_id="acme",
        user_id="alice",
        answered_at=START + timedelta(seconds=2),
        ended_at=START + timedelta(seconds=32),
    )


def closing(events: list[AriEvent]) -> Callable[..., Any]:
    """A session's wait: hands out the given events in order, then times out."""

    async def wait_for(match: Callable[[AriEvent], bool], timeout_s: float) -> AriEvent | None:
        while events:
            event = events.pop(0)
            if match(event):
                return event
        return None

    return wait_for


def finished(name: str, failed: bool = False) -> AriEvent:
    kind = RecordingFailed if failed else RecordingFinished
    return kind(
        type=kind.__name__, timestamp=START, recording=LiveRecording(name=name, state="done")
    )


async def test_each_track_becomes_one_event_with_the_calls_times_and_the_keep_request() -> None:
    recording = on_demand()
    recording.tracks = [
        Track(recording_name("c1", "caller"), "caller"),
        Track(recording_name("c1", "callee"), "callee"),
    ]
    recording.on_dtmf("callee-leg", "*")
    recording.on_dtmf("callee-leg", "9")
    events = await recording.finish(
        record(), closing([finished("rw-c1-callee"), finished("other"), finished("rw-c1-caller")])
    )
    assert [(e.recording_id, e.party) for e in events] == [
        ("rw-c1-caller", "caller"),
        ("rw-c1-callee", "callee"),
    ]
    for event in events:
        assert event.layout == recording_pb2.CHANNEL_LAYOUT_DUAL
        assert event.keep_requested
        assert event.header.tenant_id == "acme" and event.header.call_id == "c1"
        assert event.started_at.ToDatetime(tzinfo=UTC) == START + timedelta(seconds=2)
        assert event.ended_at.ToDatetime(tzinfo=UTC) == START + timedelta(seconds=32)
    assert len({e.header.event_id for e in events}) == 2  # one de-duplication key per track


async def test_a_mixed_recording_is_handed_over_even_if_asterisk_never_confirms() -> None:
    recording = CallRecording("c1", ON_DEMAND, tracks=[Track("rw-c1", "")])
    [event] = await recording.finish(record(), closing([]))
    assert (event.recording_id, event.layout, event.party) == (
        "rw-c1",
        recording_pb2.CHANNEL_LAYOUT_MIXED,
        "",
    )
    assert not event.keep_requested


class FedCall:
    """Stands in for a CallSession: collects the events the router feeds it."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.events: list[AriEvent] = []

    def feed(self, event: AriEvent) -> None:
        self.events.append(event)


class Handlers:
    """Stands in for the AriClient the router subscribes to (events are fed by hand)."""

    def on(self, event_type: str, handler: Callable[[AriEvent], None]) -> None:
        pass

    def on_connected(self, handler: Callable[[], Any]) -> None:
        pass


def recording_event(name: str, target: str) -> AriEvent:
    return RecordingFinished(
        type="RecordingFinished",
        timestamp=START,
        recording=LiveRecording(name=name, state="done", target_uri=target),
    )


def test_recording_events_reach_the_call_owning_their_target_or_their_name() -> None:
    router = CallRouter(cast(Any, Handlers()), cast(Any, None), cast(Any, None))
    in_voicemail, recorded = FedCall("vm-call"), FedCall("c2")
    router._register("caller-1", cast(CallSession, in_voicemail))
    for key in ("c2", recording_name("c2"), recording_name("c2", "callee")):
        router._register(key, cast(CallSession, recorded))
    deposit = recording_event("vm-acme-0123", "channel:caller-1")  # voicemail_step's
    mixed = recording_event(recording_name("c2"), "bridge:c2")
    # A snoop track whose channel is already gone: found by its registered name.
    track = recording_event(recording_name("c2", "callee"), "channel:c2-snoop-callee")
    stray = recording_event("rw-unknown", "channel:nobody")
    for event in (deposit, mixed, track, stray):
        router.on_event(event)
    assert in_voicemail.events == [deposit]
    assert recorded.events == [mixed, track]


async def test_the_call_recording_ignores_a_voicemail_deposit_of_the_same_call() -> None:
    recording = CallRecording("c1", ON_DEMAND, tracks=[Track("rw-c1", "")])
    [event] = await recording.finish(
        record(), closing([finished("vm-acme-0123"), finished("rw-c1")])
    )
    assert event.asterisk_name == "rw-c1"


async def test_finished_events_name_the_asterisk_holding_the_files() -> None:
    """The archive fetches each file from the Asterisk pod that recorded it."""
    recording = CallRecording(
        "c1",
        ON_DEMAND,
        tracks=[Track("rw-c1-caller", "caller"), Track("rw-c1-callee", "callee")],
        asterisk_instance="rw-ringwise-asterisk-2",
    )
    events = await recording.finish(
        record(), closing([finished("rw-c1-caller"), finished("rw-c1-callee")])
    )
    assert [e.asterisk_instance for e in events] == ["rw-ringwise-asterisk-2"] * 2


class PolicyAnswers:
    """Stands in for NATS: answers policy requests with a policy chosen by the test."""

    def __init__(self) -> None:
        self.mode: recording_pb2.RecordingMode.ValueType = recording_pb2.RECORDING_MODE_NONE
        self.asked = 0

    async def request(self, subject: str, data: bytes, **options: float) -> Msg:
        self.asked += 1
        answer = recording_pb2.RecordingPolicy(mode=self.mode)
        return Msg(cast(Any, None), subject=subject, data=answer.SerializeToString())


async def test_a_settings_change_notice_drops_only_that_tenants_cached_policies() -> None:
    nats = PolicyAnswers()
    policies = RecordingPolicies(cast(Any, nats))
    assert (await policies.policy_for("acme", "alice")).mode == recording_pb2.RECORDING_MODE_NONE
    await policies.policy_for("globex", "bob")
    nats.mode = recording_pb2.RECORDING_MODE_COMPLIANT
    # Cached: the change is not seen until the notice (or the TTL).
    assert (await policies.policy_for("acme", "alice")).mode == recording_pb2.RECORDING_MODE_NONE
    policies.forget("acme")
    compliant = recording_pb2.RECORDING_MODE_COMPLIANT
    assert (await policies.policy_for("acme", "alice")).mode == compliant
    assert (await policies.policy_for("globex", "bob")).mode == recording_pb2.RECORDING_MODE_NONE
    assert nats.asked == 3


def test_dial_progress_reaches_the_call_but_the_start_of_a_dial_does_not() -> None:
    router = CallRouter(cast(Any, Handlers()), cast(Any, None), cast(Any, None))
    call = FedCall("c3")
    router._register("c3-1", cast(CallSession, call))

    def dial(status: str) -> Dial:
        return Dial(type="Dial", timestamp=START, dialstatus=status, peer=Channel(id="c3-1"))

    for status in ("", "RINGING", "ANSWER"):
        router.on_event(dial(status))
    assert [e.dialstatus for e in call.events if isinstance(e, Dial)] == ["RINGING", "ANSWER"]
