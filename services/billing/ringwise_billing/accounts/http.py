"""Account, top-up and dashboard operations (OpenAPI: accounts/api.yaml)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter, field_error

from ringwise_billing.accounts.store import (
    ACTIVE,
    FAIL_CLOSED,
    FAIL_OPEN,
    is_blocked,
    reserved_micros,
)
from ringwise_billing.accounts.topups import TopUpError, TopUps
from ringwise_billing.apiutil import (
    ADMINS,
    OPERATOR,
    READERS,
    body_object,
    decode_cursor,
    encode_cursor,
    etag,
    limit_of,
    moment,
    require,
)
from ringwise_billing.ledger.store import ADJUSTMENT, CALL, FEE
from ringwise_billing.rating.money import (
    MoneyError,
    from_micros,
    parse_amount,
    parse_currency,
    to_micros,
)

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_VAT_ID = re.compile(r"^[A-Z]{2}[0-9A-Z+*.]{2,13}$")
MAX_TOPUP_MICROS = 100_000 * 1_000_000


def money(micros: int) -> str:
    return str(from_micros(micros))


def account_json(doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    balance = int(doc.get("balance_micros", 0))
    reserved = reserved_micros(doc, now)
    return {
        "tenant_id": doc["_id"],
        "status": doc.get("status"),
        "blocked": is_blocked(doc),
        "currency": doc.get("currency") or None,
        "balance": money(balance),
        "reserved": money(reserved),
        "available": money(balance - reserved),
        "profile": doc.get("profile"),
        "on_billing_unavailable": doc.get("on_billing_unavailable", FAIL_CLOSED),
        "activated_at": doc.get("activated_at"),
    }


def topup_json(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "topup_id": doc["_id"],
        "amount": money(int(doc["amount_micros"])),
        "currency": doc["currency"],
        "provider": doc["provider"],
        "status": doc["status"],
        "reference": doc.get("reference", ""),
        "instructions": doc.get("instructions", ""),
        "failure": doc.get("failure") or None,
        "created_at": doc["created_at"],
        "completed_at": doc.get("completed_at"),
    }


def parse_activation(body: dict[str, Any]) -> dict[str, Any]:
    errors = []
    profile = body.get("profile")
    if not isinstance(profile, dict):
        raise field_error("/profile", "company, vat_id and country are required")
    company = profile.get("company")
    if not isinstance(company, str) or not 1 <= len(company.strip()) <= 200:
        errors.append({"field": "/profile/company", "message": "1-200 characters"})
    country = profile.get("country")
    if not isinstance(country, str) or not _COUNTRY.match(country):
        errors.append({"field": "/profile/country", "message": "ISO 3166-1 alpha-2, e.g. DE"})
    vat_id = profile.get("vat_id", "")
    if not isinstance(vat_id, str) or (vat_id and not _VAT_ID.match(vat_id.replace(" ", ""))):
        errors.append({"field": "/profile/vat_id", "message": "country prefix + 2-13 characters"})
    address = profile.get("address", "")
    if not isinstance(address, str) or len(address) > 500:
        errors.append({"field": "/profile/address", "message": "up to 500 characters"})
    currency = body.get("currency", "EUR")
    try:
        currency = parse_currency(currency)
    except MoneyError as exc:
        errors.append({"field": "/currency", "message": str(exc)})
    policy = body.get("on_billing_unavailable", FAIL_CLOSED)
    if policy not in (FAIL_CLOSED, FAIL_OPEN):
        errors.append({"field": "/on_billing_unavailable", "message": "deny or allow"})
    if errors:
        raise ApiError(422, "Unprocessable Content", "invalid account", errors=errors)
    assert isinstance(company, str) and isinstance(vat_id, str)
    return {
        "profile": {
            "company": company.strip(),
            "vat_id": vat_id.replace(" ", ""),
            "country": country,
            "address": address,
        },
        "currency": currency,
        "on_billing_unavailable": policy,
    }


def month_start(moment_: datetime, back: int = 0) -> datetime:
    year, month = moment_.year, moment_.month - back
    while month < 1:
        month += 12
        year -= 1
    return datetime(year, month, 1, tzinfo=UTC)


def router(billing: Callable[[], Any]) -> ApiRouter:
    api = ApiRouter()

    def topups() -> TopUps:
        stores = billing()
        assert isinstance(stores.topups, TopUps)
        return stores.topups

    @api.operation("getBillingAccount")
    async def get_account(call: ApiCall) -> ApiResult:
        require(call, READERS)
        doc = await billing().accounts.get(call.tenant_id)
        if doc is None:
            raise ApiError(404, "Not Found", "this tenant has no billing account yet")
        return ApiResult(
            body=account_json(doc, datetime.now(UTC)), headers={"ETag": etag(doc["version"])}
        )

    @api.operation("activateBillingAccount")
    async def activate(call: ApiCall) -> ApiResult:
        require(call, ADMINS)
        wanted = parse_activation(body_object(call))
        problem: list[ApiError] = []

        def edit(doc: dict[str, Any]) -> dict[str, Any] | None:
            problem.clear()
            if call.if_match and call.if_match != etag(doc.get("version", 0)):
                problem.append(ApiError(412, "Precondition Failed", "the account has changed"))
                return None
            if doc.get("currency") and doc["currency"] != wanted["currency"]:
                problem.append(
                    field_error("/currency", f"the account is kept in {doc['currency']}", 409)
                )
                return None
            doc.update(wanted)
            if doc.get("status") != ACTIVE:
                doc["status"] = ACTIVE
                doc["activated_at"] = datetime.now(UTC)
            return doc

        doc = await billing().accounts.change(call.tenant_id, edit)
        if problem:
            raise problem[0]
        assert doc is not None
        return ApiResult(
            body=account_json(doc, datetime.now(UTC)), headers={"ETag": etag(doc["version"])}
        )

    @api.operation("createTopUp")
    async def create_topup(call: ApiCall) -> ApiResult:
        require(call, ADMINS)
        body = body_object(call)
        try:
            amount = parse_amount(body.get("amount"))
        except MoneyError as exc:
            raise field_error("/amount", str(exc)) from None
        micros = to_micros(amount)
        if not 0 < micros <= MAX_TOPUP_MICROS:
            raise field_error("/amount", "more than 0 and at most 100000")
        provider = body.get("provider", "bank_transfer")
        provider_data = body.get("provider_data", {})
        if not isinstance(provider, str) or not isinstance(provider_data, dict):
            raise field_error("/provider", "a provider name (and provider_data an object)")
        try:
            doc, created = await topups().create(
                call.tenant_id,
                micros,
                provider,
                created_by=call.principal.subject_id,
                idempotency_key=call.idempotency_key,
                provider_data=provider_data,
            )
        except TopUpError as exc:
            if exc.status == 422:
                raise field_error("/provider", str(exc)) from None
            raise ApiError(exc.status, "Conflict", str(exc)) from None
        return ApiResult(status=201 if created else 200, body=topup_json(doc))

    @api.operation("confirmTopUp")
    async def confirm_topup(call: ApiCall) -> ApiResult:
        """An operator saw the bank transfer arrive."""
        require(call, OPERATOR)
        try:
            doc = await topups().complete(call.tenant_id, call.param("topup_id"))
        except TopUpError as exc:
            raise ApiError(
                exc.status, "Not Found" if exc.status == 404 else "Conflict", str(exc)
            ) from None
        return ApiResult(body=topup_json(doc))

    @api.operation("getTopUp")
    async def get_topup(call: ApiCall) -> ApiResult:
        require(call, READERS)
        doc = await topups().get(call.tenant_id, call.param("topup_id"))
        if doc is None:
            raise ApiError(404, "Not Found", "no such top-up")
        return ApiResult(body=topup_json(doc))

    @api.operation("listTopUps")
    async def list_topups(call: ApiCall) -> ApiResult:
        """Payment history, newest first; ?from= &to= (created), ?status=."""
        require(call, READERS)
        limit = limit_of(call)
        cursor = decode_cursor(call, datetime, str)
        status = call.query_one("status")
        if status is not None and status not in ("pending", "completed", "failed"):
            raise field_error("status", "pending, completed or failed", 400)
        docs = await topups().history(
            call.tenant_id,
            since=moment(call, "from"),
            until=moment(call, "to"),
            status=status,
            before=(cursor[0], cursor[1]) if cursor else None,
            limit=limit,
        )
        next_cursor = (
            encode_cursor(docs[-1]["created_at"], docs[-1]["_id"]) if len(docs) == limit else None
        )
        return ApiResult(body={"items": [topup_json(d) for d in docs], "next_cursor": next_cursor})

    @api.operation("getBillingDashboard")
    async def dashboard(call: ApiCall) -> ApiResult:
        require(call, READERS)
        stores = billing()
        now = datetime.now(UTC)
        doc = await stores.accounts.get(call.tenant_id)
        if doc is None:
            raise ApiError(404, "Not Found", "this tenant has no billing account yet")
        this_month, last_month = month_start(now), month_start(now, 1)
        spend_kinds = [CALL, ADJUSTMENT, FEE]
        last = await stores.ledger.total(
            call.tenant_id, kinds=spend_kinds, since=last_month, until=this_month
        )
        current = await stores.ledger.total(call.tenant_id, kinds=spend_kinds, since=this_month)
        payments = await stores.topups.history(call.tenant_id, status="completed", limit=5)
        upcoming = await stores.fees.next_payment(call.tenant_id)
        next_payment = (
            {
                "date": upcoming["date"],
                "amount": money(upcoming["amount_micros"]),
                "currency": upcoming["currency"],
            }
            if upcoming
            else None
        )
        return ApiResult(
            body={
                "account": account_json(doc, now),
                "last_month_spend": money(-last),
                "this_month_spend": money(-current),
                "next_payment": next_payment,
                "recent_payments": [topup_json(p) for p in payments],
            }
        )

    return api
