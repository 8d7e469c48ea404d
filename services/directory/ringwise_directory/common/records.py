"""Stored records as API resources: ids, clock, cursor pages, ETags and optimistic updates."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from ringwise_kit.api import ApiCall, ApiError, ApiResult

Doc = dict[str, Any]
Clock = Callable[[], datetime]
MAX_LIMIT = 200
DEFAULT_LIMIT = 50


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """Opaque, globally unique resource id (also a valid NATS subject token)."""
    return f"{prefix}_{secrets.token_hex(8)}"


def replayable_id(prefix: str, tenant_id: str, actor_id: str, idempotency_key: str) -> str:
    """The id of a resource created under an Idempotency-Key: the same key (same tenant, same
    caller) always gives the same id, so a retried create meets the first one in the unique
    index instead of making a second resource, even across crashes and restarts."""
    seed = f"{tenant_id}\n{actor_id}\n{idempotency_key}".encode()
    return f"{prefix}_{hashlib.sha256(seed).hexdigest()[:16]}"


def etag(version: int) -> str:
    return f'"{version}"'


def check_if_match(call: ApiCall, current_version: int) -> None:
    """If-Match on PUT/PATCH/DELETE: 412 when the client's copy is stale."""
    if not call.if_match or call.if_match.strip() == "*":
        return
    tags = {tag.strip().removeprefix("W/") for tag in call.if_match.split(",")}
    if etag(current_version) not in tags:
        raise ApiError(
            412,
            "Precondition Failed",
            f"the resource changed (now version {current_version}); fetch it and retry",
        )


def public(doc: Mapping[str, Any], hidden: Sequence[str] = ()) -> Doc:
    """A stored document as the API shows it: no Mongo _id, no internal fields."""
    out = {k: v for k, v in doc.items() if k not in ("_id", "idempotency_key") and k not in hidden}
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return out


@dataclass(frozen=True)
class PageRequest:
    limit: int
    sort_field: str
    descending: bool
    after: tuple[Any, str] | None


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"dt": value.astimezone(UTC).isoformat()}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"dt"}:
        return datetime.fromisoformat(value["dt"])
    return value


def encode_cursor(sort_field: str, descending: bool, value: Any, key: str) -> str:
    raw = json.dumps([sort_field, descending, _encode_value(value), key]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def page_request(call: ApiCall, sort_fields: Sequence[str], default_sort: str) -> PageRequest:
    """?limit=&cursor=&sort=[-]field, checked; bad values are 400 problems with field errors."""
    errors: list[dict[str, str]] = []
    limit = DEFAULT_LIMIT
    raw_limit = call.query_one("limit")
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            errors.append({"field": "limit", "message": f"an integer from 1 to {MAX_LIMIT}"})
        else:
            limit = int(raw_limit)
    sort = call.query_one("sort") or default_sort
    descending = sort.startswith("-")
    sort_field = sort.removeprefix("-")
    if sort_field not in sort_fields:
        errors.append({"field": "sort", "message": f"one of {', '.join(sort_fields)}, or -field"})
    after = None
    cursor = call.query_one("cursor")
    if cursor:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            field_name, cursor_desc, value, key = json.loads(base64.urlsafe_b64decode(padded))
            if (field_name, cursor_desc) != (sort_field, descending) or not isinstance(key, str):
                raise ValueError("cursor of another sort order")
            after = (_decode_value(value), key)
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            errors.append({"field": "cursor", "message": "not a cursor this list returned"})
    if errors:
        raise ApiError(400, "Bad Request", "invalid list parameters", errors=errors)
    return PageRequest(limit, sort_field, descending, after)


async def find_page(
    collection: AsyncCollection[Doc],
    query: Doc,
    page: PageRequest,
    key_field: str,
) -> tuple[list[Doc], str | None]:
    """One page of a keyset-paginated list ordered by (sort field, key field)."""
    direction = DESCENDING if page.descending else ASCENDING
    conditions = [query]
    if page.after is not None:
        value, key = page.after
        op = "$lt" if page.descending else "$gt"
        if page.sort_field == key_field:
            conditions.append({key_field: {op: key}})
        else:
            conditions.append(
                {
                    "$or": [
                        {page.sort_field: {op: value}},
                        {page.sort_field: value, key_field: {op: key}},
                    ]
                }
            )
    full = conditions[0] if len(conditions) == 1 else {"$and": conditions}
    order = [(page.sort_field, direction)]
    if page.sort_field != key_field:
        order.append((key_field, direction))
    docs = await collection.find(full).sort(order).limit(page.limit + 1).to_list()
    next_cursor = None
    if len(docs) > page.limit:
        docs = docs[: page.limit]
        last = docs[-1]
        next_cursor = encode_cursor(
            page.sort_field, page.descending, last.get(page.sort_field), last[key_field]
        )
    return docs, next_cursor


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[Doc, Doc]:
    """The changed fields only, before and after (for the audit history)."""
    keys = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    keys -= {"version", "updated_at", "_id"}
    return {k: before.get(k) for k in sorted(keys)}, {k: after.get(k) for k in sorted(keys)}


async def update_versioned(
    collection: AsyncCollection[Doc], key: Doc, current: Doc, changes: Doc, now: datetime
) -> Doc:
    """Apply changes only if nobody changed the record since it was read (else 412)."""
    updated = await collection.find_one_and_update(
        {**key, "version": current["version"]},
        {"$set": {**changes, "updated_at": now}, "$inc": {"version": 1}},
        return_document=ReturnDocument.AFTER,
    )
    if updated is None:
        raise ApiError(
            412, "Precondition Failed", "the resource changed meanwhile; fetch it and retry"
        )
    return updated


def created(doc: Mapping[str, Any], location: str, hidden: Sequence[str] = ()) -> ApiResult:
    return ApiResult(
        status=201,
        body=public(doc, hidden),
        headers={"ETag": etag(int(doc["version"])), "Location": location},
    )


def resource(doc: Mapping[str, Any], hidden: Sequence[str] = ()) -> ApiResult:
    return ApiResult(body=public(doc, hidden), headers={"ETag": etag(int(doc["version"]))})


def listing(
    docs: Sequence[Mapping[str, Any]], next_cursor: str | None, hidden: Sequence[str] = ()
) -> ApiResult:
    return ApiResult(body={"items": [public(d, hidden) for d in docs], "next_cursor": next_cursor})


def duplicate(what: str, field_name: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f"{what} already exists",
        errors=[{"field": field_name, "message": f"{what} already exists"}],
    )


def bad_filter(field_name: str, choices: Sequence[str]) -> ApiError:
    """A list filter outside its documented values (400, like other bad list parameters)."""
    message = f"one of {', '.join(choices)}"
    return ApiError(
        400,
        "Bad Request",
        f"{field_name}: {message}",
        errors=[{"field": field_name, "message": message}],
    )
