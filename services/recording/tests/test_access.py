"""Who sees which recording, and which policy a call gets: the rules, one row per behaviour."""

from __future__ import annotations

from typing import Any

import pytest
from ringwise.api.v1 import api_pb2
from ringwise.events.v1 import recording_pb2
from ringwise_recording.recordings import access

SETTINGS: dict[str, Any] = {
    "policy": {"mode": "on_demand", "retention_days": 365},
    "teams": {
        "legal": {"policy": {"mode": "compliant", "retention_days": 2555}, "supervisors": ["sue"]},
        "sales": {"supervisors": ["sam"], "members": ["amy"]},
    },
    "users": {"ceo": {"policy": {"mode": "none"}}},
}
SETTINGS["teams"]["legal"]["members"] = ["lee"]
RECORDING = {"user_id": "lee", "team_id": "legal"}


def who(role: int, subject: str = "x") -> api_pb2.Principal:
    return api_pb2.Principal(subject_id=subject, tenant_id="t", role=role)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("principal", "sees"),
    [
        (who(api_pb2.ROLE_COMPLIANCE_OFFICER), True),
        (who(api_pb2.ROLE_OPERATOR_ADMIN), True),
        (who(api_pb2.ROLE_USER, "lee"), True),  # their own call
        (who(api_pb2.ROLE_USER, "max"), False),  # someone else's
        (who(api_pb2.ROLE_SUPERVISOR, "sue"), True),  # supervises legal
        (who(api_pb2.ROLE_SUPERVISOR, "sam"), False),  # supervises sales only
        (who(api_pb2.ROLE_TENANT_ADMIN), False),  # admins are not entitled to recordings
    ],
)
def test_who_sees_a_legal_team_recording(principal: api_pb2.Principal, sees: bool) -> None:
    assert access.may_see(principal, SETTINGS, RECORDING) is sees


@pytest.mark.parametrize(
    ("user", "team", "mode", "days"),
    [
        ("lee", "legal", recording_pb2.RECORDING_MODE_COMPLIANT, 2555),  # team policy
        ("ceo", "legal", recording_pb2.RECORDING_MODE_NONE, 365),  # the user's own wins
        ("amy", "sales", recording_pb2.RECORDING_MODE_ON_DEMAND, 365),  # team has none: tenant
        ("amy", "", recording_pb2.RECORDING_MODE_ON_DEMAND, 365),
    ],
)
def test_the_most_specific_policy_wins(user: str, team: str, mode: int, days: int) -> None:
    policy = access.resolve_policy(SETTINGS, user, team)
    assert policy.mode == mode
    if mode != recording_pb2.RECORDING_MODE_NONE:
        assert policy.retention_days == days


def test_no_settings_means_no_recording() -> None:
    assert access.resolve_policy({}, "a", "b").mode == recording_pb2.RECORDING_MODE_NONE


def test_without_a_team_from_the_call_the_members_list_decides() -> None:
    assert access.team_of(SETTINGS, "lee") == "legal"
    assert access.team_of(SETTINGS, "nobody") == ""
    lee = access.resolve_policy(SETTINGS, "lee", "")
    assert (lee.mode, lee.retention_days) == (recording_pb2.RECORDING_MODE_COMPLIANT, 2555)
