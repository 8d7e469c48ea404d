"""Pure rules for teams."""

from __future__ import annotations

from typing import Any

from ringwise_directory.common.validation import Fields

KINDS = ("team", "pool")
RING_STRATEGIES = ("random", "simultaneous", "least_busy", "sequential")
FIELDS = (
    "name",
    "kind",
    "extension",
    "email",
    "ring_strategy",
    "max_queue_size",
    "average_call_duration_s",
    "hold_music",
    "members",
)


def team_fields(body: Any, *, partial: bool) -> dict[str, Any]:
    fields = Fields(body, partial=partial)
    fields.reject_unknown(FIELDS if not partial else tuple(f for f in FIELDS if f != "kind"))
    out: dict[str, Any] = {
        "name": fields.text("name", required=True, max_len=120),
        "kind": None if partial else fields.choice("kind", KINDS),
        "extension": fields.extension(required=True),
        "email": fields.email(),
        "ring_strategy": fields.choice("ring_strategy", RING_STRATEGIES, required=True),
        "max_queue_size": fields.integer("max_queue_size", 0, 1000),
        "average_call_duration_s": fields.integer("average_call_duration_s", 1, 86400),
        "hold_music": fields.text("hold_music", max_len=200),
        # Order matters: it is the ring order of the sequential strategy.
        "members": fields.strings("members", max_items=500, max_len=64),
    }
    fields.check()
    result = {k: v for k, v in out.items() if v is not None}
    if partial:
        for name in ("email", "hold_music"):
            if fields.has(name) and fields.body[name] is None:
                result[name] = None
    else:
        result.setdefault("kind", "team")
        result.setdefault("max_queue_size", 10)
        result.setdefault("members", [])
    return result
