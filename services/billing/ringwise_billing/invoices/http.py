"""Invoice downloads (OpenAPI: invoices/api.yaml)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ringwise_kit.api import ApiCall, ApiError, ApiResult, ApiRouter

from ringwise_billing.apiutil import READERS, require
from ringwise_billing.invoices.document import Invoice, render_pdf
from ringwise_billing.invoices.issue import InvoiceError, monthly_invoice, topup_invoice

PDF = "application/pdf"
TITLES = {400: "Bad Request", 404: "Not Found", 409: "Conflict"}


def pdf_result(invoice: Invoice) -> ApiResult:
    return ApiResult(
        body=render_pdf(invoice),
        content_type=PDF,
        headers={"Content-Disposition": f'attachment; filename="{invoice.number}.pdf"'},
    )


def router(billing: Callable[[], Any]) -> ApiRouter:
    api = ApiRouter()

    @api.operation("getTopUpInvoice")
    async def topup_pdf(call: ApiCall) -> ApiResult:
        require(call, READERS)
        stores = billing()
        topup = await stores.topups.get(call.tenant_id, call.param("topup_id"))
        if topup is None:
            raise ApiError(404, "Not Found", "no such top-up")
        account = await stores.accounts.get(call.tenant_id)
        try:
            return pdf_result(topup_invoice(stores.issuer, account, topup))
        except InvoiceError as exc:
            raise ApiError(exc.status, TITLES[exc.status], str(exc)) from None

    @api.operation("getMonthlyInvoice")
    async def monthly_pdf(call: ApiCall) -> ApiResult:
        require(call, READERS)
        stores = billing()
        account = await stores.accounts.get(call.tenant_id)
        if account is None:
            raise ApiError(404, "Not Found", "this tenant has no billing account")
        try:
            invoice = await monthly_invoice(
                stores.issuer,
                stores.ledger,
                account,
                call.tenant_id,
                call.param("period"),
                stores.fees.clock(),
            )
        except InvoiceError as exc:
            raise ApiError(exc.status, TITLES[exc.status], str(exc)) from None
        return pdf_result(invoice)

    return api
