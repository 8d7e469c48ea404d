"""A real call through Asterisk is rated by the tenant's tariff and booked in the ledger once,
and shows with its price in the tenant's call history (billing's API over NATS)."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client as NatsClient
from ringwise.api.v1 import api_pb2
from ringwise_billing.accounts import credit
from ringwise_dev.fixture import ALICE, TENANT
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.sipp import PhoneKind
from ringwise_dev.testing import StartPhone, new_caller, wait_cdrs
from ringwise_kit import bus
from ringwise_kit.api import ApiCall, call_service

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

OPERATOR = api_pb2.Principal(subject_id="e2e-operator", role=api_pb2.ROLE_OPERATOR_ADMIN)


async def billing_api(
    nc: NatsClient, operation: str, body: Any = None, query: list[tuple[str, str]] | None = None
) -> Any:
    reply = await call_service(
        nc,
        "billing",
        ApiCall(
            operation=operation,
            principal=OPERATOR,
            path_params={"tenant_id": TENANT},
            query=query or [],
            body=json.dumps(body).encode() if body is not None else b"",
        ),
    )
    assert reply.status in (200, 201), reply.body
    return json.loads(reply.body)


async def test_an_answered_call_to_a_priced_number_is_booked_once_at_its_price(
    platform: LocalPlatform, start_phone: StartPhone
) -> None:
    nc = await bus.connect(platform.infra.endpoints.nats_url, "e2e-billing")
    try:
        # Calls to Alice's number cost the tenant 0.60 a minute, by the second (a freephone).
        await billing_api(
            nc,
            "createTariff",
            {
                "version_id": f"e2e-{uuid.uuid4().hex[:8]}",
                "effective_from": "2020-01-01T00:00:00Z",
                "currency": "EUR",
                "inbound": [{"prefix": ALICE.number, "per_minute": "0.6000", "increment": "1/1"}],
            },
        )
        await start_phone(PhoneKind.ANSWER, ALICE)
        caller = new_caller()
        await platform.sipp.call(ALICE.number, caller=caller, hold_ms=1500)
        [cdr] = await wait_cdrs(platform, caller)
        seconds = -(-int(cdr["billable_ms"]) // 1000)
        assert seconds >= 1

        entry: dict[str, Any] = {}
        for _ in range(50):
            # Oldest first: only entries booked since the call started (other tests' calls
            # to this tenant would push it past the first page).
            page = await billing_api(
                nc, "listLedgerEntries", query=[("kind", "call"), ("from", cdr["started_at"])]
            )
            found = [e for e in page["items"] if e.get("call_id") == cdr["call_id"]]
            if found:
                [entry] = found
                break
            await asyncio.sleep(0.1)
        assert entry, "the call was not booked"
        assert (entry["outcome"], entry["billed_seconds"], entry["prefix"]) == (
            "rated",
            seconds,
            ALICE.number.lstrip("+"),
        )
        assert Decimal(entry["amount"]) == -Decimal("0.01") * seconds

        history = await billing_api(nc, "listCalls", query=[("number", caller)])
        [listed] = history["items"]
        assert (listed["call_id"], listed["direction"], listed["disposition"]) == (
            cdr["call_id"],
            "inbound",
            "answered",
        )
        assert Decimal(listed["charge"]) == Decimal("0.01") * seconds
    finally:
        await nc.drain()


@pytest.mark.parametrize("prompt", credit.ALL_PROMPTS)
async def test_each_credit_prompt_is_a_sound_the_platform_has(
    platform: LocalPlatform, prompt: str
) -> None:
    asterisk = platform.asterisk
    async with (
        aiohttp.ClientSession(headers=asterisk.ari_auth_headers()) as session,
        session.get(f"{asterisk.ari_url}/ari/sounds", params={"lang": "en"}) as resp,
    ):
        assert resp.status == 200
        sounds = {sound["id"] for sound in await resp.json()}
    for media in prompt.split(","):
        kind, name = media.split(":", 1)
        assert kind == "sound"
        assert name in sounds, f"Asterisk has no English sound {name}"
