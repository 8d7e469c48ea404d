"""The ledger as a paginated data API (OpenAPI: ledger/api.yaml): every money movement of a
tenant, oldest first, for statements, audits and BI tools."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from ringwise_kit.api import ApiCall, ApiResult, ApiRouter, field_error

from ringwise_billing.apiutil import (
    READERS,
    decode_cursor,
    encode_cursor,
    limit_of,
    moment,
    require,
)
from ringwise_billing.ledger.store import ADJUSTMENT, CALL, FEE, TOPUP
from ringwise_billing.rating.money import from_micros

KINDS = (CALL, ADJUSTMENT, TOPUP, FEE)
FIELDS = (
    "call_id",
    "outcome",
    "seconds",
    "billed_seconds",
    "prefix",
    "tariff_version",
    "tariff_revision",
    "run_id",
    "reason",
    "topup_id",
    "fee_id",
    "period",
    "description",
)


def entry_json(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "entry_id": doc["_id"],
        "kind": doc["kind"],
        "amount": str(from_micros(int(doc["amount_micros"]))),
        "currency": doc.get("currency", ""),
        "occurred_at": doc.get("occurred_at"),
        "booked_at": doc.get("booked_at"),
    }
    out.update({key: doc[key] for key in FIELDS if doc.get(key) not in (None, "")})
    return out


def router(billing: Callable[[], Any]) -> ApiRouter:
    api = ApiRouter()

    @api.operation("listLedgerEntries")
    async def list_entries(call: ApiCall) -> ApiResult:
        """?from= &to= (booked), ?kind=; oldest first, by (booked_at, entry id)."""
        require(call, READERS)
        limit = limit_of(call)
        query: dict[str, Any] = {"tenant_id": call.tenant_id}
        kind = call.query_one("kind")
        if kind is not None:
            if kind not in KINDS:
                raise field_error("kind", ", ".join(KINDS), 400)
            query["kind"] = kind
        window = {}
        since, until = moment(call, "from"), moment(call, "to")
        if since is not None:
            window["$gte"] = since
        if until is not None:
            window["$lt"] = until
        if window:
            query["booked_at"] = window
        cursor = decode_cursor(call, datetime, str)
        if cursor is not None:
            query["$or"] = [
                {"booked_at": {"$gt": cursor[0]}},
                {"booked_at": cursor[0], "_id": {"$gt": cursor[1]}},
            ]
        entries = billing().ledger.entries
        found = entries.find(query).sort([("booked_at", ASCENDING), ("_id", ASCENDING)])
        docs = await found.limit(limit).to_list()
        next_cursor = (
            encode_cursor(docs[-1]["booked_at"], docs[-1]["_id"]) if len(docs) == limit else None
        )
        return ApiResult(body={"items": [entry_json(d) for d in docs], "next_cursor": next_cursor})

    return api
