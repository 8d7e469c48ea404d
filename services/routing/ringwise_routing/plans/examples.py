"""Sample data: a realistic routing profile, callers and moments (tests, bench, docs)."""

from __future__ import annotations

from datetime import UTC, datetime, time

from .model import (
    WORK_DAYS,
    Caller,
    LocationKind,
    PlanContext,
    RoutingProfile,
    ScheduleEntry,
    TenantPolicy,
    Terminal,
    TimeRange,
    WorkSchedule,
    standard_states,
)

TENANT = TenantPolicy("acme")
CONTEXT = PlanContext(tenant=TENANT)
# Wednesday 25 November 2026; London is on GMT then, so local time = UTC.
WED_10_00 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
WED_20_00 = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
SAT_10_00 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)

STRANGER_NUMBER = "+441632960999"
VIP_NUMBER = "+441632960777"
STRANGER = Caller(STRANGER_NUMBER, "Stranger")
VIP = Caller(VIP_NUMBER, "Big Client")
ANONYMOUS = Caller(None)
COLLEAGUE = Caller("+441632960500", "Carol", internal_user_id="carol")

MOBILE = Terminal("t-mobile", LocationKind.MOBILE, "PJSIP/alice-mobile", ring_timeout_s=20)
DESK = Terminal("t-desk", LocationKind.DESK, "PJSIP/alice-desk", ring_timeout_s=15)
HOME = Terminal("t-home", LocationKind.HOME, "+441632960001", ring_timeout_s=25)

OFFICE_HOURS = WorkSchedule(
    "Europe/London",
    (ScheduleEntry(TimeRange(WORK_DAYS, time(9, 0), time(17, 30)), "Available"),),
    otherwise="Busy",
)


def alice() -> RoutingProfile:
    """Alice: desk then mobile when Available, delegate Bob, VIP Big Client, no schedule."""
    return RoutingProfile(
        user_id="alice",
        tenant_id="acme",
        terminals=(MOBILE, DESK, HOME),
        states=standard_states(("t-desk", "t-mobile")),
        vip_numbers=frozenset({VIP_NUMBER}),
        delegates=("bob",),
    )
