"""Per-test phones and the API client session for end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from ringwise_dev.fixture import Person
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import PhoneKind, SippPhone
from ringwise_dev.testing import StartPhone


@pytest_asyncio.fixture(loop_scope="session")
async def start_phone(platform: LocalPlatform) -> AsyncIterator[StartPhone]:
    """Start sipp phones on a person's port; all are stopped after the test."""
    phones: list[SippPhone] = []

    async def start(kind: PhoneKind, person: Person, **options: Any) -> SippPhone:
        phone = await platform.sipp.start_phone(kind, person.phone_port(platform.ports), **options)
        phones.append(phone)
        return phone

    yield start
    for phone in phones:
        await phone.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for the public API (tests/e2e drive the gateway like a customer)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
        yield s
