"""RFC 9457 problem+json responses, the one error format of every Ringwise HTTP API."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_body(
    status: int,
    title: str,
    detail: str = "",
    errors: list[dict[str, Any]] | None = None,
    type_: str = "about:blank",
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    return body


def problem(
    status: int,
    title: str,
    detail: str = "",
    *,
    errors: list[dict[str, Any]] | None = None,
    type_: str = "about:blank",
) -> web.Response:
    body = problem_body(status, title, detail, errors, type_)
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_CONTENT_TYPE)
