"""Billing service: stores every call's CDR and books its rating exactly once; prepaid
accounts, credit authorisation for routing, and the billing API operations."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from ringwise.billing.v1 import credit_pb2
from ringwise_kit import api, bus, service, subjects
from ringwise_kit.logs import get_logger

from ringwise_billing import wiring
from ringwise_billing.accounts.credit import CreditControl, CreditPolicy
from ringwise_billing.accounts.payments import BankTransferProvider, PaymentProvider, TestProvider
from ringwise_billing.cdrs import consumer, http
from ringwise_billing.invoices.document import Party
from ringwise_billing.invoices.issue import Issuer
from ringwise_billing.settings import BillingSettings

log = get_logger(__name__)


def stores_ctx(settings: BillingSettings) -> service.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        providers: list[PaymentProvider] = [BankTransferProvider(iban=settings.billing_bank_iban)]
        if settings.billing_test_payments:
            providers.append(TestProvider())
        issuer = Issuer(
            Party(
                settings.billing_seller_name,
                settings.billing_seller_vat_id,
                settings.billing_seller_country,
                settings.billing_seller_address,
            ),
            settings.billing_vat_rate,
        )
        billing = wiring.Billing.open(
            app[service.MONGO_KEY], settings.billing_db, providers, issuer=issuer
        )
        await billing.ensure_indexes()
        # Entries booked but not yet in a balance when the last process died.
        recovered = await billing.accounts.apply_pending()
        if recovered:
            log.info("ledger_entries_recovered", entries=recovered)
        app[wiring.BILLING_KEY] = billing
        app[http.STORE_KEY] = billing.cdrs
        yield

    return ctx


def credit_ctx(settings: BillingSettings) -> service.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        billing = app[wiring.BILLING_KEY]
        credit = CreditControl(
            billing.accounts,
            billing.tariffs,
            CreditPolicy(
                max_call_s=settings.billing_max_call_s,
                quota_s=settings.billing_quota_s,
                warn_before_s=settings.billing_warn_before_s,
                reservation_grace_s=settings.billing_reservation_grace_s,
            ),
        )
        nc = app[service.NATS_KEY]
        subs = [
            await bus.serve(
                nc,
                subjects.BILLING_AUTHORISE,
                "billing",
                credit_pb2.AuthoriseRequest,
                credit.authorise,
            ),
            await bus.serve(
                nc, subjects.BILLING_RELEASE, "billing", credit_pb2.ReleaseRequest, credit.release
            ),
        ]
        yield
        for sub in subs:
            await sub.unsubscribe()

    return ctx


def fee_job_ctx(settings: BillingSettings) -> service.CleanupCtx:
    """Charges fees on a schedule; every run is idempotent, so a restart or a second billing
    process running it too changes nothing."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        fees = app[wiring.BILLING_KEY].fees

        async def loop() -> None:
            while True:
                try:
                    done = await fees.run_once()
                    if any(done.values()):
                        log.info("fee_job_ran", **done)
                except Exception as exc:
                    log.warning("fee_job_failed", error=repr(exc))
                await asyncio.sleep(settings.billing_fee_job_interval_s)

        task = asyncio.create_task(loop(), name="fee-job")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


def create_app(settings: BillingSettings | None = None) -> web.Application:
    settings = settings or BillingSettings()
    app = service.create_app(settings)
    app.cleanup_ctx.append(service.nats_ctx(settings, bus.CALLS, bus.DEAD_LETTERS))
    app.cleanup_ctx.append(service.mongo_ctx(settings.mongo_url))
    app.cleanup_ctx.append(stores_ctx(settings))
    app.cleanup_ctx.append(credit_ctx(settings))
    app.cleanup_ctx.append(fee_job_ctx(settings))
    app.cleanup_ctx.append(api.api_ctx("billing", wiring.router(lambda: app[wiring.BILLING_KEY])))
    app.cleanup_ctx.append(
        service.consumer_ctx(
            consumer.CONSUMER,
            batch_handler=lambda a: consumer.batch_handler(
                a[wiring.BILLING_KEY].cdrs, a[wiring.BILLING_KEY].booker
            ),
            linger_s=settings.billing_cdr_linger_s,
        )
    )
    http.add_routes(app)
    return app


def main() -> None:
    settings = BillingSettings()
    service.run(create_app(settings), settings)


if __name__ == "__main__":
    main()
