"""Whom the mailbox's forward (key 8) sends to, from the digits the owner keys (table-driven):
the user a number reaches, else a team of the owner's tenant by its extension or number;
another tenant's user, an unknown number or a silent directory: nobody (the "sorry" prompt)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from ringwise_routing.calls.voicemail_step import ForwardTarget, VoicemailStep
from ringwise_routing.calls.waiting import CallerHungUp

# What the stand-in directory knows: numbers reach users; teams by (tenant, extension or number).
USERS = {"15550100": ("acme", "alice"), "15550999": ("globex", "gail")}
TEAMS = {("acme", "700"): "tm_support", ("acme", "15550700"): "tm_sales"}


async def find_user(keyed: str) -> tuple[str, str] | None:
    return USERS.get(keyed)


async def find_team(tenant_id: str, keyed: str) -> str | None:
    return TEAMS.get((tenant_id, keyed))


def step(*, teams: bool = True) -> VoicemailStep:
    # forward_target uses neither NATS nor ARI.
    return VoicemailStep(
        cast(Any, None),
        cast(Any, None),
        CallerHungUp,
        find_user=find_user,
        find_team=find_team if teams else None,
    )


@pytest.mark.parametrize(
    ("keyed", "expected"),
    [
        ("15550100", ForwardTarget(user_id="alice")),  # a colleague's number (as before)
        ("700", ForwardTarget(team_id="tm_support")),  # a team's extension
        ("15550700", ForwardTarget(team_id="tm_sales")),  # a team's number
        ("15550999", None),  # another tenant's user
        ("701", None),  # nobody
        ("", None),  # nothing keyed
    ],
)
async def test_the_keyed_digits_name_a_user_or_a_team_of_the_owners_tenant(
    keyed: str, expected: ForwardTarget | None
) -> None:
    assert await step().forward_target("acme", keyed) == expected


async def test_another_tenants_team_is_nobody() -> None:
    assert await step().forward_target("globex", "700") is None


async def test_without_team_lookups_only_users_are_found() -> None:
    assert await step(teams=False).forward_target("acme", "700") is None
    assert await step(teams=False).forward_target("acme", "15550100") == ForwardTarget(
        user_id="alice"
    )
