"""Pure rules of the number lifecycle (seed 002: Reserved 20 days / Active / Awaiting deletion).

    reserved ──activate──▶ active ──request deletion──▶ awaiting_deletion ──(period end)──▶ released
       │                                 ▲                      │
       └──(20 days, not activated)──▶ released      cancel ◀────┘

Released numbers leave the tenant (the document is removed; history keeps the record), so
they are free to be reserved again, by anyone.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Any

from ringwise_directory.common.validation import SLUG, Fields

RESERVATION_DAYS = 20
STATUSES = ("reserved", "active", "awaiting_deletion")
# Statuses in which calls to the number are routed.
ROUTABLE = ("active", "awaiting_deletion")
ASSIGNMENT_TYPES = ("user", "team", "ivr", "pool")
TRANSITIONS = {
    "activate": ("reserved", "active"),
    "request_deletion": ("active", "awaiting_deletion"),
    "cancel_deletion": ("awaiting_deletion", "active"),
}


def reservation_expiry(reserved_at: datetime) -> datetime:
    return reserved_at + timedelta(days=RESERVATION_DAYS)


def end_of_month(moment: datetime) -> datetime:
    """Deletion happens at the end of the current account period: the month's last instant."""
    moment = moment.astimezone(UTC)
    last_day = calendar.monthrange(moment.year, moment.month)[1]
    return datetime(moment.year, moment.month, last_day, 23, 59, 59, tzinfo=UTC)


def transition(current_status: str, action: str) -> str | None:
    """The new status, or None when the action does not apply to the current status."""
    source, target = TRANSITIONS[action]
    return target if current_status == source else None


def due_for_release(doc: dict[str, Any], now: datetime) -> bool:
    status = doc.get("status")
    if status == "reserved":
        return bool(doc.get("expires_at") and doc["expires_at"] <= now)
    if status == "awaiting_deletion":
        return bool(doc.get("deletion_due_at") and doc["deletion_due_at"] <= now)
    return False


def assignment_field(fields: Fields, name: str = "assignment") -> dict[str, str] | None:
    """{type, id} or None (explicit null clears the assignment)."""
    if not fields.has(name) or fields.body[name] is None:
        return None
    value = fields.body[name]
    if not isinstance(value, dict):
        fields.error(name, "must be an object {type, id} or null")
        return None
    inner = Fields(value)
    inner.reject_unknown(("type", "id"))
    kind = inner.choice("type", ASSIGNMENT_TYPES, required=True)
    target = inner.text("id", required=True, max_len=64)
    if target is not None and kind == "ivr" and not SLUG.match(target):
        inner.error("id", "an IVR id: 2-40 lower-case letters, digits, - or _")
    for error in inner.errors:
        fields.error(f"{name}/{error['field']}", error["message"])
    if inner.errors or kind is None or target is None:
        return None
    return {"type": kind, "id": target}
