"""Tariff operations (OpenAPI: tariffs/api.yaml). Operators set a tenant's prices; tenant
admins read them. Versions are history: a correction is a new revision (PUT), never an
edit, and re-rating a period books the differences as adjustments."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter, field_error

from ringwise_billing.apiutil import OPERATOR, READERS, body_object, etag, require
from ringwise_billing.ledger.rerate import rerate
from ringwise_billing.rating.money import from_micros
from ringwise_billing.rating.tariff import TariffError, parse_effective_from, parse_version
from ringwise_billing.tariffs.store import TariffConflict

MAX_RERATE_DAYS = 93


def version_json(doc: dict[str, Any], *, rates: bool = True) -> dict[str, Any]:
    out = {
        key: doc[key]
        for key in ("version_id", "name", "effective_from", "currency", "revision", "created_at")
    }
    if rates:
        out["outbound"] = doc["outbound"]
        out["inbound"] = doc["inbound"]
    else:
        out["outbound_rates"] = len(doc["outbound"])
        out["inbound_rates"] = len(doc["inbound"])
    return out


def _invalid(exc: TariffError) -> ApiError:
    return ApiError(422, "Unprocessable Content", "invalid tariff", errors=exc.errors)


def router(billing: Callable[[], Any]) -> ApiRouter:
    api = ApiRouter()

    async def check_currency(tenant_id: str, currency: str) -> None:
        account = await billing().accounts.get(tenant_id)
        if account is not None and account.get("currency") and account["currency"] != currency:
            raise field_error("/currency", f"the tenant's account is kept in {account['currency']}")

    @api.operation("listTariffs")
    async def list_tariffs(call: ApiCall) -> ApiResult:
        require(call, READERS)
        docs = await billing().tariffs.latest_versions(call.tenant_id)
        return ApiResult(
            body={"items": [version_json(d, rates=False) for d in docs], "next_cursor": None}
        )

    @api.operation("createTariff")
    async def create_tariff(call: ApiCall) -> ApiResult:
        require(call, OPERATOR)
        try:
            version = parse_version(body_object(call))
        except TariffError as exc:
            raise _invalid(exc) from None
        await check_currency(call.tenant_id, version.currency)
        try:
            doc = await billing().tariffs.put(call.tenant_id, version, call.principal.subject_id)
        except TariffConflict:
            raise ApiError(
                409, "Conflict", f"version {version.version_id} exists; PUT corrects it"
            ) from None
        return ApiResult(
            status=201, body=version_json(doc), headers={"ETag": etag(doc["revision"])}
        )

    @api.operation("getTariff")
    async def get_tariff(call: ApiCall) -> ApiResult:
        require(call, READERS)
        doc = await billing().tariffs.latest(call.tenant_id, call.param("version_id"))
        if doc is None:
            raise ApiError(404, "Not Found", "no such tariff version")
        return ApiResult(body=version_json(doc), headers={"ETag": etag(doc["revision"])})

    @api.operation("correctTariff")
    async def correct_tariff(call: ApiCall) -> ApiResult:
        """A new revision of the version; calls already booked keep their price until the
        period is re-rated (rerateCalls)."""
        require(call, OPERATOR)
        version_id = call.param("version_id")
        latest = await billing().tariffs.latest(call.tenant_id, version_id)
        if latest is None:
            raise ApiError(404, "Not Found", "no such tariff version")
        if call.if_match and call.if_match != etag(latest["revision"]):
            raise ApiError(412, "Precondition Failed", "the tariff has been corrected meanwhile")
        body = body_object(call)
        if body.get("version_id", version_id) != version_id:
            raise field_error("/version_id", "must be the version in the path")
        try:
            version = parse_version(
                {**body, "version_id": version_id}, revision=int(latest["revision"]) + 1
            )
        except TariffError as exc:
            raise _invalid(exc) from None
        await check_currency(call.tenant_id, version.currency)
        try:
            doc = await billing().tariffs.put(call.tenant_id, version, call.principal.subject_id)
        except TariffConflict:
            raise ApiError(
                412, "Precondition Failed", "corrected meanwhile; read it again"
            ) from None
        return ApiResult(body=version_json(doc), headers={"ETag": etag(doc["revision"])})

    @api.operation("rerateCalls")
    async def rerate_calls(call: ApiCall) -> ApiResult:
        require(call, OPERATOR)
        body = body_object(call)
        errors = []
        bounds: dict[str, datetime] = {}
        for name in ("since", "until"):
            try:
                bounds[name] = parse_effective_from(body.get(name))
            except ValueError as exc:
                errors.append({"field": f"/{name}", "message": str(exc)})
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > 500:
            errors.append({"field": "/reason", "message": "up to 500 characters"})
        if errors:
            raise ApiError(422, "Unprocessable Content", "invalid period", errors=errors)
        since, until = bounds["since"], bounds["until"]
        if not since < until or (until - since).days > MAX_RERATE_DAYS:
            raise field_error("/until", f"after since, at most {MAX_RERATE_DAYS} days later")
        until = min(until, datetime.now(UTC))
        # The run id makes a retried request book nothing twice.
        run_id = call.idempotency_key or call.request_id or "rerate"
        stores = billing()
        result = await rerate(
            stores.cdrs, stores.booker, call.tenant_id, since, until, run_id, reason
        )
        return ApiResult(
            body={
                "run_id": result.run_id,
                "calls": result.calls,
                "adjusted": result.adjusted,
                "adjustment": str(from_micros(result.adjustment_micros)),
            }
        )

    return api
