"""Helpers for tests and benchmarks that drive the real platform: CDRs and call events."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ringwise_kit import bus
from ringwise_kit.events import CallEvent, decode

from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import Registration, SippPhone

# start_phone(kind, person, **options): the e2e fixture that starts a sipp phone.
StartPhone = Callable[..., Awaitable[SippPhone]]

_callers = itertools.count(1)


def new_caller() -> str:
    """A caller number no other call of this run uses, to find its CDRs and events."""
    return f"+4477009{next(_callers):05d}"


async def cdrs_of(platform: LocalPlatform, caller: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        query = "?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        page = await platform.get_json("billing", f"/v1/cdrs{query}")
        items += [c for c in page["items"] if c["from_number"] == caller]
        cursor = page.get("next_cursor", "")
        if not cursor:
            return items


async def wait_cdrs(
    platform: LocalPlatform, caller: str, count: int = 1, timeout_s: float = 20.0
) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        found = await cdrs_of(platform, caller)
        if len(found) >= count:
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(found)}/{count} CDRs for {caller} after {timeout_s}s")
        await asyncio.sleep(0.2)


async def stream_events(platform: LocalPlatform) -> list[CallEvent]:
    """Every call event on the CALLS stream so far, in stream order."""
    nc = await bus.connect(platform.infra.endpoints.nats_url, "e2e-reader")
    try:
        js = nc.jetstream()
        pending = (await js.stream_info("CALLS")).state.messages
        sub = await js.subscribe("ringwise.v1.call.>", ordered_consumer=True)
        events = [decode(await sub.next_msg(timeout=5)) for _ in range(pending)]
        await sub.unsubscribe()
        return events
    finally:
        await nc.drain()


async def call_events(platform: LocalPlatform, call_id: str) -> list[CallEvent]:
    """Every event of one call, in stream order."""
    return [e for e in await stream_events(platform) if e.header.call_id == call_id]


async def register_until(
    platform: LocalPlatform,
    user: str,
    password: str,
    contact_port: int,
    *,
    registered: bool,
    timeout_s: float = 15.0,
) -> tuple[Registration, float]:
    """Retry REGISTER until the outcome is the expected one (provisioning applies within
    seconds); returns it and how long it took."""
    started = time.monotonic()
    while True:
        outcome = await platform.sipp.register(
            user, password, contact_port=contact_port, local_port=contact_port + 1
        )
        if outcome.registered == registered:
            return outcome, time.monotonic() - started
        assert time.monotonic() - started < timeout_s, (
            f"still {outcome.responses} after {timeout_s:g} s"
        )
        await asyncio.sleep(0.2)
