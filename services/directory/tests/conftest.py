"""Fixtures of the directory's tests (the harness itself: directory_harness.py).

The in-process directory answers on the real directory subjects, so these tests must run
before anything starts the whole platform (whose directory would share the queue group):
pytest runs services/ before tests/ (testpaths order).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from directory_harness import TEST_HASHER, FakeClock, Harness, next_db_name
from nats.aio.client import Client as NatsClient
from pymongo import AsyncMongoClient
from ringwise_dev.infra import Infra
from ringwise_directory.main import start_directory
from ringwise_directory.settings import DirectorySettings
from ringwise_kit import bus


@pytest_asyncio.fixture(loop_scope="session")
async def nc(infra: Infra) -> AsyncIterator[NatsClient]:
    client = await bus.connect(infra.endpoints.nats_url, "directory-tests")
    yield client
    await client.drain()


@pytest_asyncio.fixture(loop_scope="session")
async def mongo(infra: Infra) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        infra.endpoints.mongo_url, tz_aware=True
    )
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="session")
async def harness(
    nc: NatsClient, mongo: AsyncMongoClient[dict[str, Any]]
) -> AsyncIterator[Harness]:
    clock = FakeClock()
    db = mongo[next_db_name()]
    service = await start_directory(
        nc, db, DirectorySettings(), clock=clock, hasher=TEST_HASHER, run_lifecycle=False
    )
    yield Harness(nc, service, clock)
    await service.stop()
