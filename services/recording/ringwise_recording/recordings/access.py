"""Who may see which recording, and which recording policy applies to a call (pure rules).

- compliance officers (and operator admins, and internal services) see every recording of
  their tenant;
- a supervisor sees the recordings of the teams the tenant's settings list them for;
- a user sees their own recordings;
- nobody else (tenant admins included) sees any: for one recording the answer is 404, as if
  it did not exist.

Policies are set per tenant, team and user in the tenant's recording settings; the most
specific one wins (user, then team, then tenant; none if nothing is set).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from ringwise.api.v1 import api_pb2
from ringwise.events.v1 import recording_pb2

Doc = dict[str, Any]

SEE_ALL = frozenset(
    {api_pb2.ROLE_OPERATOR_ADMIN, api_pb2.ROLE_COMPLIANCE_OFFICER, api_pb2.ROLE_SERVICE}
)
MAX_RETENTION_DAYS = 36500


class Policy(BaseModel):
    mode: Literal["none", "on_demand", "compliant"] = "none"
    retention_days: int = Field(365, ge=1, le=MAX_RETENTION_DAYS)
    # An Asterisk sound name; routing falls back to conf-now-recording if it cannot play it.
    announcement: str = Field("conf-now-recording", max_length=200, pattern=r"^[A-Za-z0-9_/-]+$")
    layout: Literal["mixed", "dual"] = "mixed"


class Team(BaseModel):
    policy: Policy | None = None
    supervisors: list[str] = Field(default_factory=list, max_length=1000)
    # Until the directory carries teams, membership lives here (a user in one team).
    members: list[str] = Field(default_factory=list, max_length=10000)


class User(BaseModel):
    policy: Policy | None = None


class Encryption(BaseModel):
    mode: Literal["platform", "customer"] = "platform"
    public_key_pem: str | None = Field(None, max_length=20000)


class TenantRecordingSettings(BaseModel):
    encryption: Encryption = Field(default_factory=Encryption)
    policy: Policy | None = None
    teams: dict[str, Team] = Field(default_factory=dict)
    users: dict[str, User] = Field(default_factory=dict)


MODES = {
    "none": recording_pb2.RECORDING_MODE_NONE,
    "on_demand": recording_pb2.RECORDING_MODE_ON_DEMAND,
    "compliant": recording_pb2.RECORDING_MODE_COMPLIANT,
}
LAYOUTS = {"mixed": recording_pb2.CHANNEL_LAYOUT_MIXED, "dual": recording_pb2.CHANNEL_LAYOUT_DUAL}


def team_of(settings: Doc, user_id: str) -> str:
    """The team whose members list the user ("" if none)."""
    teams: dict[str, Doc] = settings.get("teams") or {}
    for team_id in sorted(teams):
        if user_id and user_id in (teams[team_id].get("members") or []):
            return str(team_id)
    return ""


def resolve_policy(settings: Doc, user_id: str, team_id: str) -> recording_pb2.RecordingPolicy:
    """The policy of a call: the user's, else their team's, else the tenant's, else none."""
    team_id = team_id or team_of(settings, user_id)
    chosen: Doc | None = None
    user = (settings.get("users") or {}).get(user_id) or {}
    team = (settings.get("teams") or {}).get(team_id) or {}
    for candidate in (user.get("policy"), team.get("policy"), settings.get("policy")):
        if candidate:
            chosen = candidate
            break
    if chosen is None:
        return recording_pb2.RecordingPolicy(mode=recording_pb2.RECORDING_MODE_NONE)
    policy = Policy.model_validate(chosen)
    return recording_pb2.RecordingPolicy(
        mode=MODES[policy.mode],
        retention_days=policy.retention_days,
        announcement=policy.announcement,
        layout=LAYOUTS[policy.layout],
    )


def supervised_teams(settings: Doc, user_id: str) -> list[str]:
    teams = settings.get("teams") or {}
    return sorted(t for t, team in teams.items() if user_id in (team.get("supervisors") or []))


def may_list(principal: api_pb2.Principal) -> bool:
    return principal.role in SEE_ALL or principal.role in (
        api_pb2.ROLE_SUPERVISOR,
        api_pb2.ROLE_USER,
    )


def may_see(principal: api_pb2.Principal, settings: Doc, recording: Doc) -> bool:
    if principal.role in SEE_ALL:
        return True
    if principal.role == api_pb2.ROLE_USER:
        return bool(recording.get("user_id")) and recording["user_id"] == principal.subject_id
    if principal.role == api_pb2.ROLE_SUPERVISOR:
        if recording.get("user_id") and recording["user_id"] == principal.subject_id:
            return True
        return recording.get("team_id", "") in supervised_teams(settings, principal.subject_id)
    return False


def may_manage(principal: api_pb2.Principal) -> bool:
    """Legal hold and deletion: compliance officers (and operator admins) only."""
    return principal.role in (api_pb2.ROLE_COMPLIANCE_OFFICER, api_pb2.ROLE_OPERATOR_ADMIN)
