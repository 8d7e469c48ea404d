"""problem(): RFC 9457 application/problem+json responses."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import test_utils, web
from ringwise_kit.problems import PROBLEM_CONTENT_TYPE, problem


def body_of(response: web.Response) -> Any:
    assert response.text is not None
    return json.loads(response.text)


def test_full_problem() -> None:
    errors = [{"field": "number", "message": "not E.164"}]
    response = problem(
        422,
        "Invalid request",
        "The number must be in E.164 form.",
        errors=errors,
        type_="https://ringwise.example/problems/validation",
    )
    assert response.status == 422
    assert response.content_type == PROBLEM_CONTENT_TYPE == "application/problem+json"
    assert body_of(response) == {
        "type": "https://ringwise.example/problems/validation",
        "title": "Invalid request",
        "status": 422,
        "detail": "The number must be in E.164 form.",
        "errors": errors,
    }


def test_minimal_problem_leaves_out_empty_members() -> None:
    response = problem(404, "Not found")
    assert response.status == 404
    assert body_of(response) == {"type": "about:blank", "title": "Not found", "status": 404}
    assert body_of(problem(409, "Conflict", "", errors=[])) == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
    }


async def test_problem_over_http() -> None:
    async def handler(_request: web.Request) -> web.Response:
        return problem(503, "Directory unavailable", "Lookup of +15550100 timed out: é")

    app = web.Application()
    app.router.add_get("/x", handler)
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        resp = await client.get("/x")
        assert resp.status == 503
        assert resp.content_type == "application/problem+json"
        assert resp.charset == "utf-8"
        body = await resp.json(content_type="application/problem+json")
    assert body == {
        "type": "about:blank",
        "title": "Directory unavailable",
        "status": 503,
        "detail": "Lookup of +15550100 timed out: é",
    }
