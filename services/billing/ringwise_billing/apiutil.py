"""Small helpers the billing API handlers share: roles, list paging, query parsing."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from ringwise.api.v1 import api_pb2
from ringwise_kit.api import ApiCall, ApiError, field_error

OPERATOR = frozenset({api_pb2.ROLE_OPERATOR_ADMIN, api_pb2.ROLE_SERVICE})
ADMINS = OPERATOR | {api_pb2.ROLE_TENANT_ADMIN}
READERS = ADMINS | {api_pb2.ROLE_SUPERVISOR, api_pb2.ROLE_COMPLIANCE_OFFICER}
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def require(call: ApiCall, roles: frozenset[int]) -> None:
    """The gateway checks roles from the OpenAPI document; services check again."""
    if call.role not in roles:
        raise ApiError(403, "Forbidden", "your role may not do this")


def limit_of(call: ApiCall) -> int:
    raw = call.query_one("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise field_error("limit", f"an integer from 1 to {MAX_LIMIT}", 400)
    return int(raw)


def encode_cursor(*parts: Any) -> str:
    raw = json.dumps([p.isoformat() if isinstance(p, datetime) else p for p in parts])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(call: ApiCall, *kinds: type) -> list[Any] | None:
    raw = call.query_one("cursor")
    if raw is None:
        return None
    try:
        parts = json.loads(base64.urlsafe_b64decode(raw.encode()).decode())
        if not isinstance(parts, list) or len(parts) != len(kinds):
            raise ValueError
        out: list[Any] = []
        for part, kind in zip(parts, kinds, strict=True):
            if kind is datetime:
                out.append(datetime.fromisoformat(part))
            elif isinstance(part, kind):
                out.append(part)
            else:
                raise ValueError
        return out
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise field_error("cursor", "not a cursor this API returned", 400) from None


def moment(call: ApiCall, name: str) -> datetime | None:
    """A date-time (with zone) or a date (midnight UTC) query parameter."""
    raw = call.query_one(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise field_error(name, "an ISO 8601 date or date-time", 400) from None
    if value.tzinfo is None:
        if len(raw) > 10:
            raise field_error(name, "a date-time needs a time zone (e.g. Z)", 400)
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def body_object(call: ApiCall) -> dict[str, Any]:
    body = call.json()
    if not isinstance(body, dict):
        raise ApiError(400, "Bad Request", "the body must be a JSON object")
    return body


def etag(value: object) -> str:
    return f'"{value}"'
