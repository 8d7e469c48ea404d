"""Pure rules for schedules, and whether a moment falls inside one."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from ringwise_directory.common.validation import HHMM, Fields, minutes

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FIELDS = ("name", "time_zone", "user_id", "ranges")


def schedule_fields(body: Any, *, partial: bool) -> dict[str, Any]:
    fields = Fields(body, partial=partial)
    fields.reject_unknown(FIELDS)
    out: dict[str, Any] = {
        "name": fields.text("name", required=True, max_len=120),
        "time_zone": fields.time_zone(required=True),
        "user_id": fields.text("user_id", max_len=64),
    }
    ranges = fields.objects("ranges", max_items=50, required=True)
    if ranges is not None:
        checked = []
        for index, item in enumerate(ranges):
            entry = Fields(item)
            entry.reject_unknown(("days", "start", "end"))
            days = entry.strings("days", max_items=7, max_len=3, required=True)
            if days is not None:
                for d_index, day in enumerate(days):
                    if day not in DAYS:
                        entry.error(f"days/{d_index}", f"one of {', '.join(DAYS)}")
                if not days:
                    entry.error("days", "at least one day")
            start = entry.pattern("start", HHMM, "HH:MM, 00:00 to 23:59", required=True)
            end = entry.pattern("end", HHMM, "HH:MM, 00:01 to 24:00", required=True)
            if start and end and minutes(start) >= minutes(end):
                entry.error("end", "must be after start (a range ends the same day)")
            for error in entry.errors:
                fields.error(f"ranges/{index}/{error['field']}", error["message"])
            if not entry.errors and days is not None and start and end:
                checked.append({"days": [d for d in DAYS if d in days], "start": start, "end": end})
        if not fields.errors:
            fields.errors += overlap_errors(checked)
        out["ranges"] = checked
    fields.check()
    result = {k: v for k, v in out.items() if v is not None}
    if partial and fields.has("user_id") and fields.body["user_id"] is None:
        result["user_id"] = None
    return result


def overlap_errors(ranges: list[dict[str, Any]]) -> list[dict[str, str]]:
    errors = []
    for day in DAYS:
        spans = sorted(
            (minutes(r["start"]), minutes(r["end"]), i)
            for i, r in enumerate(ranges)
            if day in r["days"]
        )
        for (_, end, _), (start, _, index) in pairwise(spans):
            if start < end:
                errors.append(
                    {"field": f"ranges/{index}", "message": f"overlaps another range on {day}"}
                )
    return errors


def is_within(schedule: dict[str, Any], moment: datetime) -> bool:
    """True when the moment (any time zone) falls in one of the schedule's ranges."""
    local = moment.astimezone(ZoneInfo(schedule["time_zone"]))
    day = DAYS[local.weekday()]
    now = local.hour * 60 + local.minute
    return any(
        day in r["days"] and minutes(r["start"]) <= now < minutes(r["end"])
        for r in schedule.get("ranges", [])
    )
