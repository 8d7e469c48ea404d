"""The inbound routing policy, one row per behaviour."""

from __future__ import annotations

import pytest
from ringwise.directory.v1 import resolve_pb2
from ringwise.events.v1 import call_pb2
from ringwise_routing.calls import policy
from ringwise_routing.calls.policy import Action, LookupFailed

Reply = resolve_pb2.ResolveNumberReply


def found(*dial_strings: str, ring_timeout_s: int = 20) -> Reply:
    return Reply(
        status=Reply.STATUS_FOUND,
        tenant_id="acme",
        user_id="alice",
        devices=[
            resolve_pb2.Device(device_id=f"d{i}", dial_string=d) for i, d in enumerate(dial_strings)
        ],
        ring_timeout_s=ring_timeout_s,
    )


@pytest.mark.parametrize(
    ("dialled", "normalized"),
    [
        ("+15550100", "+15550100"),
        ("15550100", "+15550100"),
        ("0044 20 7946 0000", "+442079460000"),
        ("+1 (555) 010-0", "+15550100"),
        ("alice", "alice"),
        ("", ""),
    ],
)
def test_dialled_numbers_are_normalized(dialled: str, normalized: str) -> None:
    assert policy.normalize_number(dialled) == normalized


def test_a_number_assigned_to_a_user_rings_their_device() -> None:
    decision = policy.decide("+15550100", found("PJSIP/phones/sip:a@h:1"))
    assert decision.action is Action.RING
    assert decision.tenant_id == "acme"
    assert decision.user_id == "alice"
    assert decision.targets == (policy.Target("d0", "PJSIP/phones/sip:a@h:1", 20),)
    assert decision.reasons == (
        "number +15550100 belongs to user alice of tenant acme",
        "ring d0 for 20s",
    )


def test_an_unassigned_number_is_not_in_service_with_cause_unallocated() -> None:
    decision = policy.decide("+15559999", Reply(status=Reply.STATUS_NOT_FOUND))
    assert decision.action is Action.REJECT
    assert decision.prompt == ("sound:ss-noservice",)
    assert decision.hangup_cause == policy.CAUSE_UNALLOCATED
    assert decision.disposition == call_pb2.DISPOSITION_NOT_IN_SERVICE
    assert decision.reasons == ("number +15559999 is not assigned",)


def test_a_directory_outage_gives_a_retry_later_not_a_dead_call() -> None:
    decision = policy.decide("+15550100", LookupFailed("TimeoutError"))
    assert decision.action is Action.REJECT
    assert decision.hangup_cause == policy.CAUSE_CONGESTION  # 503: the caller may retry
    assert decision.prompt == policy.PROMPT_PLATFORM_FAILURE
    assert decision.disposition == call_pb2.DISPOSITION_FAILED
    assert "directory unavailable (TimeoutError)" in decision.reasons[0]


def test_a_user_without_devices_is_unreachable() -> None:
    decision = policy.decide("+15550100", found())
    assert decision.action is Action.REJECT
    assert decision.disposition == call_pb2.DISPOSITION_UNREACHABLE
    assert decision.prompt == policy.PROMPT_UNREACHABLE
    assert decision.reasons[-1] == "the user has no reachable device"


@pytest.mark.parametrize(("configured", "used"), [(0, 20), (2, 5), (30, 30), (600, 120)])
def test_ring_timeouts_are_kept_within_bounds(configured: int, used: int) -> None:
    decision = policy.decide("+15550100", found("PJSIP/x", ring_timeout_s=configured))
    assert decision.targets[0].ring_timeout_s == used


@pytest.mark.parametrize(
    ("dialstatus", "disposition", "cause", "prompted"),
    [
        ("BUSY", call_pb2.DISPOSITION_BUSY, policy.CAUSE_USER_BUSY, False),
        ("NOANSWER", call_pb2.DISPOSITION_NO_ANSWER, policy.CAUSE_NO_ANSWER, True),
        ("CHANUNAVAIL", call_pb2.DISPOSITION_UNREACHABLE, policy.CAUSE_SUBSCRIBER_ABSENT, True),
        ("CONGESTION", call_pb2.DISPOSITION_UNREACHABLE, policy.CAUSE_CONGESTION, True),
        ("something-new", call_pb2.DISPOSITION_UNREACHABLE, policy.CAUSE_SUBSCRIBER_ABSENT, True),
    ],
)
def test_unanswered_calls_get_a_clear_treatment(
    dialstatus: str, disposition: int, cause: int, prompted: bool
) -> None:
    treatment = policy.treatment_for(dialstatus)
    assert treatment.disposition == disposition
    assert treatment.hangup_cause == cause
    assert bool(treatment.prompt) is prompted


def test_decisions_convert_to_the_contract() -> None:
    proto = policy.to_proto(policy.decide("+15550100", found("PJSIP/x")))
    assert proto.action == call_pb2.RoutingDecision.ACTION_RING
    assert [t.dial_string for t in proto.targets] == ["PJSIP/x"]
    assert proto.reasons[0].startswith("number +15550100 belongs")


@pytest.mark.parametrize(
    ("cause", "rang", "status"),
    [
        (17, True, "BUSY"),
        (17, False, "BUSY"),
        (19, True, "NOANSWER"),
        (18, True, "NOANSWER"),
        (19, False, "CHANUNAVAIL"),
        (18, False, "CHANUNAVAIL"),
        (34, True, "CONGESTION"),
        (41, False, "CONGESTION"),
        (20, False, "CHANUNAVAIL"),
        (3, False, "CHANUNAVAIL"),
        (0, True, "CHANUNAVAIL"),
    ],
)
def test_a_called_legs_hangup_cause_maps_to_a_dial_status(
    cause: int, rang: bool, status: str
) -> None:
    assert policy.dialstatus_for(cause, rang) == status
