"""reconcile(): what the router does with channels of its app that no call owns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

from prometheus_client import REGISTRY
from ringwise_kit.ari import AriEvent, Bridge, Channel, DialplanCep, StasisStart
from ringwise_routing.calls import policy
from ringwise_routing.calls.call_state import StoredCall
from ringwise_routing.calls.cdr import CallRecord
from ringwise_routing.calls.router import CallRouter

APP = "ringwise"
CREATED = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


def channel(channel_id: str, state: str, app_data: str) -> Channel:
    return Channel(
        id=channel_id,
        state=state,
        dialplan=DialplanCep(app_name="Stasis", app_data=app_data, exten="+442071234567"),
        creationtime=CREATED,
    )


def orphans(outcome: str) -> float:
    value = REGISTRY.get_sample_value("ringwise_routing_orphans_total", {"outcome": outcome})
    return value or 0.0


class Asterisk:
    """Stands in for the AriClient: lists what the test puts there, records hang-ups."""

    app = APP

    def __init__(self, channels: list[Channel], bridges: list[Bridge] | None = None) -> None:
        self.channels = channels
        self.bridges = bridges or []
        self.hung_up: list[tuple[str, int | None]] = []

    def on(self, event_type: str, handler: Callable[[AriEvent], None]) -> None:
        pass

    def on_connected(self, handler: Callable[[], Any]) -> None:
        pass

    async def list_channels(self) -> list[Channel]:
        return self.channels

    async def list_bridges(self) -> list[Bridge]:
        return self.bridges

    async def asterisk_info(self) -> dict[str, Any]:
        return {"system": {"entity_id": "ast-1"}}

    async def hangup(self, channel_id: str, reason_code: int | None = None) -> None:
        self.hung_up.append((channel_id, reason_code))

    async def destroy_bridge(self, bridge_id: str) -> None:
        pass


class StoredState:
    """Stands in for the CallStateStore: the calls an earlier instance left."""

    def __init__(self, calls: list[StoredCall]) -> None:
        self.calls = calls
        self.forgotten: list[str] = []

    async def all(self) -> list[StoredCall]:
        return self.calls

    def forget(self, call_id: str) -> None:
        self.forgotten.append(call_id)


class Published:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def publish(self, event: Any) -> None:
        self.events.append(event)


class Router(CallRouter):
    """The router with its call sessions replaced by a record of the calls it starts."""

    def __init__(
        self,
        asterisk: Asterisk,
        state: StoredState | None = None,
        published: Published | None = None,
    ) -> None:
        super().__init__(
            cast(Any, asterisk),
            cast(Any, None),
            cast(Any, published),
            call_state=cast(Any, state),
        )
        self.started: list[StasisStart] = []

    def _start_call(self, start: StasisStart) -> None:
        self.started.append(start)
        self._register(start.channel.id, cast(Any, self))  # tracked, as a session would be


class EndedCall:
    """A call this router ran and ended (its caller's hang-up may still be under way)."""

    def __init__(self, caller_id: str) -> None:
        self.call_id = f"call-{caller_id}"
        self.caller_id = caller_id
        self.channels = {caller_id}

    def feed(self, event: AriEvent) -> None:
        pass

    def gone_during_outage(self) -> None:
        pass

    async def run(self) -> None:
        return None


async def test_an_unanswered_inbound_caller_nobody_owns_is_routed_afresh_and_only_once() -> None:
    waiting = channel("caller-1", "Ring", f"{APP},inbound")
    asterisk = Asterisk([waiting])
    router = Router(asterisk)
    before = orphans("routed_afresh")
    await router.reconcile()
    assert orphans("routed_afresh") == before + 1
    [start] = router.started
    assert start.channel == waiting
    assert start.args == ["inbound"]
    assert start.asterisk_id == "ast-1"
    assert start.application == APP
    assert asterisk.hung_up == []
    # Its StasisStart arriving after the listing does not start a second call.
    router.on_event(StasisStart(timestamp=CREATED, channel=waiting, args=["inbound"]))
    assert len(router.started) == 1


async def test_other_orphans_are_hung_up_or_left_as_before() -> None:
    answered = channel("caller-up", "Up", f"{APP},inbound")
    leg = channel("leg-1", "Down", f"{APP},dialed,call-9")
    phone_calling_out = channel("phone-1", "Ring", f"{APP},outbound")
    talking = channel("caller-talking", "Up", f"{APP},inbound")
    callee = channel("callee-talking", "Up", f"{APP},dialed,call-8")
    elsewhere = channel("other-app", "Ring", "someone-else,inbound")
    bridge = Bridge(id="b-1", channels=["caller-talking", "callee-talking"])
    asterisk = Asterisk([answered, leg, phone_calling_out, talking, callee, elsewhere], [bridge])
    router = Router(asterisk)
    before = orphans("hung_up"), orphans("left_bridged")
    await router.reconcile()
    assert (orphans("hung_up"), orphans("left_bridged")) == (before[0] + 3, before[1] + 2)
    assert router.started == []
    cause = policy.CAUSE_PLATFORM_FAILURE
    assert sorted(asterisk.hung_up) == [("caller-up", cause), ("leg-1", cause), ("phone-1", cause)]


async def test_a_caller_whose_call_this_router_ended_is_not_routed_again() -> None:
    ending = channel("caller-2", "Ring", f"{APP},inbound")
    asterisk = Asterisk([ending])
    router = Router(asterisk)
    router._track(EndedCall("caller-2"))
    await asyncio.sleep(0)  # the call's task ends
    await asyncio.sleep(0)
    await router.reconcile()
    assert router.started == []
    assert asterisk.hung_up == [("caller-2", policy.CAUSE_PLATFORM_FAILURE)]


def stored_call(call_id: str, caller: str, leg: str, bridge: str | None) -> StoredCall:
    record = CallRecord(
        call_id=call_id, from_number="+447700900001", to_number="+4420", started_at=CREATED
    )
    return StoredCall(record=record, caller_id=caller, legs=(leg,), bridge_id=bridge)


async def test_calls_left_in_redis_are_adopted_or_ended_and_not_counted_twice() -> None:
    talking = [
        channel("caller-3", "Up", f"{APP},inbound"),
        channel("leg-3", "Up", f"{APP},dialed,c3"),
    ]
    ringing = [
        channel("caller-4", "Ring", f"{APP},inbound"),
        channel("leg-4", "Ringing", f"{APP},dialed,c4"),
    ]
    asterisk = Asterisk([*talking, *ringing], [Bridge(id="b-3", channels=["caller-3", "leg-3"])])
    state = StoredState(
        [
            stored_call("c3", "caller-3", "leg-3", "b-3"),
            stored_call("c4", "caller-4", "leg-4", None),
        ]
    )
    router = Router(asterisk, state, Published())
    before = {o: orphans(o) for o in ("adopted", "ended", "routed_afresh", "hung_up")}
    await router.reconcile()
    after = {o: orphans(o) - before[o] for o in before}
    assert after == {"adopted": 1, "ended": 1, "routed_afresh": 0, "hung_up": 0}
    # The ringing call's channels were ended once, by its stored state (not again as orphans),
    # and its ringing caller was not routed afresh.
    assert router.started == []
    assert sorted(c for c, _ in asterisk.hung_up) == ["caller-4", "leg-4"]
    assert state.forgotten == ["c4"]
    await router.abandon()  # the adopted conversation waits for a hang-up
