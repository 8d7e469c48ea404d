"""Benchmark: pure routing-policy decision latency (issue #5 target: p99 <= 0.5 ms).

Measures, in one run and one process, side by side:
- (a) today's routing decision, calls/policy.decide() (number -> ring the user's devices);
- (b) the policy engine, plans.engine.plan_call(), over a realistic mix of profiles: work
  schedules in several zones, Duet and sequential rings, Busy/Holiday/Travelling and a
  tenant-defined state, call-flow rules with redirects, screening, VIP lists, block/allow
  lists, deleted and blocked terminals, callers known, VIP, blocked and anonymous, at moments
  spread over a year (DST changes included);
- (c) explain(): the same decision rendered as JSON-able data (the explain API's work).

    uv run python bench/policy_decisions.py            # 200000 decisions per path
    uv run python bench/policy_decisions.py --quick    # 20000 (CI smoke run)

No platform, no ports: pure CPU. Other work on the machine still skews the tail, so the p99
is printed with the ratio to (a), measured the same way in the same run.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from datetime import time as clock

from ringwise.directory.v1 import resolve_pb2
from ringwise_dev.sipp import percentile
from ringwise_routing.calls import policy
from ringwise_routing.plans.engine import plan_call
from ringwise_routing.plans.examples import OFFICE_HOURS, alice
from ringwise_routing.plans.explain import explain
from ringwise_routing.plans.model import (
    ALL_DAYS,
    WORK_DAYS,
    AnonymousPolicy,
    AvailabilityState,
    Caller,
    CallFlowRule,
    DeviceStatus,
    Fallback,
    FallbackKind,
    InboundFilter,
    LocationKind,
    ManualState,
    PlanContext,
    RedirectKind,
    RedirectTarget,
    RingMode,
    RoutingProfile,
    ScheduleEntry,
    Screening,
    TenantPolicy,
    Terminal,
    TimeRange,
    WorkSchedule,
    standard_states,
)
from ringwise_routing.plans.validation import validate_profile

TARGET_P99_MS = 0.5
ZONES = ("Europe/London", "America/New_York", "Australia/Sydney", "Asia/Kolkata")
LUNCH = AvailabilityState(
    "Lunch", ("t-mobile",), RingMode.SEQUENTIAL, Fallback(FallbackKind.VOICEMAIL, "lunch")
)
MIX_TENANT = TenantPolicy(
    "acme",
    custom_states=frozenset({"Lunch"}),
    inbound_filter=InboundFilter(blocked=frozenset({"+44870*", "+19005550000"})),
)


def profile_mix(rng: random.Random, count: int) -> list[RoutingProfile]:
    """`count` different, valid profiles built from the seed behaviours."""
    profiles: list[RoutingProfile] = []
    base = alice()
    while len(profiles) < count:
        n = len(profiles)
        terminals = [
            Terminal("t-mobile", LocationKind.MOBILE, f"PJSIP/u{n}-mobile", rng.randint(10, 30)),
            Terminal("t-desk", LocationKind.DESK, f"PJSIP/u{n}-desk", rng.randint(10, 30)),
            Terminal("t-home", LocationKind.HOME, f"+4416329{n % 100000:05d}", 25),
        ]
        if rng.random() < 0.3:
            terminals.append(Terminal("t-temp", LocationKind.TEMP, "+33140000000", 30))
        if rng.random() < 0.1:
            terminals[1] = replace(terminals[1], status=DeviceStatus.DELETED)
        ids = tuple(t.terminal_id for t in terminals)
        states = standard_states(
            ids[: rng.randint(1, len(ids))],
            ring_mode=rng.choice(list(RingMode)),
            travelling_ids=("t-mobile",),
        )
        states["Lunch"] = LUNCH
        if rng.random() < 0.3:
            states["Busy"] = replace(states["Busy"], fallback=Fallback(FallbackKind.DELEGATE))
        zone = rng.choice(ZONES)
        schedule = None
        if rng.random() < 0.6:
            schedule = WorkSchedule(
                zone,
                (
                    *OFFICE_HOURS.entries,
                    ScheduleEntry(TimeRange(WORK_DAYS, clock(12, 30), clock(13, 30)), "Lunch"),
                ),
                rng.choice(("Busy", "Holiday", "Travelling")),
            )
        rule = None
        if rng.random() < 0.4:
            rule = CallFlowRule(
                rng.choice((None, TimeRange(ALL_DAYS, clock(18), clock(8)))),
                zone,
                rng.randint(5, 30),
                (
                    RedirectTarget(RedirectKind.EXTERNAL, "+15550100", 15),
                    RedirectTarget(rng.choice((RedirectKind.USER, RedirectKind.TEAM)), "carol"),
                )[: rng.randint(1, 2)],
            )
        manual = None
        if rng.random() < 0.3:
            manual = ManualState(rng.choice(("Busy", "Holiday", "Travelling", "Lunch")))
        profile = replace(
            base,
            user_id=f"user{n}",
            terminals=tuple(terminals),
            states=states,
            schedule=schedule,
            manual=manual,
            call_flow=rule,
            vip_numbers=frozenset({f"+4477009{i:05d}" for i in range(rng.randint(0, 20))}),
            inbound_filter=InboundFilter(
                blocked=frozenset({f"+4420790{i:05d}" for i in range(rng.randint(0, 50))}),
                anonymous=rng.choice(list(AnonymousPolicy)),
            ),
            delegates=("bob", "carol")[: rng.randint(1, 2)],
            screening=Screening(
                enabled=rng.random() < 0.3, password="2468" if rng.random() < 0.1 else None
            ),
        )
        errors = validate_profile(profile, MIX_TENANT)
        assert not errors, errors  # the mix is what the API would have accepted
        profiles.append(profile)
    return profiles


def caller_mix(rng: random.Random) -> Caller:
    roll = rng.random()
    if roll < 0.1:
        return Caller(None)
    if roll < 0.2:
        return Caller(f"+4477009{rng.randint(0, 19):05d}", "VIP")  # often on the VIP list
    if roll < 0.25:
        return Caller(f"+4420790{rng.randint(0, 49):05d}")  # often blocked by the user
    if roll < 0.28:
        return Caller("+448701234567")  # blocked by the tenant's prefix
    if roll < 0.4:
        return Caller("+441632960500", "Carol", internal_user_id="carol")
    return Caller(f"+1555{rng.randint(0, 9999999):07d}")


def measure(decide: Callable[[int], object], count: int) -> list[float]:
    """Latency of each call in microseconds (GC paused so a collection is not one sample)."""
    samples: list[float] = []
    clock_ns = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        for i in range(count):
            start = clock_ns()
            decide(i)
            samples.append((clock_ns() - start) / 1000.0)
    finally:
        gc.enable()
    return samples


def report(name: str, samples: Sequence[float], baseline_p99: float | None) -> float:
    p50 = percentile(samples, 50) or 0.0
    p99 = percentile(samples, 99) or 0.0
    worst = max(samples)
    ratio = f"  p99 x{p99 / baseline_p99:.1f} of (a)" if baseline_p99 else ""
    print(f"{name:<44} p50 {p50:8.1f} us  p99 {p99:8.1f} us  max {worst:8.1f} us{ratio}")
    return p99


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20000 decisions per path")
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--profiles", type=int, default=500)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    count = 20_000 if args.quick else args.count

    rng = random.Random(args.seed)
    profiles = profile_mix(rng, args.profiles)
    year = datetime(2026, 1, 1, tzinfo=UTC)
    inputs = [
        (
            profiles[rng.randrange(len(profiles))],
            caller_mix(rng),
            year + timedelta(seconds=rng.randrange(365 * 24 * 3600)),
        )
        for _ in range(min(count, 50_000))
    ]
    context = PlanContext(MIX_TENANT)

    reply = resolve_pb2.ResolveNumberReply(
        status=resolve_pb2.ResolveNumberReply.STATUS_FOUND,
        tenant_id="acme",
        user_id="alice",
        devices=[resolve_pb2.Device(device_id="d1", dial_string="PJSIP/alice-desk")],
        ring_timeout_s=20,
    )

    def today(i: int) -> object:
        return policy.decide("+15550100", reply)

    def engine(i: int) -> object:
        profile, caller, at = inputs[i % len(inputs)]
        return plan_call(profile, caller, at, context)

    def explained(i: int) -> object:
        profile, caller, at = inputs[i % len(inputs)]
        return explain(profile, caller, at, context)

    # Warm up (imports, zoneinfo caches) before measuring.
    for i in range(2000):
        today(i)
        engine(i)
        explained(i)

    print(f"{count} decisions per path, {len(profiles)} profiles, {len(inputs)} distinct calls")
    kinds: dict[str, int] = {}
    for profile, caller, at in inputs[:5000]:
        plan = plan_call(profile, caller, at, context)
        final = type(plan.final).__name__ + (" after ringing" if plan.rung_terminals() else "")
        kinds[final] = kinds.get(final, 0) + 1
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    print(f"plans ending in (first 5000 calls): {outcomes}")

    base = report("(a) today's decide() (ring devices)", measure(today, count), None)
    p99 = report("(b) plan_call() policy engine", measure(engine, count), base)
    report("(c) explain() (plan + JSON-able dict)", measure(explained, count), base)
    verdict = "OK" if p99 / 1000.0 <= TARGET_P99_MS else "MISSED"
    print(f"target: policy engine p99 <= {TARGET_P99_MS} ms -> {p99 / 1000.0:.3f} ms {verdict}")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
