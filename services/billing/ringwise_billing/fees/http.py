"""Fee and number-charge operations (OpenAPI: fees/api.yaml). Operators set what a tenant
pays monthly; tenant admins read it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter, field_error

from ringwise_billing.apiutil import OPERATOR, READERS, body_object, require
from ringwise_billing.fees.store import KINDS, NUMBER, FeeError, Fees
from ringwise_billing.rating.money import MoneyError, from_micros, parse_amount, to_micros

_FEE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NUMBER = re.compile(r"^\+[1-9][0-9]{5,14}$")


def fee_json(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "fee_id": doc["fee_id"],
        "kind": doc["kind"],
        "description": doc["description"],
        "number": doc.get("number") or None,
        "state": doc["state"],
        "monthly": str(from_micros(int(doc["monthly_micros"]))),
        "setup": str(from_micros(int(doc["setup_micros"]))),
        "currency": doc["currency"],
        "starts_at": doc.get("starts_at"),
        "ends_at": doc.get("ends_at"),
        "reserved_until": doc.get("reserved_until"),
        "delete_after": doc.get("delete_after"),
    }


def _amount(body: dict[str, Any], name: str, errors: list[dict[str, str]]) -> int:
    try:
        return to_micros(parse_amount(body.get(name, "0")))
    except MoneyError as exc:
        errors.append({"field": f"/{name}", "message": str(exc)})
        return 0


def router(billing: Callable[[], Any]) -> ApiRouter:
    api = ApiRouter()

    def fees() -> Fees:
        stores = billing()
        assert isinstance(stores.fees, Fees)
        return stores.fees

    async def currency_of(tenant_id: str) -> str:
        account = await billing().accounts.get(tenant_id)
        if account is None or not account.get("currency"):
            raise ApiError(409, "Conflict", "activate the billing account first")
        return str(account["currency"])

    def failed(exc: FeeError) -> ApiError:
        return ApiError(exc.status, "Not Found" if exc.status == 404 else "Conflict", str(exc))

    @api.operation("listFees")
    async def list_fees(call: ApiCall) -> ApiResult:
        require(call, READERS)
        kind = call.query_one("kind")
        if kind is not None and kind not in KINDS:
            raise field_error("kind", "service, user or number", 400)
        docs = await fees().of_tenant(call.tenant_id, kind)
        return ApiResult(body={"items": [fee_json(d) for d in docs], "next_cursor": None})

    @api.operation("createFee")
    async def create_fee(call: ApiCall) -> ApiResult:
        require(call, OPERATOR)
        body = body_object(call)
        errors: list[dict[str, str]] = []
        fee_id, kind, description = body.get("fee_id"), body.get("kind"), body.get("description")
        if not isinstance(fee_id, str) or not _FEE_ID.match(fee_id):
            errors.append({"field": "/fee_id", "message": "1-64 of A-Z a-z 0-9 _ . -"})
        if kind not in ("service", "user"):
            errors.append(
                {"field": "/kind", "message": "service or user (numbers: reserveNumberCharge)"}
            )
        if not isinstance(description, str) or not 1 <= len(description) <= 200:
            errors.append({"field": "/description", "message": "1-200 characters"})
        monthly = _amount(body, "monthly", errors)
        setup = _amount(body, "setup", errors)
        if errors:
            raise ApiError(422, "Unprocessable Content", "invalid fee", errors=errors)
        assert isinstance(fee_id, str) and isinstance(kind, str) and isinstance(description, str)
        currency = await currency_of(call.tenant_id)
        try:
            doc = await fees().subscribe(
                call.tenant_id,
                fee_id,
                kind,
                description,
                monthly,
                setup_micros=setup,
                currency=currency,
            )
        except FeeError as exc:
            raise failed(exc) from None
        await fees().charge_due(call.tenant_id)
        return ApiResult(status=201, body=fee_json(doc))

    @api.operation("endFee")
    async def end_fee(call: ApiCall) -> ApiResult:
        require(call, OPERATOR)
        try:
            return ApiResult(body=fee_json(await fees().end(call.tenant_id, call.param("fee_id"))))
        except FeeError as exc:
            raise failed(exc) from None

    @api.operation("reserveNumberCharge")
    async def reserve_number(call: ApiCall) -> ApiResult:
        require(call, OPERATOR)
        body = body_object(call)
        errors: list[dict[str, str]] = []
        number = body.get("number")
        if not isinstance(number, str) or not _NUMBER.match(number):
            errors.append({"field": "/number", "message": "E.164, e.g. +442071234567"})
        monthly = _amount(body, "monthly", errors)
        setup = _amount(body, "setup", errors)
        if errors:
            raise ApiError(422, "Unprocessable Content", "invalid number", errors=errors)
        assert isinstance(number, str)
        currency = await currency_of(call.tenant_id)
        try:
            doc = await fees().reserve_number(call.tenant_id, number, monthly, setup, currency)
        except FeeError as exc:
            raise failed(exc) from None
        return ApiResult(status=201, body=fee_json(doc))

    async def number_step(call: ApiCall, step: str) -> ApiResult:
        require(call, OPERATOR)
        fee_id = call.param("fee_id")
        doc = await fees().get(call.tenant_id, fee_id)
        if doc is None or doc["kind"] != NUMBER:
            raise ApiError(404, "Not Found", "no such number")
        try:
            if step == "activate":
                doc = await fees().activate_number(call.tenant_id, fee_id)
            else:
                doc = await fees().release_number(call.tenant_id, fee_id)
        except FeeError as exc:
            raise failed(exc) from None
        return ApiResult(body=fee_json(doc))

    @api.operation("activateNumberCharge")
    async def activate_number(call: ApiCall) -> ApiResult:
        return await number_step(call, "activate")

    @api.operation("releaseNumberCharge")
    async def release_number(call: ApiCall) -> ApiResult:
        return await number_step(call, "release")

    return api
