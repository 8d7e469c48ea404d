"""The kit's AriClient against a real Asterisk 22 (own instance, own ports) and sipp.

Covers the event WebSocket (typed events, several handlers per type, on_any, failing handlers),
the reconcile hook on every (re)connect, reconnect after an Asterisk restart, a clean close(),
and the REST calls Ringwise uses, including their error mapping.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from ringwise_dev.asterisk import AsteriskInstance
from ringwise_dev.ports import PortPlan
from ringwise_dev.sipp import PhoneKind, SippResult, SippWorkspace
from ringwise_kit.ari import (
    AriClient,
    AriError,
    AriEvent,
    AriNotFound,
    ChannelDestroyed,
    ChannelHangupRequest,
    Dial,
    PlaybackFinished,
    StasisEnd,
    StasisStart,
)
from ringwise_kit.ari import client as client_module
from ringwise_kit.ari.models import ChannelEnteredBridge, ChannelLeftBridge

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(60)]

# Our own port base: nobody else's tests or dev platform use 16000..17999.
PORTS = PortPlan(16000)
INSTANCE = "kit-ari-test"
# Core sounds only: "the-party-you-are-calling" is in the extra sounds, which Debian lacks.
SOUND = "sound:vm-nobodyavail"
# sipp callers bind their own ports from here (not the shared 5060+): another Asterisk's
# retransmitted responses to an earlier caller on that port would show up as extra calls.
_caller_ports = itertools.count(PORTS.phones + 100)
FINAL_DIAL_STATUSES = {"ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL"}

E = TypeVar("E", bound=AriEvent)


# ------------------------------------------------------------------------------ helpers


class EventLog:
    """An on_any handler keeping every event, with waits that also see past events."""

    def __init__(self) -> None:
        self.events: list[AriEvent] = []

    def __call__(self, event: AriEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[E], match: Callable[[E], bool] = lambda _e: True) -> list[E]:
        return [e for e in self.events if isinstance(e, kind) and match(e)]

    async def wait_for(
        self, kind: type[E], match: Callable[[E], bool] = lambda _e: True, timeout_s: float = 8.0
    ) -> E:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.of(kind, match)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                seen = [e.type for e in self.events]
                raise AssertionError(f"no matching {kind.__name__} within {timeout_s}s: {seen}")
            await asyncio.sleep(0.02)


class LogRecorder:
    """Stands in for the client module's structlog logger and records what it logs."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def _record(self, level: str) -> Callable[..., None]:
        def log(event: str, *_args: Any, **kwargs: Any) -> None:
            self.records.append((level, event, kwargs))

        return log

    def __getattr__(self, level: str) -> Callable[..., None]:
        return self._record(level)

    def events(self, level: str | None = None) -> list[str]:
        return [event for lvl, event, _ in self.records if level is None or lvl == level]


async def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Wait until predicate() holds; return how long it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def make_client(asterisk: AsteriskInstance, **kwargs: Any) -> AriClient:
    return AriClient(
        asterisk.ari_url, asterisk.ari_user, asterisk.ari_password, asterisk.ari_app, **kwargs
    )


def ari_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "ari-events" and not t.done()]


def place_call(sipp: SippWorkspace, number: str) -> asyncio.Task[SippResult]:
    """A PSTN call that waits for Asterisk (us) to hang up."""
    return asyncio.create_task(
        sipp.call(number, local_port=next(_caller_ports), wait_for_far_bye=True, timeout_s=15)
    )


# ------------------------------------------------------------------------------ fixtures


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def asterisk() -> AsyncIterator[AsteriskInstance]:
    instance = AsteriskInstance(PORTS, INSTANCE)
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()


@pytest.fixture
def sipp(asterisk: AsteriskInstance) -> SippWorkspace:
    return SippWorkspace.for_asterisk(asterisk)


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> LogRecorder:
    recorder = LogRecorder()
    monkeypatch.setattr(client_module, "log", recorder)
    return recorder


@pytest.fixture
def events() -> EventLog:
    return EventLog()


@pytest_asyncio.fixture(loop_scope="session")
async def ari(asterisk: AsteriskInstance, events: EventLog) -> AsyncIterator[AriClient]:
    client = make_client(asterisk)
    client.on_any(events)
    await client.start()
    try:
        await client.wait_connected()
        yield client
    finally:
        await client.close()


# ------------------------------------------------------------------------------ tests


async def test_connect_runs_the_reconcile_hook_before_wait_connected_returns(
    asterisk: AsteriskInstance, logged: LogRecorder
) -> None:
    # A short request timeout: the session's total timeout must not cut the WebSocket.
    client = make_client(asterisk, request_timeout_s=1.0)
    seen_in_hook: list[tuple[bool, str, int]] = []

    async def reconcile() -> None:
        # REST works inside the hook; events are not dispatched (nor `connected` set) yet.
        channels = await client.list_channels()
        seen_in_hook.append((client.connected, client.asterisk_id, len(channels)))

    client.on_connected(reconcile)
    assert not client.connected
    await client.start()
    try:
        await client.wait_connected(timeout_s=5)
        assert client.connected
        assert len(seen_in_hook) == 1
        connected_in_hook, id_in_hook, _ = seen_in_hook[0]
        assert connected_in_hook is False
        info = await client.asterisk_info()
        assert client.asterisk_id
        assert client.asterisk_id == info["system"]["entity_id"] == id_in_hook

        await asyncio.sleep(1.5)  # longer than request_timeout_s
        assert client.connected
        assert len(seen_in_hook) == 1, "the WebSocket was re-established"
    finally:
        await client.close()
    assert not client.connected
    assert logged.events("warning") == [] and logged.events("exception") == []


async def test_pstn_call_events_reach_every_handler(
    ari: AriClient, events: EventLog, sipp: SippWorkspace
) -> None:
    first: list[AriEvent] = []
    second: list[AriEvent] = []

    async def async_handler(event: AriEvent) -> None:
        first.append(event)

    ari.on("StasisStart", async_handler)
    ari.on("StasisStart", second.append)

    caller = place_call(sipp, "+15550110")
    start = await events.wait_for(StasisStart, lambda e: e.channel.dialplan.exten == "+15550110")
    assert start.args == ["inbound"]
    assert start.application == ari.app
    assert start.asterisk_id == ari.asterisk_id
    assert start.channel.caller.number == "+15550001"
    assert first == [start] and second == [start]
    channel_id = start.channel.id

    got = await ari.get_channel(channel_id)
    assert got is not None and got.id == channel_id and got.state == "Ring"

    await ari.answer(channel_id)
    playback_id = f"kit-test-{uuid.uuid4()}"
    playback = await ari.play(channel_id, SOUND, playback_id)
    assert playback.id == playback_id
    finished = await events.wait_for(PlaybackFinished, lambda e: e.playback.id == playback_id)
    assert finished.playback.state == "done"
    assert finished.playback.target_uri == f"channel:{channel_id}"

    assert await ari.hangup(channel_id, reason="normal") is True
    # An inbound channel is only subscribed while it is in Stasis: our hangup shows as
    # ChannelHangupRequest + StasisEnd; its ChannelDestroyed is not sent to the app.
    await events.wait_for(ChannelHangupRequest, lambda e: e.channel.id == channel_id)
    await events.wait_for(StasisEnd, lambda e: e.channel.id == channel_id)
    # StasisEnd can come a moment before Asterisk has destroyed the channel.
    for _ in range(250):
        if await ari.get_channel(channel_id) is None:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the channel still exists 5 s after our hangup")
    assert await ari.hangup(channel_id) is False

    result = await caller
    assert result.exit_code == 0, result.output_tail
    [call] = result.calls
    assert call.final_code == 200
    assert call.far_end_bye and not call.sent_bye
    # The typed handlers only ever saw StasisStart; on_any saw the rest too.
    assert all(isinstance(e, StasisStart) for e in first + second)
    assert {"StasisStart", "PlaybackFinished", "StasisEnd"} <= {e.type for e in events.events}


async def test_rest_errors_and_bridge_round_trip(
    ari: AriClient, events: EventLog, sipp: SippWorkspace
) -> None:
    assert await ari.get_channel("nope") is None
    assert await ari.hangup("nope") is False
    with pytest.raises(AriNotFound) as not_found:
        await ari.answer("nope")
    assert not_found.value.status == 404
    assert "nope" in str(not_found.value)
    with pytest.raises(AriNotFound):
        await ari.add_to_bridge("no-such-bridge", ["nope"])
    await ari.destroy_bridge("no-such-bridge")  # already gone: not an error
    await ari.stop_playback("no-such-playback")  # likewise

    bridge_id = f"kit-test-{uuid.uuid4()}"
    bridge = await ari.create_bridge(bridge_id)
    assert bridge.id == bridge_id
    assert "mixing" in bridge.bridge_type
    assert bridge_id in {b.id for b in await ari.list_bridges()}

    caller = place_call(sipp, "+15550111")
    start = await events.wait_for(StasisStart, lambda e: e.channel.dialplan.exten == "+15550111")
    channel_id = start.channel.id
    try:
        # A channel that is not in Stasis (or does not exist) is a client error, not a 404.
        with pytest.raises(AriError) as bad_channel:
            await ari.add_to_bridge(bridge_id, ["nope"])
        assert not isinstance(bad_channel.value, AriNotFound)
        assert 400 <= bad_channel.value.status < 500

        await ari.answer(channel_id)
        await ari.add_to_bridge(bridge_id, [channel_id])
        entered = await events.wait_for(ChannelEnteredBridge, lambda e: e.bridge.id == bridge_id)
        assert entered.channel.id == channel_id
        [listed] = [b for b in await ari.list_bridges() if b.id == bridge_id]
        assert listed.channels == [channel_id]

        await ari.destroy_bridge(bridge_id)
        # Destroying the bridge puts its channels out (BridgeDestroyed is not sent to an app
        # that did not subscribe to the bridge).
        left = await events.wait_for(ChannelLeftBridge, lambda e: e.bridge.id == bridge_id)
        assert left.channel.id == channel_id
        assert bridge_id not in {b.id for b in await ari.list_bridges()}
    finally:
        await ari.destroy_bridge(bridge_id)
        await ari.hangup(channel_id)
    result = await caller
    assert result.final_codes() == [200]


async def test_create_and_dial_an_answering_phone(
    ari: AriClient, events: EventLog, sipp: SippWorkspace
) -> None:
    """Originate to a sipp phone: create the channel, wait until it is in Stasis, then dial.

    A dial issued before the channel's StasisStart is refused with 409 (the channel is not in
    the application yet), so the wait is part of the protocol, not a test nicety.
    """
    phone = await sipp.start_phone(PhoneKind.ANSWER, PORTS.phones, ring_ms=200)
    try:
        channel_id = f"kit-test-{uuid.uuid4()}"
        created = await ari.create_channel(
            phone.dial_string, channel_id=channel_id, app_args=["outbound", "x"]
        )
        assert created.id == channel_id
        start = await events.wait_for(StasisStart, lambda e: e.channel.id == channel_id)
        assert start.args == ["outbound", "x"]

        await ari.dial(channel_id, caller=None, timeout_s=5)
        answer = await events.wait_for(
            Dial, lambda e: e.peer.id == channel_id and e.dialstatus == "ANSWER"
        )
        statuses = [e.dialstatus for e in events.of(Dial, lambda e: e.peer.id == channel_id)]
        assert "RINGING" in statuses
        assert statuses.index("RINGING") < statuses.index("ANSWER")
        assert answer.peer.state == "Up"
        got = await ari.get_channel(channel_id)
        assert got is not None and got.state == "Up"

        assert await ari.hangup(channel_id) is True
        # A channel we created stays subscribed after StasisEnd, so its end is reported.
        gone = await events.wait_for(ChannelDestroyed, lambda e: e.channel.id == channel_id)
        assert gone.cause == 16
        [seen] = await phone.wait_calls(1)
        assert seen.final_code == 200
        assert seen.far_end_bye
    finally:
        await phone.stop()


async def test_dialling_a_busy_phone_ends_the_channel_with_cause_17(
    ari: AriClient, events: EventLog, sipp: SippWorkspace
) -> None:
    """A 486 from the phone shows only as ChannelDestroyed with cause 17 (user busy).

    Asterisk sends NO final Dial event (no dialstatus BUSY) for a channel dialled through
    ARI: whoever originates must take the outcome from the channel's hangup cause.
    """
    phone = await sipp.start_phone(PhoneKind.BUSY, PORTS.phones + 1)
    try:
        channel_id = f"kit-test-{uuid.uuid4()}"
        await ari.create_channel(phone.dial_string, channel_id=channel_id, app_args=["outbound"])
        await events.wait_for(StasisStart, lambda e: e.channel.id == channel_id)
        await ari.dial(channel_id, timeout_s=5)
        gone = await events.wait_for(ChannelDestroyed, lambda e: e.channel.id == channel_id)
        assert gone.cause == 17
        await asyncio.sleep(0.3)  # anything late would show up now
        finals = [
            e.dialstatus
            for e in events.of(Dial, lambda e: e.peer.id == channel_id)
            if e.dialstatus in FINAL_DIAL_STATUSES
        ]
        assert finals == []
        [seen] = await phone.wait_calls(1)
        assert seen.final_code == 486
    finally:
        await phone.stop()


async def test_a_failing_handler_does_not_stop_other_handlers_or_later_events(
    ari: AriClient, events: EventLog, sipp: SippWorkspace, logged: LogRecorder
) -> None:
    after: list[AriEvent] = []

    def broken_sync(_event: AriEvent) -> None:
        raise RuntimeError("sync handler bug")

    async def broken_async(_event: AriEvent) -> None:
        raise ValueError("async handler bug")

    ari.on("StasisStart", broken_sync)
    ari.on("StasisStart", broken_async)
    ari.on("StasisStart", after.append)
    ari.on("StasisEnd", broken_sync)

    caller = place_call(sipp, "+15550112")
    start = await events.wait_for(StasisStart, lambda e: e.channel.dialplan.exten == "+15550112")
    assert after == [start]  # registered after the broken ones, still called
    channel_id = start.channel.id
    # Later events keep flowing on the same connection.
    await ari.answer(channel_id)
    playback_id = f"kit-test-{uuid.uuid4()}"
    await ari.play(channel_id, SOUND, playback_id)
    await events.wait_for(PlaybackFinished, lambda e: e.playback.id == playback_id)
    await ari.hangup(channel_id)
    await events.wait_for(StasisEnd, lambda e: e.channel.id == channel_id)
    assert ari.connected

    failures = [
        kwargs["event_type"]
        for level, event, kwargs in logged.records
        if level == "exception" and event == "ari_handler_failed"
    ]
    assert failures == ["StasisStart", "StasisStart", "StasisEnd"]
    assert (await caller).final_codes() == [200]


async def test_reconnects_after_asterisk_restart_and_closes_cleanly(
    asterisk: AsteriskInstance, sipp: SippWorkspace, logged: LogRecorder
) -> None:
    client = make_client(asterisk, max_backoff_s=0.3)
    events = EventLog()
    client.on_any(events)
    hook_runs: list[float] = []

    async def reconcile() -> None:
        await client.list_channels()
        hook_runs.append(time.monotonic())

    client.on_connected(reconcile)
    await client.start()
    try:
        await client.wait_connected()
        assert len(hook_runs) == 1
        assert len(ari_tasks()) == 1

        restart = asyncio.create_task(asterisk.restart())
        await until(lambda: not client.connected, 10, "client noticed Asterisk stopping")
        await restart
        took = await until(lambda: client.connected, 10, "client reconnected by itself")
        assert len(hook_runs) == 2
        assert took < 3, f"reconnect took {took:.1f}s after Asterisk was back"
        assert client.asterisk_id

        caller = place_call(sipp, "+15550113")
        start = await events.wait_for(
            StasisStart, lambda e: e.channel.dialplan.exten == "+15550113"
        )
        assert start.args == ["inbound"]
        await client.answer(start.channel.id)
        assert await client.hangup(start.channel.id) is True
        assert (await caller).final_codes() == [200]
    finally:
        await client.close()

    assert not client.connected
    assert ari_tasks() == []
    with pytest.raises(RuntimeError, match="closed"):  # the HTTP session is closed too
        await client.asterisk_info()
    assert logged.events("exception") == []
    assert "ari_disconnected" in logged.events("warning")
    # Nothing runs after close(): no reconnects, no hook calls.
    await asyncio.sleep(0.5)
    assert len(hook_runs) == 2
    assert [e for e in logged.events() if e == "ari_connected"] == ["ari_connected"] * 2
