"""Call history for tenants (OpenAPI: cdrs/api.yaml): list with filters, CSV and xlsx
export, statistics; each call with what it cost (its charge plus re-rating adjustments)."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from openpyxl import Workbook
from ringwise.api.v1 import api_pb2
from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter, field_error

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
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
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


def xlsx_safe(value: str) -> str:
    """openpyxl writes a string starting with = as a formula: keep it text."""
    return "'" + value if value.startswith("=") else value


MISSED = {"no_answer", "busy", "unreachable", "cancelled"}


@dataclass
class Stats:
    calls: int = 0
    answered: int = 0
    missed: int = 0
    talk_s: int = 0
    hours: Counter[int] = field(default_factory=Counter)

    def add(self, item: dict[str, Any]) -> None:
        self.calls += 1
        if item["disposition"] == "answered":
            self.answered += 1
            self.talk_s += int(item["billable_s"])
        elif item["direction"] == "inbound" and item["disposition"] in MISSED:
            self.missed += 1
        if item["started_at"] is not None:
            self.hours[item["started_at"].hour] += 1

    def json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "answered": self.answered,
            "missed": self.missed,
            "average_duration_s": round(self.talk_s / self.answered, 1) if self.answered else 0,
            "busiest_hours": [
                {"hour": hour, "calls": count}
                for hour, count in sorted(self.hours.items(), key=lambda hc: (-hc[1], hc[0]))[:3]
            ],
        }


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

    async def matching(call: ApiCall) -> AsyncIterator[list[dict[str, Any]]]:
        """Every call matching the filters (up to EXPORT_MAX_ROWS), page by page."""
        filters = filters_of(call)
        before: tuple[datetime, str] | None = None
        rows = 0
        while rows < EXPORT_MAX_ROWS:
            docs = await page(call, filters, before, min(EXPORT_PAGE, EXPORT_MAX_ROWS - rows))
            if docs:
                yield await with_charges(docs)
            rows += len(docs)
            if len(docs) < EXPORT_PAGE:
                return
            before = (docs[-1]["started_at"], docs[-1]["_id"])

    @api.operation("listUserCalls")
    async def list_user_calls(call: ApiCall) -> ApiResult:
        """A user's own call history (admins and supervisors may read anyone's)."""
        user_id = call.param("user_id")
        if call.role == api_pb2.ROLE_USER:
            if call.principal.subject_id != user_id:
                raise ApiError(404, "Not Found", "no such user")
        else:
            require(call, READERS)
        limit = limit_of(call)
        cursor = decode_cursor(call, datetime, str)
        filters = {**filters_of(call), "user_id": user_id}
        docs = await page(call, filters, (cursor[0], cursor[1]) if cursor else None, limit)
        next_cursor = (
            encode_cursor(docs[-1]["started_at"], docs[-1]["_id"]) if len(docs) == limit else None
        )
        return ApiResult(body={"items": await with_charges(docs), "next_cursor": next_cursor})

    @api.operation("exportCalls")
    async def export_calls(call: ApiCall) -> ApiResult:
        """The same filters as listCalls, every matching call (up to 100k) as CSV."""
        require(call, READERS)
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        async for items in matching(call):
            for item in items:
                for key in ("started_at", "answered_at", "ended_at"):
                    item[key] = item[key].isoformat() if item[key] else ""
                writer.writerow({k: "" if v is None else csv_safe(v) for k, v in item.items()})
        return ApiResult(
            body=out.getvalue().encode(),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="calls-{call.tenant_id}.csv"'},
        )

    @api.operation("exportCallsXlsx")
    async def export_calls_xlsx(call: ApiCall) -> ApiResult:
        """The same as exportCalls, as an Excel workbook (typed cells: dates, numbers)."""
        require(call, READERS)
        book = Workbook(write_only=True)
        sheet = book.create_sheet("Calls")
        sheet.append(CSV_COLUMNS)
        async for items in matching(call):
            for item in items:
                row: list[Any] = []
                for column in CSV_COLUMNS:
                    value = item[column]
                    if isinstance(value, datetime):
                        value = value.replace(tzinfo=None)  # Excel has no time zones: UTC
                    elif column == "charge" and value is not None:
                        value = Decimal(value)
                    elif isinstance(value, str):
                        value = xlsx_safe(value)
                    row.append(value)
                sheet.append(row)
        out = io.BytesIO()
        book.save(out)
        return ApiResult(
            body=out.getvalue(),
            content_type=XLSX,
            headers={"Content-Disposition": f'attachment; filename="calls-{call.tenant_id}.xlsx"'},
        )

    @api.operation("getCallStatistics")
    async def call_statistics(call: ApiCall) -> ApiResult:
        """Per user: calls, answered, missed (inbound not answered), average talk time,
        busiest hours (UTC); and the same over all users. Same filters as listCalls."""
        require(call, READERS)
        per_user: dict[str, Stats] = defaultdict(Stats)
        overall = Stats()
        async for items in matching(call):
            for item in items:
                for stats in (per_user[item["user_id"] or ""], overall):
                    stats.add(item)
        return ApiResult(
            body={
                "totals": overall.json(),
                "by_user": [
                    {"user_id": user or None, **stats.json()}
                    for user, stats in sorted(per_user.items())
                ],
            }
        )

    return api
