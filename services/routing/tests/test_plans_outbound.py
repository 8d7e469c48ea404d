"""Outbound policy: caller ID presentation and dialling controls, one row per behaviour."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ringwise_routing.plans.engine import Reject
from ringwise_routing.plans.outbound import (
    AuthoriseCredit,
    CliChoice,
    CollectPin,
    Connect,
    DialPermission,
    NumberClass,
    OutboundPlan,
    OutboundProfile,
    OutboundStep,
    TenantDialling,
    plan_outbound,
)

SMART = "+447700900123"
DESIGNATED = "+442079460000"
SHARED = "+442079460099"
ALICE = OutboundProfile("alice", SMART, designated_number=DESIGNATED, dialling_pin="4321")
TENANT = TenantDialling(allowed_clis=frozenset({SHARED}))


def render(step: OutboundStep) -> str:
    if isinstance(step, CollectPin):
        return "pin"
    if isinstance(step, AuthoriseCredit):
        return "credit " + ("fail-open" if step.fail_open else "fail-closed")
    if isinstance(step, Connect):
        shown = "withheld " + step.presented_cli if step.withheld else step.presented_cli
        return f"connect {step.number_class.value} {step.destination} as {shown}"
    return f"reject {step.cause}"


def rendered(plan: OutboundPlan) -> list[str]:
    return [render(s) for s in plan.steps]


ROWS = [
    (
        "user calls a national number presenting her smartnumber",
        ALICE,
        TENANT,
        "020 7946 0111",
        ["credit fail-closed", f"connect national +442079460111 as {SMART}"],
    ),
    (
        "user who chose her designated number presents it",
        replace(ALICE, cli_choice=CliChoice.DESIGNATED),
        TENANT,
        "+442079460111",
        ["credit fail-closed", f"connect national +442079460111 as {DESIGNATED}"],
    ),
    (
        "user presents a number she chose from the admin-allowed set",
        replace(ALICE, cli_choice=CliChoice.CHOSEN, chosen_number=SHARED),
        TENANT,
        "+442079460111",
        ["credit fail-closed", f"connect national +442079460111 as {SHARED}"],
    ),
    (
        "user who chose a number the admin does not allow presents her smartnumber",
        replace(ALICE, cli_choice=CliChoice.CHOSEN, chosen_number="+15550100"),
        TENANT,
        "+442079460111",
        ["credit fail-closed", f"connect national +442079460111 as {SMART}"],
    ),
    (
        "user who withholds her number",
        replace(ALICE, cli_choice=CliChoice.WITHHELD),
        TENANT,
        "+442079460111",
        ["credit fail-closed", f"connect national +442079460111 as withheld {SMART}"],
    ),
    (
        "user dials an international number she is allowed to",
        ALICE,
        TENANT,
        "0033 1 40 00 00 00",
        ["credit fail-closed", f"connect international +33140000000 as {SMART}"],
    ),
    (
        "user barred from international calls is refused",
        replace(ALICE, international=DialPermission.BLOCKED),
        TENANT,
        "+33140000000",
        ["reject 21"],
    ),
    (
        "user with PIN-protected international dialling is asked for the PIN",
        replace(ALICE, international=DialPermission.PIN),
        TENANT,
        "+33140000000",
        ["pin", "credit fail-closed", f"connect international +33140000000 as {SMART}"],
    ),
    (
        "PIN-protected dialling without a PIN set is refused",
        replace(ALICE, international=DialPermission.PIN, dialling_pin=None),
        TENANT,
        "+33140000000",
        ["reject 21"],
    ),
    (
        "premium-rate numbers are barred by default",
        ALICE,
        TENANT,
        "09011234567",
        ["reject 21"],
    ),
    (
        "user allowed premium calls reaches one",
        replace(ALICE, premium=DialPermission.ALLOWED),
        TENANT,
        "09011234567",
        ["credit fail-closed", f"connect premium +449011234567 as {SMART}"],
    ),
    (
        "user barred from everything still reaches the emergency services, number shown",
        replace(
            ALICE,
            international=DialPermission.BLOCKED,
            premium=DialPermission.BLOCKED,
            cli_choice=CliChoice.WITHHELD,
        ),
        TENANT,
        "999",
        [f"connect emergency 999 as {SMART}"],
    ),
    (
        "user dials a colleague's extension: no billing",
        ALICE,
        TENANT,
        "2001",
        [f"connect extension 2001 as {SMART}"],
    ),
    (
        "tenant that fails open asks billing but connects when it is unreachable",
        ALICE,
        replace(TENANT, credit_fail_open=True),
        "+442079460111",
        ["credit fail-open", f"connect national +442079460111 as {SMART}"],
    ),
    ("user dials letters", ALICE, TENANT, "call-mum", ["reject 28"]),
    ("user dials a stray plus in the middle", ALICE, TENANT, "44+2079460111", ["reject 28"]),
]


@pytest.mark.parametrize(
    ("behaviour", "profile", "tenant", "dialled", "steps"), ROWS, ids=[r[0] for r in ROWS]
)
def test_outbound(
    behaviour: str,
    profile: OutboundProfile,
    tenant: TenantDialling,
    dialled: str,
    steps: list[str],
) -> None:
    plan = plan_outbound(profile, tenant, dialled)
    assert rendered(plan) == steps
    assert plan.reasons


def test_the_pin_is_not_in_the_plan_repr() -> None:
    plan = plan_outbound(replace(ALICE, international=DialPermission.PIN), TENANT, "+33140000000")
    assert "4321" not in repr(plan)
    assert plan.steps[0] == CollectPin("4321")


@given(
    st.text(alphabet="+0123456789 -", max_size=16),
    st.sampled_from(list(DialPermission)),
    st.sampled_from(list(DialPermission)),
    st.sampled_from(list(CliChoice)),
)
def test_every_outbound_plan_ends_in_connect_or_reject_and_emergency_always_connects(
    dialled: str, international: DialPermission, premium: DialPermission, cli: CliChoice
) -> None:
    profile = replace(ALICE, international=international, premium=premium, cli_choice=cli)
    plan = plan_outbound(profile, TENANT, dialled)
    assert isinstance(plan.steps[-1], Connect | Reject)
    assert not any(isinstance(s, Connect | Reject) for s in plan.steps[:-1])
    last = plan.steps[-1]
    if isinstance(last, Connect):
        if last.number_class in (NumberClass.INTERNATIONAL, NumberClass.PREMIUM):
            permission = (
                international if last.number_class is NumberClass.INTERNATIONAL else premium
            )
            assert permission is not DialPermission.BLOCKED
            assert (CollectPin("4321") in plan.steps) == (permission is DialPermission.PIN)
        chargeable = last.number_class not in (NumberClass.EMERGENCY, NumberClass.EXTENSION)
        assert any(isinstance(s, AuthoriseCredit) for s in plan.steps) == chargeable
    for emergency in TENANT.emergency_numbers:
        (connect,) = plan_outbound(profile, TENANT, emergency).steps
        assert isinstance(connect, Connect)
        assert connect.number_class is NumberClass.EMERGENCY
        assert not connect.withheld
        assert connect.presented_cli in {SMART, DESIGNATED}
