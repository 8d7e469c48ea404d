"""The billing service's stores and feature routers, built once and shared."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pymongo import AsyncMongoClient
from ringwise_kit.api import ApiCall, ApiResult, ApiRouter, Handler

from ringwise_billing.accounts import http as accounts_http
from ringwise_billing.accounts.payments import BankTransferProvider, PaymentProvider
from ringwise_billing.accounts.store import AccountStore
from ringwise_billing.accounts.topups import TopUps
from ringwise_billing.cdrs import api as cdrs_api
from ringwise_billing.cdrs.store import CdrStore
from ringwise_billing.fees import http as fees_http
from ringwise_billing.fees.store import Clock, Fees, utc_now
from ringwise_billing.idempotency import IdempotentReplies
from ringwise_billing.invoices import http as invoices_http
from ringwise_billing.invoices.issue import Issuer
from ringwise_billing.ledger import http as ledger_http
from ringwise_billing.ledger.booking import Booker
from ringwise_billing.ledger.store import LedgerStore
from ringwise_billing.tariffs import http as tariffs_http
from ringwise_billing.tariffs.store import TariffStore


@dataclass
class Billing:
    cdrs: CdrStore
    tariffs: TariffStore
    ledger: LedgerStore
    accounts: AccountStore
    booker: Booker
    topups: TopUps
    fees: Fees
    issuer: Issuer
    idempotency: IdempotentReplies

    @classmethod
    def open(
        cls,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        providers: list[PaymentProvider] | None = None,
        clock: Clock = utc_now,
        issuer: Issuer | None = None,
    ) -> Billing:
        ledger = LedgerStore(client, database)
        tariffs = TariffStore(client, database)
        accounts = AccountStore(client, database, ledger)
        providers = providers if providers is not None else [BankTransferProvider()]
        return cls(
            cdrs=CdrStore(client, database),
            tariffs=tariffs,
            ledger=ledger,
            accounts=accounts,
            booker=Booker(tariffs, ledger, accounts),
            topups=TopUps(client, database, ledger, accounts, {p.name: p for p in providers}),
            fees=Fees(client, database, ledger, accounts, clock),
            issuer=issuer or Issuer(),
            idempotency=IdempotentReplies(client, database),
        )

    async def ensure_indexes(self) -> None:
        await self.cdrs.ensure_indexes()
        await self.tariffs.ensure_indexes()
        await self.ledger.ensure_indexes()
        await self.topups.ensure_indexes()
        await self.fees.ensure_indexes()


BILLING_KEY = web.AppKey("billing", Billing)


# POST operations answered again, not repeated, for a retried Idempotency-Key (createTopUp
# keys the top-up itself; confirmTopUp is idempotent by nature).
IDEMPOTENT_POSTS = frozenset(
    {
        "createTariff",
        "rerateCalls",
        "createFee",
        "endFee",
        "reserveNumberCharge",
        "activateNumberCharge",
        "releaseNumberCharge",
    }
)


def _idempotent(billing: Callable[[], Billing], operation: str, handler: Handler) -> Handler:
    async def answer(call: ApiCall) -> ApiResult:
        return await billing().idempotency.wrap(operation, handler)(call)

    return answer


def router(billing: Callable[[], Billing]) -> ApiRouter:
    """Every billing API operation, from each feature's router."""
    features = ApiRouter()
    for feature in (
        tariffs_http,
        accounts_http,
        cdrs_api,
        fees_http,
        invoices_http,
        ledger_http,
    ):
        features.include(feature.router(billing))
    api = ApiRouter()
    for operation, handler in features.handlers.items():
        if operation in IDEMPOTENT_POSTS:
            api.operation(operation)(_idempotent(billing, operation, handler))
        else:
            api.operation(operation)(handler)
    return api
