"""GET /v1/cdrs and /v1/cdrs/{call_id}: internal read API (the gateway exposes it later)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any

from aiohttp import web
from ringwise_kit.problems import problem

from ringwise_billing.cdrs.store import CdrStore, Doc

STORE_KEY = web.AppKey("cdr_store", CdrStore)
MAX_LIMIT = 1000


def _encode_cursor(doc: Doc) -> str:
    raw = f"{doc['ended_at'].isoformat()}|{doc['_id']}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        ended_at, call_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(ended_at), call_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("cursor is not one this API returned") from exc


def _json(doc: Doc) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in ("_id", "stored_at")}
    out["call_id"] = doc["_id"]
    for key in ("started_at", "answered_at", "ended_at"):
        if out.get(key) is not None:
            out[key] = out[key].isoformat()
    return out


async def list_cdrs(request: web.Request) -> web.Response:
    store = request.app[STORE_KEY]
    errors = []
    limit = 100
    raw_limit = request.query.get("limit")
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            errors.append({"name": "limit", "reason": f"an integer from 1 to {MAX_LIMIT}"})
        else:
            limit = int(raw_limit)
    after = None
    if "cursor" in request.query:
        try:
            after = _decode_cursor(request.query["cursor"])
        except ValueError as exc:
            errors.append({"name": "cursor", "reason": str(exc)})
    if errors:
        return problem(400, "Invalid query", "Some query parameters are invalid.", errors=errors)
    docs = await store.list(tenant_id=request.query.get("tenant_id"), after=after, limit=limit)
    body: dict[str, Any] = {"items": [_json(d) for d in docs]}
    if len(docs) == limit:
        body["next_cursor"] = _encode_cursor(docs[-1])
    return web.json_response(body)


async def get_cdr(request: web.Request) -> web.Response:
    doc = await request.app[STORE_KEY].get(request.match_info["call_id"])
    if doc is None:
        return problem(404, "Not found", "No CDR for that call.")
    return web.json_response(_json(doc))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/cdrs", list_cdrs)
    app.router.add_get("/v1/cdrs/{call_id}", get_cdr)
