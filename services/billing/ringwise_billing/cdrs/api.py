"""Call history for tenants (OpenAPI: cdrs/api.yaml): list with filters, CSV export, each
call with what it cost (its charge plus any re-rating adjustments)."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ringwise_kit.api import ApiCall, ApiResult, ApiRouter, field_error

from ringwise_billing.apiutil import (
    READERS,
    decode_cursor,
    encode_cursor,
    limit_of,
    moment,
    require,
)
from ringwise_billing.rating.money import from_micros

DIRECTIONS = {"inbound", "outbound", "internal"}
DISPOSITIONS = {
    "answered",
    "no_answer",
    "busy",
    "unreachable",
    "cancelled",
    "not_in_service",
    "failed",
}
EXPORT_MAX_ROWS = 100_000
EXPORT_PAGE = 1000
CSV_COLUMNS = [
    "call_id",
    "started_at",
    "answered_at",
    "ended_at",
    "direction",
    "from_number",
    "to_number",
    "user_id",
    "disposition",
    "duration_s",
    "billable_s",
    "charge",
    "currency",
]


def filters_of(call: ApiCall) -> dict[str, Any]:
    """?from= &to= (call start), ?user_id=, ?number= (either party), ?direction=,
    ?disposition=."""
    query: dict[str, Any] = {}
    since, until = moment(call, "from"), moment(call, "to")
    window = {}
    if since is not None:
        window["$gte"] = since
    if until is not None:
        window["$lt"] = until
    if window:
        query["started_at"] = window
    user_id = call.query_one("user_id")
    if user_id:
        query["user_id"] = user_id
    number = call.query_one("number")
    if number:
        query["$or"] = [{"from_number": number}, {"to_number": number}]
    direction = call.query_one("direction")
    if direction:
        if direction not in DIRECTIONS:
            raise field_error("direction", "inbound, outbound or internal", 400)
        query["direction"] = f"DIRECTION_{direction.upper()}"
    disposition = call.query_one("disposition")
    if disposition:
        if disposition not in DISPOSITIONS:
            raise field_error("disposition", ", ".join(sorted(DISPOSITIONS)), 400)
        query["disposition"] = f"DISPOSITION_{disposition.upper()}"
    return query


_PHONE = re.compile(r"^[+-]?[0-9.]*$")


def csv_safe(value: object) -> object:
    """Spreadsheets run cells starting with = + - @ as formulas: quote any such text that is
    not a plain number (a caller id is whatever the far end sent)."""
    risky = isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r")
    if risky and isinstance(value, str) and not _PHONE.match(value):
        return "'" + value
    return value


def _name(value: str, prefix: str) -> str:
    return value.removeprefix(prefix).lower() if value else ""


def call_json(doc: dict[str, Any], charge: tuple[int, str] | None) -> dict[str, Any]:
    return {
        "call_id": doc["_id"],
        "started_at": doc.get("started_at"),
        "answered_at": doc.get("answered_at"),
        "ended_at": doc.get("ended_at"),
        "direction": _name(doc.get("direction", ""), "DIRECTION_"),
        "from_number": doc.get("from_number", ""),
        "to_number": doc.get("to_number", ""),
        "user_id": doc.get("user_id", ""),
        "disposition": _name(doc.get("disposition", ""), "DISPOSITION_"),
        "duration_s": round(int(doc.get("duration_ms", 0)) / 1000, 3),
        "billable_s": int(doc.get("billable_seconds", 0)),
        "charge": str(from_micros(charge[0])) if charge else None,
        "currency": charge[1] if charge else None,
    }


def router(billing: Callable[[], Any]) -> ApiRouter:
    api = ApiRouter()

    async def with_charges(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        charges: dict[str, int] = defaultdict(int)
        currency: dict[str, str] = {}
        for entry in await billing().ledger.of_calls([d["_id"] for d in docs]):
            charges[entry["call_id"]] -= int(entry["amount_micros"])
            currency[entry["call_id"]] = entry.get("currency", "")
        return [
            call_json(d, (charges[d["_id"]], currency[d["_id"]]) if d["_id"] in currency else None)
            for d in docs
        ]

    async def page(
        call: ApiCall, filters: dict[str, Any], before: tuple[datetime, str] | None, limit: int
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await billing().cdrs.search(
            call.tenant_id, filters, before=before, limit=limit
        )
        return result

    @api.operation("listCalls")
    async def list_calls(call: ApiCall) -> ApiResult:
        require(call, READERS)
        limit = limit_of(call)
        cursor = decode_cursor(call, datetime, str)
        docs = await page(call, filters_of(call), (cursor[0], cursor[1]) if cursor else None, limit)
        next_cursor = (
            encode_cursor(docs[-1]["started_at"], docs[-1]["_id"]) if len(docs) == limit else None
        )
        return ApiResult(body={"items": await with_charges(docs), "next_cursor": next_cursor})

    @api.operation("exportCalls")
    async def export_calls(call: ApiCall) -> ApiResult:
        """The same filters as listCalls, every matching call (up to 100k) as CSV."""
        require(call, READERS)
        filters = filters_of(call)
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        before: tuple[datetime, str] | None = None
        rows = 0
        while rows < EXPORT_MAX_ROWS:
            docs = await page(call, filters, before, EXPORT_PAGE)
            for item in await with_charges(docs):
                for key in ("started_at", "answered_at", "ended_at"):
                    item[key] = item[key].isoformat() if item[key] else ""
                writer.writerow({k: "" if v is None else csv_safe(v) for k, v in item.items()})
            rows += len(docs)
            if len(docs) < EXPORT_PAGE:
                break
            before = (docs[-1]["started_at"], docs[-1]["_id"])
        return ApiResult(
            body=out.getvalue().encode(),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="calls-{call.tenant_id}.csv"'},
        )

    return api
