"""Billing test fixtures: a fresh billing database per test on the session's Mongo-wire."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from pymongo import AsyncMongoClient
from ringwise_billing.wiring import Billing
from ringwise_dev.infra import Infra

_dbs = itertools.count()


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(infra: Infra) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        infra.endpoints.mongo_url, tz_aware=True
    )
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def billing(mongo: AsyncMongoClient[dict[str, Any]]) -> Billing:
    stores = Billing.open(mongo, f"billing_ledger_test_{next(_dbs)}")
    await stores.ensure_indexes()
    return stores
