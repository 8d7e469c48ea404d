"""Gateway: the one public REST API. Authenticates, authorises, validates, then forwards each
operation to its owning service over NATS request/reply (docs/api.md)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import yaml
from aiohttp import web
from prometheus_client import Histogram
from ringwise_kit import service
from ringwise_kit.api import ApiError, new_request_id
from ringwise_kit.logs import get_logger
from ringwise_kit.problems import problem

from ringwise_gateway.auth import http as auth_http
from ringwise_gateway.auth.identity import Identity
from ringwise_gateway.auth.tokens import check_signing_key
from ringwise_gateway.forwarding.http import REQUEST_ID_KEY, forwarding_handler
from ringwise_gateway.forwarding.idempotency import IdempotencyStore
from ringwise_gateway.openapi.document import OpenApiDocument
from ringwise_gateway.settings import GatewaySettings

log = get_logger(__name__)

IDEMPOTENCY_KEY = web.AppKey("idempotency", IdempotencyStore)
REQUESTS = Histogram(
    "ringwise_gateway_request_seconds",
    "Gateway requests by operation and status",
    ["operation", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problems_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as problem+json; nothing unexpected leaks internals."""
    request_id = request.headers.get("X-Request-Id", "")[:64] or new_request_id()
    request[REQUEST_ID_KEY] = request_id
    started = time.perf_counter()
    operation = request.match_info.route.name or "unmatched"
    try:
        response = await handler(request)
    except ApiError as exc:
        response = problem(exc.status, exc.title, exc.detail, errors=exc.errors)
        response.headers.update(exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = problem(exc.status, exc.reason, exc.text or "")
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except Exception:
        log.exception("gateway_request_failed", request_id=request_id, path=request.path)
        response = problem(500, "Internal Server Error", f"request {request_id} failed")
    response.headers["X-Request-Id"] = request_id
    REQUESTS.labels(operation, str(response.status)).observe(time.perf_counter() - started)
    return response


def identity_ctx(settings: GatewaySettings) -> service.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[auth_http.IDENTITY_KEY] = Identity(
            app[service.NATS_KEY],
            app[service.REDIS_KEY],
            settings.token_signing_key.get_secret_value(),
            access_ttl_s=settings.access_token_ttl_s,
            refresh_ttl_s=settings.refresh_token_ttl_s,
            api_key_cache_s=settings.api_key_cache_s,
        )
        app[IDEMPOTENCY_KEY] = IdempotencyStore(app[service.REDIS_KEY], settings.idempotency_ttl_s)
        yield

    return ctx


def add_api_routes(
    app: web.Application, document: OpenApiDocument, settings: GatewaySettings
) -> None:
    for op in document.operations:
        local = auth_http.LOCAL_OPERATIONS.get(op.operation_id)
        if op.service == "gateway" and local is None:
            raise RuntimeError(f"gateway operation {op.operation_id} has no local handler")
        handler = forwarding_handler(
            op,
            nc_of=lambda: app[service.NATS_KEY],
            identity_of=lambda: app[auth_http.IDENTITY_KEY],
            idempotency_of=lambda: app[IDEMPOTENCY_KEY],
            timeout_s=settings.forward_timeout_s,
            local=local,
        )
        app.router.add_route(op.method, op.path, handler, name=op.operation_id)

    as_json = json.dumps(document.doc).encode()
    as_yaml = yaml.safe_dump(document.doc, sort_keys=False).encode()

    async def openapi_json(_: web.Request) -> web.Response:
        return web.Response(body=as_json, content_type="application/json")

    async def openapi_yaml(_: web.Request) -> web.Response:
        return web.Response(body=as_yaml, content_type="application/yaml")

    app.router.add_get("/v1/openapi.json", openapi_json, name="openapiJson")
    app.router.add_get("/v1/openapi.yaml", openapi_yaml, name="openapiYaml")


def create_app(settings: GatewaySettings | None = None) -> web.Application:
    settings = settings or GatewaySettings()
    # Fail at start-up, not at the first sign-in, when the key is missing or short.
    check_signing_key(settings.token_signing_key.get_secret_value())
    app = service.create_app(settings)
    app._client_max_size = settings.max_body_bytes  # aiohttp reads it per request
    app.middlewares.append(problems_middleware)
    app.cleanup_ctx.append(service.nats_ctx(settings))
    app.cleanup_ctx.append(service.redis_ctx(settings.redis_url))
    app.cleanup_ctx.append(identity_ctx(settings))
    add_api_routes(app, OpenApiDocument.load(settings.openapi_path), settings)
    return app


def main() -> None:
    settings = GatewaySettings()
    service.run(create_app(settings), settings)


if __name__ == "__main__":
    main()
