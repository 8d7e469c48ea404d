"""The operations surface every service exposes: /metrics, /healthz and /readyz.

/healthz says the process is alive (event loop answers). /readyz is 200 only when every
registered dependency check (NATS, ARI, Redis, Mongo...) passes, so Kubernetes sends work
only to instances whose links are up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

Check = Callable[[], Awaitable[bool] | bool]


class Readiness:
    """Named dependency checks; ready when all of them pass.

    An async check that takes longer than timeout_s counts as failed.
    """

    def __init__(self, timeout_s: float = 2.0) -> None:
        self._checks: dict[str, Check] = {}
        self.timeout_s = timeout_s

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def evaluate(self, timeout_s: float | None = None) -> dict[str, bool]:
        if timeout_s is None:
            timeout_s = self.timeout_s
        results: dict[str, bool] = {}
        for name, check in self._checks.items():
            try:
                outcome = check()
                if not isinstance(outcome, bool):
                    outcome = await asyncio.wait_for(outcome, timeout_s)
                results[name] = bool(outcome)
            except Exception:
                results[name] = False
        return results


READINESS_KEY = web.AppKey("readiness", Readiness)


def add_ops_routes(
    app: web.Application,
    registry: CollectorRegistry = REGISTRY,
    *,
    readiness_timeout_s: float = 2.0,
) -> Readiness:
    """Mount /metrics, /healthz and /readyz on app and return its Readiness."""
    readiness = Readiness(readiness_timeout_s)
    app[READINESS_KEY] = readiness

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        checks = await readiness.evaluate()
        ready = all(checks.values())
        return web.json_response(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status=200 if ready else 503,
        )

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return readiness
