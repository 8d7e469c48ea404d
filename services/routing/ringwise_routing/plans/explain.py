"""explain(): "where would this call go, and why" as a JSON-able dict, without placing a call
(for GET /v1/users/{id}/routing/explain?caller=...&at=...). Call passwords are never shown.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .engine import CallPlan, Divert, Play, Reject, Ring, Screen, Step, Voicemail, plan_call
from .model import Caller, PlanContext, RoutingProfile, TenantPolicy


def step_to_dict(step: Step) -> dict[str, Any]:
    if isinstance(step, Screen):
        return {
            "type": "screen",
            "ask_name": step.ask_name,
            "password_required": step.password is not None,
            "delegate": step.delegate,
        }
    if isinstance(step, Ring):
        return {
            "type": "ring",
            "mode": step.mode.value,
            "whisper": step.whisper,
            "legs": [
                {
                    "terminal_id": leg.terminal_id,
                    "location": leg.location,
                    "dial_string": leg.dial_string,
                    "timeout_s": leg.timeout_s,
                }
                for leg in step.legs
            ],
        }
    if isinstance(step, Play):
        return {"type": "play", "media": list(step.media)}
    if isinstance(step, Voicemail):
        return {
            "type": "voicemail",
            "mailbox": step.mailbox,
            "greeting": step.greeting,
            "delegate_breakout": step.delegate_breakout,
        }
    if isinstance(step, Divert):
        kind, target = step.kind.value, step.target
        return {"type": "divert", "kind": kind, "target": target, "alert": step.alert}
    if isinstance(step, Reject):
        return {"type": "reject", "cause": step.cause}
    raise TypeError(f"not a plan step: {step!r}")


def plan_to_dict(plan: CallPlan, caller: Caller, at: datetime) -> dict[str, Any]:
    final = step_to_dict(plan.final)
    return {
        "user_id": plan.user_id,
        "caller": {"number": caller.number, "anonymous": caller.anonymous},
        "at": at.astimezone(UTC).isoformat(),
        "state": plan.state or None,
        "steps": [step_to_dict(s) for s in plan.steps],
        "ends_in": final["type"],
        "reasons": [{"code": r.code, "detail": r.detail} for r in plan.reasons],
    }


def explain(
    profile: RoutingProfile,
    caller: Caller,
    at: datetime,
    context: PlanContext | None = None,
) -> dict[str, Any]:
    """The plan a call from `caller` at `at` would get, with every reason, as plain JSON."""
    context = context or PlanContext(tenant=TenantPolicy(profile.tenant_id))
    return plan_to_dict(plan_call(profile, caller, at, context), caller, at)


def step_summary(step: Step) -> str:
    """One short line per step, for logs and table-driven tests."""
    if isinstance(step, Screen):
        password = " password" if step.password else ""
        return "screen" + (" name" if step.ask_name else "") + password
    if isinstance(step, Ring):
        legs = ",".join(f"{leg.terminal_id}/{leg.timeout_s}" for leg in step.legs)
        return f"ring {step.mode.value} {legs}" + (" whisper" if step.whisper else "")
    if isinstance(step, Play):
        return "play " + " ".join(step.media)
    if isinstance(step, Voicemail):
        return f"voicemail {step.greeting}"
    if isinstance(step, Divert):
        return f"divert {step.kind.value} {step.target}"
    if isinstance(step, Reject):
        return f"reject {step.cause}"
    raise TypeError(f"not a plan step: {step!r}")


def plan_summary(plan: CallPlan) -> list[str]:
    return [step_summary(s) for s in plan.steps]


def reason_codes(plan: CallPlan) -> list[str]:
    return [r.code for r in plan.reasons]
