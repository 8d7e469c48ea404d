"""The pure pieces of running a CallPlan (calls/policy.py, call_state.py, adopted.py,
voicemail_step.availability_for): one row per behaviour."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from ringwise.directory.v1 import resolve_pb2
from ringwise.events.v1 import call_pb2
from ringwise.voicemail.v1 import deposit_pb2
from ringwise_kit.ari import CallerId, Channel, DialplanCep, StasisStart
from ringwise_routing.calls import call_state, policy
from ringwise_routing.calls.adopted import adoptable
from ringwise_routing.calls.cdr import CallRecord
from ringwise_routing.calls.session import CallServices, CallSession, InternalCall, missed_reason
from ringwise_routing.calls.voicemail_step import availability_for
from ringwise_routing.plans.engine import plan_call
from ringwise_routing.plans.model import (
    Caller,
    InboundFilter,
    LocationKind,
    PlanContext,
    RingMode,
    RoutingProfile,
    TenantPolicy,
    Terminal,
    standard_states,
)

Reply = resolve_pb2.ResolveNumberReply
NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def alice(
    *, blocked: frozenset[str] = frozenset(), mode: RingMode = RingMode.SIMULTANEOUS
) -> RoutingProfile:
    terminals = (
        Terminal("desk", LocationKind.DESK, "PJSIP/desk", 20),
        Terminal("mobile", LocationKind.MOBILE, "PJSIP/pstn/sip:+447700900001@trunk", 15),
    )
    return RoutingProfile(
        user_id="alice",
        tenant_id="acme",
        terminals=terminals,
        states=standard_states(("desk", "mobile"), ring_mode=mode),
        inbound_filter=InboundFilter(blocked=blocked),
    )


def reply() -> Reply:
    return Reply(status=Reply.STATUS_FOUND, tenant_id="acme", user_id="alice")


@pytest.mark.parametrize(
    ("statuses", "combined"),
    [
        (["NOANSWER", "BUSY"], "NOANSWER"),  # one phone rang out: the user did not answer
        (["BUSY", "BUSY"], "BUSY"),
        (["BUSY", "CHANUNAVAIL"], "BUSY"),
        (["CHANUNAVAIL", "CONGESTION"], "CONGESTION"),
        (["CHANUNAVAIL"], "CHANUNAVAIL"),
        (["CANCEL", "CHANUNAVAIL"], "CHANUNAVAIL"),
        ([], "CHANUNAVAIL"),
    ],
)
def test_a_ring_step_nobody_answered_has_one_status(statuses: list[str], combined: str) -> None:
    assert policy.combined_dialstatus(statuses) == combined


def test_the_routed_event_carries_the_plan_with_aligned_reasons_and_codes() -> None:
    plan = plan_call(alice(), Caller("+441632960001"), NOON, PlanContext(TenantPolicy("acme")))
    decision = policy.plan_decision("+15550100", reply(), plan)
    assert decision.action == call_pb2.RoutingDecision.ACTION_RING
    assert [t.device_id for t in decision.targets] == ["desk", "mobile"]
    assert [t.ring_timeout_s for t in decision.targets] == [20, 15]
    assert decision.state == "Available"
    assert decision.reason_codes[0] == "number.found"
    assert decision.reasons[0] == "number +15550100 belongs to user alice of tenant acme"
    assert list(decision.reason_codes[1:]) == [r.code for r in plan.reasons]
    assert len(decision.reasons) == len(decision.reason_codes)
    assert list(decision.steps) == ["ring simultaneous desk/20,mobile/15", "voicemail available"]
    assert decision.hangup_cause == 0
    assert decision.prompt == ""


def test_a_blocked_caller_is_routed_as_a_reject_with_its_prompt() -> None:
    profile = alice(blocked=frozenset({"+441632960666"}))
    plan = plan_call(profile, Caller("+441632960666"), NOON, PlanContext(TenantPolicy("acme")))
    decision = policy.plan_decision("+15550100", reply(), plan)
    assert decision.action == call_pb2.RoutingDecision.ACTION_REJECT
    assert not decision.targets
    assert decision.hangup_cause == 21
    assert decision.prompt == "sound:ss-noservice"
    assert "caller.blocked.user" in decision.reason_codes


def test_leading_reasons_come_after_the_number_and_before_the_plans() -> None:
    plan = plan_call(alice(), Caller("+441632960001"), NOON, PlanContext(TenantPolicy("acme")))
    decision = policy.plan_decision(
        "+15550100", reply(), plan, leading=(("profile.unavailable", "defaults"),)
    )
    assert list(decision.reason_codes[:2]) == ["number.found", "profile.unavailable"]


@pytest.mark.parametrize(
    ("cause", "disposition"),
    [
        (17, call_pb2.DISPOSITION_BUSY),
        (19, call_pb2.DISPOSITION_NO_ANSWER),
        (1, call_pb2.DISPOSITION_NOT_IN_SERVICE),
        (21, call_pb2.DISPOSITION_UNREACHABLE),
    ],
)
def test_a_plan_ending_in_reject_records_a_disposition(
    cause: int, disposition: call_pb2.Disposition.ValueType
) -> None:
    assert policy.disposition_for_cause(cause) == disposition


def test_a_users_greeting_media_is_played_as_the_generic_nobody_available() -> None:
    assert policy.playable("greeting:holiday") == "sound:vm-nobodyavail"
    assert policy.playable("sound:ss-noservice") == "sound:ss-noservice"


@pytest.mark.parametrize(
    ("greeting", "dialstatus", "availability"),
    [
        ("available", "NOANSWER", deposit_pb2.AVAILABILITY_AVAILABLE),
        ("available", "BUSY", deposit_pb2.AVAILABILITY_BUSY),
        ("available", "CHANUNAVAIL", deposit_pb2.AVAILABILITY_UNAVAILABLE),
        ("busy", "CHANUNAVAIL", deposit_pb2.AVAILABILITY_BUSY),
        ("holiday", "NOANSWER", deposit_pb2.AVAILABILITY_EXTENDED_ABSENCE),
        ("travelling", "NOANSWER", deposit_pb2.AVAILABILITY_UNAVAILABLE),
    ],
)
def test_the_plans_greeting_picks_the_voicemail_availability(
    greeting: str, dialstatus: str, availability: deposit_pb2.Availability.ValueType
) -> None:
    assert availability_for(greeting, dialstatus) == availability


def record(**changes: object) -> CallRecord:
    rec = CallRecord(
        call_id="c1",
        from_number="+441632960001",
        to_number="+15550100",
        started_at=NOON,
        tenant_id="acme",
        user_id="alice",
    )
    for name, value in changes.items():
        setattr(rec, name, value)
    return rec


def test_a_calls_state_survives_the_round_trip_through_redis() -> None:
    answered = record(
        device_id="desk",
        answered_at=datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC),
        disposition=call_pb2.DISPOSITION_ANSWERED,
        direction=call_pb2.DIRECTION_INTERNAL,
    )
    stored = call_state.decode(call_state.encode(answered, "chan-1", ["c1-2"], "c1"))
    assert stored.record == answered
    assert (stored.caller_id, stored.legs, stored.bridge_id) == ("chan-1", ("c1-2",), "c1")
    assert stored.channels == ("chan-1", "c1-2")
    ringing = call_state.decode(call_state.encode(record(), "chan-1", ["c1-1", "c1-2"], None))
    assert ringing.bridge_id is None
    assert ringing.record.answered_at is None


@pytest.mark.parametrize(
    ("bridge_id", "present", "bridged", "adopt"),
    [
        ("c1", {"chan-1", "c1-2"}, {"chan-1", "c1-2"}, True),
        ("c1", {"chan-1"}, set(), False),  # the callee left during the restart
        ("c1", {"c1-2"}, {"c1-2"}, False),  # the caller left
        (None, {"chan-1", "c1-2"}, set(), False),  # still ringing: ended, not adopted
    ],
)
def test_only_a_conversation_still_bridged_is_adopted(
    bridge_id: str | None, present: set[str], bridged: set[str], adopt: bool
) -> None:
    stored = call_state.StoredCall(record(), "chan-1", ("c1-2",), bridge_id)
    assert adoptable(stored, present, bridged.__contains__) is adopt


@pytest.mark.parametrize(
    ("hangup_by", "rejected", "reason"),
    [
        ("caller", False, "caller_hung_up"),
        ("platform", False, "no_answer"),
        ("platform", True, "rejected"),
    ],
)
def test_a_missed_call_says_why(hangup_by: str, rejected: bool, reason: str) -> None:
    assert missed_reason(record(hangup_by=hangup_by), rejected=rejected) == reason


def test_an_internal_call_is_recorded_between_the_users_extensions() -> None:
    start = StasisStart(
        type="StasisStart",
        timestamp=NOON,
        args=["outbound"],
        channel=Channel(
            id="phone-1",
            caller=CallerId(name="Bob", number="rwbob"),
            dialplan=DialplanCep(exten="201"),
            creationtime=NOON,
        ),
    )
    caller = Reply(
        status=Reply.STATUS_FOUND,
        tenant_id="acme",
        user_id="bob",
        user_name="Bob Baker",
        extension="202",
        smartnumber="+15550101",
    )
    callee = Reply(status=Reply.STATUS_FOUND, tenant_id="acme", user_id="alice", extension="201")
    services = CallServices(
        ari=cast(Any, None),
        directory=cast(Any, None),
        publisher=cast(Any, None),
        profiles=cast(Any, None),
        trunk_dial=lambda _number: "",
    )
    session = CallSession(start, services, lambda _c, _s: None, InternalCall(caller, callee))
    assert session.record.direction == call_pb2.DIRECTION_INTERNAL
    assert (session.record.from_number, session.record.to_number) == ("202", "201")
    assert session.record.started_at == NOON
