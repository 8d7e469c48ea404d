"""The gateway and the directory restarted (gracefully and with SIGKILL) while a tenant
admin's script keeps writing through the API: no acknowledged write is lost, and a write
retried with its Idempotency-Key is stored once."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import pytest
from ringwise_dev.gateway_client import new_tenant
from ringwise_dev.platform import LocalPlatform

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

WRITERS = 4


async def write_contacts(
    session: aiohttp.ClientSession,
    base: str,
    token: str,
    writer: int,
    stop: asyncio.Event,
    acked: dict[str, str],
    attempts: list[int],
    progressed: asyncio.Event,
) -> None:
    """One script: create contacts one after the other; retry each (same Idempotency-Key)
    until it is acknowledged, whatever the platform answers meanwhile."""
    headers = {"Authorization": f"Bearer {token}"}
    for n in itertools.count():
        if stop.is_set():
            return
        name = f"Restart writer {writer} contact {n}"
        key = f"w{writer}-c{n}"
        while True:
            attempts.append(1)
            try:
                async with session.post(
                    f"{base}/contacts",
                    json={"name": name, "scope": "tenant", "visibility": "staff"},
                    headers={**headers, "Idempotency-Key": key},
                ) as resp:
                    body: Any = await resp.json(content_type=None)
                    if resp.status == 201:
                        acked[name] = body["contact_id"]
                        progressed.set()
                        break
                    assert resp.status in (409, 502, 503, 504), (resp.status, body)
            except (aiohttp.ClientError, TimeoutError):
                pass  # the gateway is down or restarting: not acknowledged, try again
            await asyncio.sleep(0.1)


async def all_contacts(session: aiohttp.ClientSession, base: str, token: str) -> list[Any]:
    items: list[Any] = []
    cursor = ""
    while True:
        url = f"{base}/contacts?limit=200" + (f"&cursor={cursor}" if cursor else "")
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        items += page["items"]
        cursor = page["next_cursor"] or ""
        if not cursor:
            return items


async def test_restarting_gateway_and_directory_under_writes_loses_no_acknowledged_write(
    platform: LocalPlatform,
) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        tenant = await new_tenant(platform, session)
        base = f"{platform.service_url('gateway')}/v1/tenants/{tenant.tenant_id}"
        token = tenant.admin.token
        stop = asyncio.Event()
        acked: dict[str, str] = {}
        attempts: list[int] = []
        progressed = asyncio.Event()
        writers = [
            asyncio.create_task(
                write_contacts(session, base, token, w, stop, acked, attempts, progressed)
            )
            for w in range(WRITERS)
        ]

        async def progress(more: int) -> None:
            """Wait until the writers got `more` writes acknowledged."""
            target = len(acked) + more
            async with asyncio.timeout(60):
                while len(acked) < target:
                    progressed.clear()
                    await progressed.wait()

        gateway, directory = platform.services["gateway"], platform.services["directory"]
        await progress(20)
        await platform.restart_service("gateway")  # graceful (SIGTERM)
        await progress(20)
        directory.kill()
        await asyncio.sleep(0.5)
        await directory.start_and_wait()
        await progress(20)
        gateway.kill()
        await asyncio.sleep(0.5)
        await gateway.start_and_wait()
        await progress(20)
        await platform.restart_service("directory")  # graceful
        await progress(20)
        stop.set()
        await asyncio.gather(*writers)

        stored = await all_contacts(session, base, token)
        by_name: dict[str, list[str]] = {}
        for contact in stored:
            by_name.setdefault(contact["name"], []).append(contact["contact_id"])
        assert len(acked) >= 100
        missing = [name for name in acked if name not in by_name]
        assert missing == []
        assert all(by_name[name] == [contact_id] for name, contact_id in acked.items())
        # Retries after a lost reply did not create a second contact either.
        assert [name for name, ids in by_name.items() if len(ids) > 1] == []
        assert len(attempts) > len(acked)  # the restarts were felt: some writes were retried
