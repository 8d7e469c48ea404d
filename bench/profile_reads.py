"""Benchmark: what reading a user's routing costs a call (profiles/service.py routing_for).

Measures, in one run and one process, side by side:
- (a) source.default_routing(): what a user without a stored profile gets (no store at all);
- (b) StoredProfiles.routing_for() answered from the instance's copy (the usual case: the
  profile and tenant policy were read before and no change notice has arrived since), for a
  stored profile with two devices, a number, five states, a schedule and a call-flow rule;
- (c) routing_for() when the copy was just dropped (a change notice): one read each of the
  profile and the policy from the store, here an in-memory stand-in, so (c) - (b) is this
  code's overhead without Mongo's round trip (which the deployment adds, ~0.3-1 ms).

    uv run python bench/profile_reads.py            # 100000 reads per path
    uv run python bench/profile_reads.py --quick    # 10000

No platform, no ports: one asyncio loop. Other work on the machine skews the tail, so each
p99 is printed with its ratio to (a), measured the same way in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from ringwise.directory.v1 import resolve_pb2
from ringwise_dev.sipp import percentile
from ringwise_routing.profiles import document
from ringwise_routing.profiles.service import StoredProfiles
from ringwise_routing.profiles.source import default_routing
from ringwise_routing.profiles.store import ProfileStore, Stored

Reply = resolve_pb2.ResolveNumberReply


def trunk_dial(number: str) -> str:
    return f"PJSIP/pstn/sip:{number}@192.0.2.1:5060"


def user(index: int) -> Reply:
    return Reply(
        status=Reply.STATUS_FOUND,
        tenant_id="acme",
        user_id=f"u{index}",
        smartnumber="+441632960001",
        outbound_numbers=["+441632960099"],
        allowed_clis=["+441632960050"],
        devices=[
            resolve_pb2.Device(device_id="desk", kind="sip", dial_string="PJSIP/d1", label="Desk"),
            resolve_pb2.Device(device_id="soft", kind="sip", dial_string="PJSIP/s1", label="Desk"),
        ],
        ring_timeout_s=20,
    )


PROFILE = document.parse_profile(
    {
        "terminals": [
            {"id": "desk", "location": "Desk", "device_id": "desk"},
            {"id": "soft", "location": "Desk", "device_id": "soft"},
            {"id": "mobile", "location": "Mobile", "number": "+447700900123"},
        ],
        "states": {
            "Available": {"terminals": ["desk", "soft", "mobile"], "ring_mode": "simultaneous"},
            "Busy": {},
            "Travelling": {"terminals": ["mobile"]},
            "Holiday": {"fallback": {"kind": "no_messages"}},
            "Meeting": {"terminals": ["mobile"], "fallback": {"kind": "delegate"}},
        },
        "schedule": {
            "timezone": "Europe/London",
            "entries": [
                {
                    "days": ["mon", "tue", "wed", "thu", "fri"],
                    "start": "09:00",
                    "end": "17:30",
                    "state": "Available",
                }
            ],
            "otherwise": "Busy",
        },
        "call_flow": {
            "timezone": "Europe/London",
            "call_timeout_s": 20,
            "redirects": [{"kind": "external", "target": "+441632960888"}],
        },
        "delegates": ["u2"],
        "vip_numbers": ["+441632960333"],
    }
)
POLICY = document.parse_policy({"custom_states": ["Meeting"]})


class MemoryStore:
    """The two reads routing_for makes, from memory (Mongo's round trip left out)."""

    async def get_profile(self, tenant_id: str, user_id: str) -> Stored:
        return Stored(PROFILE, 3)

    async def get_policy(self, tenant_id: str) -> Stored:
        return Stored(POLICY, 1)


async def measure(
    n: int, read: Callable[[Reply], Awaitable[Any]], users: list[Reply]
) -> list[float]:
    samples: list[float] = []
    gc.collect()
    gc.disable()
    try:
        for i in range(n):
            reply = users[i % len(users)]
            start = time.perf_counter()
            await read(reply)
            samples.append((time.perf_counter() - start) * 1e6)
    finally:
        gc.enable()
    return sorted(samples)


async def run(n: int) -> None:
    users = [user(i) for i in range(1000)]
    profiles = StoredProfiles(
        cast(Any, None), cast(ProfileStore, MemoryStore()), trunk_dial, ttl_s=1e9
    )

    async def default(reply: Reply) -> Any:
        return default_routing(reply, trunk_dial)

    async def cached(reply: Reply) -> Any:
        return await profiles.routing_for(reply)

    async def dropped(reply: Reply) -> Any:
        profiles.forget(reply.tenant_id, reply.user_id)
        profiles.forget(reply.tenant_id)
        return await profiles.routing_for(reply)

    for reply in users:  # warm the copies
        await profiles.routing_for(reply)
    results = {}
    for name, read in (
        ("a default_routing", default),
        ("b routing_for, copy", cached),
        ("c routing_for, copy dropped", dropped),
    ):
        results[name] = await measure(n, read, users)
    base = p(results["a default_routing"], 99)
    print(f"{'path':32} {'p50 us':>8} {'p99 us':>8} {'p99/(a)':>8}")
    for name, samples in results.items():
        p50, p99 = p(samples, 50), p(samples, 99)
        print(f"{name:32} {p50:8.1f} {p99:8.1f} {p99 / base:8.2f}")


def p(samples: list[float], q: float) -> float:
    value = percentile(samples, q)
    assert value is not None
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    asyncio.run(run(10_000 if args.quick else 100_000))
    return 0


if __name__ == "__main__":
    sys.exit(main())
