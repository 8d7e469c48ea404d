"""The operations routes every service mounts: /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import test_utils, web
from prometheus_client import CollectorRegistry, Counter, Gauge
from ringwise_kit.ops import READINESS_KEY, Readiness, add_ops_routes

Client = test_utils.TestClient[web.Request, web.Application]


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[Client]:
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        yield client


def ops_app(
    registry: CollectorRegistry | None = None, timeout_s: float = 0.1
) -> tuple[web.Application, Readiness]:
    app = web.Application()
    readiness = add_ops_routes(app, registry or CollectorRegistry(), readiness_timeout_s=timeout_s)
    return app, readiness


async def get_json(client: Client, path: str) -> tuple[int, Any]:
    resp = await client.get(path)
    return resp.status, await resp.json()


# ------------------------------------------------------------------------------ checks


def sync_ok() -> bool:
    return True


async def async_ok() -> bool:
    await asyncio.sleep(0)
    return True


def sync_false() -> bool:
    return False


async def async_false() -> bool:
    return False


def sync_raises() -> bool:
    raise ConnectionError("redis down")


async def async_raises() -> bool:
    raise ConnectionError("nats down")


async def hangs() -> bool:
    await asyncio.sleep(30)
    return True


FAILING: dict[str, Callable[[], Any]] = {
    "sync_false": sync_false,
    "async_false": async_false,
    "sync_raises": sync_raises,
    "async_raises": async_raises,
    "hangs": hangs,
}


# ------------------------------------------------------------------------------ tests


async def test_healthz_answers_ok() -> None:
    app, readiness = ops_app()
    readiness.add("never-consulted", sync_false)  # liveness ignores dependencies
    async with serve(app) as client:
        assert await get_json(client, "/healthz") == (200, {"status": "ok"})


async def test_readyz_is_200_when_every_check_passes() -> None:
    app, readiness = ops_app()
    assert app[READINESS_KEY] is readiness
    async with serve(app) as client:
        # No checks registered: nothing to wait for.
        assert await get_json(client, "/readyz") == (200, {"status": "ready", "checks": {}})
        readiness.add("redis", sync_ok)
        readiness.add("nats", async_ok)
        status, body = await get_json(client, "/readyz")
    assert status == 200
    assert body == {"status": "ready", "checks": {"redis": True, "nats": True}}


@pytest.mark.parametrize("kind", sorted(FAILING))
async def test_readyz_is_503_and_names_the_failing_check(kind: str) -> None:
    app, readiness = ops_app(timeout_s=0.1)
    readiness.add("redis", sync_ok)
    readiness.add("broken", FAILING[kind])
    readiness.add("nats", async_ok)
    async with serve(app) as client:
        started = time.monotonic()
        status, body = await get_json(client, "/readyz")
        took = time.monotonic() - started
    assert status == 503
    assert body == {
        "status": "not ready",
        "checks": {"redis": True, "broken": False, "nats": True},
    }
    assert took < 1.0, f"/readyz took {took:.2f}s"


async def test_a_hung_check_is_cancelled_at_the_timeout() -> None:
    cancelled = asyncio.Event()

    async def stuck() -> bool:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return True

    readiness = Readiness(timeout_s=30)
    readiness.add("mongo", stuck)
    started = time.monotonic()
    # The per-call timeout overrides the constructor's.
    assert await readiness.evaluate(timeout_s=0.05) == {"mongo": False}
    assert time.monotonic() - started < 0.5
    assert cancelled.is_set()


async def test_readiness_follows_the_dependency_without_caching() -> None:
    up = False

    def redis() -> bool:
        return up

    app, readiness = ops_app()
    readiness.add("redis", redis)
    async with serve(app) as client:
        assert (await client.get("/readyz")).status == 503
        up = True
        assert (await client.get("/readyz")).status == 200
        up = False
        assert (await client.get("/readyz")).status == 503


async def test_a_later_check_with_the_same_name_replaces_the_first() -> None:
    readiness = Readiness()
    readiness.add("ari", sync_false)
    readiness.add("ari", async_ok)
    assert await readiness.evaluate() == {"ari": True}


async def test_metrics_serves_the_given_registry_in_prometheus_text() -> None:
    registry = CollectorRegistry()
    calls = Counter("kittest_calls", "Calls seen", ["outcome"], registry=registry)
    calls.labels("answered").inc(3)
    Gauge("kittest_active_calls", "Calls up now", registry=registry).set(2)
    app, _ = ops_app(registry)
    async with serve(app) as client:
        resp = await client.get("/metrics")
        text = await resp.text()
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert "version=" in resp.headers["Content-Type"]
    assert "# TYPE kittest_calls_total counter" in text.splitlines()
    assert 'kittest_calls_total{outcome="answered"} 3.0' in text.splitlines()
    assert "kittest_active_calls 2.0" in text.splitlines()
    # Only that registry: the process-wide default one (kit ARI metrics...) is not mixed in.
    assert "ringwise_ari_connected" not in text
