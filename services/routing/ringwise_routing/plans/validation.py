"""Configuration checks for routing profiles: field errors the API returns as a 4xx
(problem+json `errors`), so bad configuration never becomes a dead call at run time.

validate_profile() checks one profile on its own; find_divert_loops() checks the diverts
between profiles (delegates, delegate fallbacks, call-flow redirects to users) for cycles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .engine import normalize_number
from .model import (
    BUILTIN_STATE_NAMES,
    MAX_LEG_TIMEOUT_S,
    MAX_REDIRECTS,
    MAX_TERMINALS,
    MIN_LEG_TIMEOUT_S,
    FallbackKind,
    InboundFilter,
    RedirectKind,
    RoutingProfile,
    TenantPolicy,
    TimeRange,
)


@dataclass(frozen=True)
class FieldError:
    field: str  # JSON-pointer-like path: "states.Busy.fallback.target"
    message: str


def _timezone_errors(name: str, path: str) -> list[FieldError]:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return [FieldError(path, f"unknown time zone {name!r} (use an IANA name)")]
    return []


def _range_errors(rng: TimeRange, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not rng.days:
        errors.append(FieldError(f"{path}.days", "choose at least one day"))
    for name, value in (("start", rng.start), ("end", rng.end)):
        if value.tzinfo is not None or value.second or value.microsecond:
            errors.append(FieldError(f"{path}.{name}", "use a plain HH:MM time"))
    return errors


def _timeout_errors(seconds: int, path: str) -> list[FieldError]:
    if MIN_LEG_TIMEOUT_S <= seconds <= MAX_LEG_TIMEOUT_S:
        return []
    return [
        FieldError(
            path, f"timeout must be {MIN_LEG_TIMEOUT_S}..{MAX_LEG_TIMEOUT_S} s, not {seconds}"
        )
    ]


def _filter_errors(flt: InboundFilter, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    lists = [("blocked", flt.blocked)]
    if flt.allowed_only is not None:
        lists.append(("allowed_only", flt.allowed_only))
    for name, entries in lists:
        for entry in sorted(entries):
            digits = entry[:-1] if entry.endswith("*") else entry
            if not digits or normalize_number(digits) != digits:
                errors.append(FieldError(f"{path}.{name}", f"{entry!r} is not a number or prefix*"))
    return errors


def validate_profile(profile: RoutingProfile, tenant: TenantPolicy) -> list[FieldError]:
    """Every problem with `profile` on its own (empty list = valid)."""
    errors: list[FieldError] = []
    known_states = BUILTIN_STATE_NAMES | tenant.custom_states

    if profile.tenant_id != tenant.tenant_id:
        errors.append(FieldError("tenant_id", "profile belongs to another tenant"))

    if len(profile.terminals) > MAX_TERMINALS:
        errors.append(
            FieldError(
                "terminals", f"at most {MAX_TERMINALS} terminals, not {len(profile.terminals)}"
            )
        )
    seen: set[str] = set()
    for i, terminal in enumerate(profile.terminals):
        path = f"terminals[{i}]"
        if terminal.terminal_id in seen:
            errors.append(FieldError(f"{path}.terminal_id", f"duplicate {terminal.terminal_id}"))
        seen.add(terminal.terminal_id)
        if not terminal.dial_string:
            errors.append(FieldError(f"{path}.dial_string", "a terminal needs a dial string"))
        errors += _timeout_errors(terminal.ring_timeout_s, f"{path}.ring_timeout_s")

    for key, state in profile.states.items():
        path = f"states.{key}"
        if key != state.name:
            errors.append(FieldError(f"{path}.name", f"stored as {key} but named {state.name}"))
        if state.name not in known_states:
            errors.append(FieldError(f"{path}.name", f"unknown availability state {state.name}"))
        if len(state.terminal_ids) > MAX_TERMINALS:
            errors.append(FieldError(f"{path}.terminal_ids", f"at most {MAX_TERMINALS} terminals"))
        if len(set(state.terminal_ids)) != len(state.terminal_ids):
            errors.append(FieldError(f"{path}.terminal_ids", "a terminal is listed twice"))
        for terminal_id in state.terminal_ids:
            if terminal_id not in seen:
                errors.append(FieldError(f"{path}.terminal_ids", f"no terminal {terminal_id}"))
        fallback = state.fallback
        needs_target = fallback.kind in (FallbackKind.TEAM, FallbackKind.EXTERNAL)
        if needs_target and not fallback.target:
            errors.append(FieldError(f"{path}.fallback.target", "this fallback needs a target"))
        external = fallback.kind is FallbackKind.EXTERNAL and bool(fallback.target)
        if external and normalize_number(fallback.target) != fallback.target:
            errors.append(FieldError(f"{path}.fallback.target", "not a dialable number"))
        if fallback.kind is FallbackKind.DELEGATE:
            if not fallback.target and not profile.delegates:
                errors.append(FieldError(f"{path}.fallback", "divert to delegate but none is set"))
            if fallback.target == profile.user_id:
                errors.append(FieldError(f"{path}.fallback.target", "cannot delegate to self"))

    def need_state(name: str, path: str) -> None:
        if name not in profile.states:
            errors.append(FieldError(path, f"unknown availability state {name}"))

    need_state(profile.default_state, "default_state")
    need_state(profile.vip_state, "vip_state")
    if profile.manual is not None:
        need_state(profile.manual.state, "manual.state")
        if profile.manual.until is not None and profile.manual.until.tzinfo is None:
            errors.append(FieldError("manual.until", "give a time zone (or UTC)"))
    if profile.schedule is not None:
        schedule = profile.schedule
        errors += _timezone_errors(schedule.timezone, "schedule.timezone")
        need_state(schedule.otherwise, "schedule.otherwise")
        for i, entry in enumerate(schedule.entries):
            errors += _range_errors(entry.when, f"schedule.entries[{i}]")
            need_state(entry.state, f"schedule.entries[{i}].state")

    if profile.call_flow is not None:
        rule = profile.call_flow
        errors += _timezone_errors(rule.timezone, "call_flow.timezone")
        if rule.period is not None:
            errors += _range_errors(rule.period, "call_flow.period")
        errors += _timeout_errors(rule.call_timeout_s, "call_flow.call_timeout_s")
        if len(rule.redirects) > MAX_REDIRECTS:
            errors.append(FieldError("call_flow.redirects", f"at most {MAX_REDIRECTS} redirects"))
        for i, redirect in enumerate(rule.redirects):
            path = f"call_flow.redirects[{i}]"
            if redirect.kind is not RedirectKind.VOICEMAIL and not redirect.target:
                errors.append(FieldError(f"{path}.target", "a redirect needs a target"))
            if redirect.kind is RedirectKind.USER and redirect.target == profile.user_id:
                errors.append(FieldError(f"{path}.target", "a redirect to oneself loops"))
            if redirect.kind is RedirectKind.EXTERNAL:
                errors += _timeout_errors(redirect.ring_timeout_s, f"{path}.ring_timeout_s")
                if normalize_number(redirect.target) != redirect.target:
                    errors.append(FieldError(f"{path}.target", "not a dialable number"))

    if profile.user_id in profile.delegates:
        errors.append(FieldError("delegates", "a user cannot be their own delegate"))
    if len(set(profile.delegates)) != len(profile.delegates):
        errors.append(FieldError("delegates", "a delegate is listed twice"))
    errors += _filter_errors(profile.inbound_filter, "inbound_filter")
    for vip in sorted(profile.vip_numbers):
        if normalize_number(vip) != vip or not vip:
            errors.append(FieldError("vip_numbers", f"{vip!r} is not a number"))
    blocked_vips = sorted(v for v in profile.vip_numbers if v in profile.inbound_filter.blocked)
    if blocked_vips:
        errors.append(FieldError("vip_numbers", f"also blocked: {', '.join(blocked_vips)}"))
    if profile.screening.password is not None and not (
        profile.screening.password.isdigit() and 4 <= len(profile.screening.password) <= 12
    ):
        errors.append(FieldError("screening.password", "a call password is 4 to 12 digits"))
    return errors


def divert_targets(profile: RoutingProfile) -> set[str]:
    """The users a call to `profile` can be diverted to without the caller choosing."""
    targets: set[str] = set()
    for state in profile.states.values():
        if state.fallback.kind is FallbackKind.DELEGATE:
            targets.update((state.fallback.target,) if state.fallback.target else profile.delegates)
    if profile.call_flow is not None:
        targets.update(r.target for r in profile.call_flow.redirects if r.kind is RedirectKind.USER)
    return targets


def find_divert_loops(
    profiles: Mapping[str, RoutingProfile], changed: Iterable[str]
) -> list[FieldError]:
    """Cycles in the divert graph reachable from the `changed` users (a depth-first walk).

    The engine refuses a looping divert at run time too, but a cycle means some calls land
    somewhere nobody meant; the API refuses the change instead.
    """
    errors: list[FieldError] = []
    reported: set[tuple[str, ...]] = set()
    finished: set[str] = set()  # fully walked: each user is expanded once (linear time)

    def walk(user: str, path: tuple[str, ...]) -> None:
        profile = profiles.get(user)
        if profile is None or user in finished:
            return
        for target in sorted(divert_targets(profile)):
            if target in path:
                cycle = (*path[path.index(target) :], target)
                key = tuple(sorted(set(cycle)))
                if key not in reported:
                    reported.add(key)
                    errors.append(FieldError("delegates", "divert loop: " + " -> ".join(cycle)))
                continue
            walk(target, (*path, target))
        finished.add(user)

    for user in changed:
        walk(user, (user,))
    return errors
