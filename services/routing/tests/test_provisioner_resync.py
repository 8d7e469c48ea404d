"""The PJSIP resync loop (provisioning/provisioner.py): a device Asterisk failed to apply
(5xx) is tried again soon, not at the next period, and an ARI reconnect during that backoff
is not kept waiting; one Asterisk refuses (4xx) waits for its next change."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, cast

from ringwise.directory.v1 import devices_pb2
from ringwise_kit.ari.calls import RestCall
from ringwise_kit.ari.client import AriError
from ringwise_routing.provisioning.pjsip import PjsipOptions
from ringwise_routing.provisioning.provisioner import Provisioner
from structlog.testing import capture_logs


@dataclass
class Reply:
    data: bytes
    headers: dict[str, str] | None = None


class Directory:
    """nc.request for the device list: two phones."""

    def __init__(self) -> None:
        self.devices = [
            devices_pb2.SipDevice(
                tenant_id="acme",
                device_id=f"dev{n}",
                sip_username=f"rw{n}",
                md5_cred="0" * 32,
                realm="asterisk",
                kind="phone",
                max_contacts=1,
            )
            for n in (1, 2)
        ]

    async def request(self, subject: str, payload: bytes, **_options: float) -> Reply:
        reply = devices_pb2.ListSipDevicesReply(devices=self.devices)
        return Reply(reply.SerializeToString())


class Redis:
    def __init__(self) -> None:
        self.members: set[str] = set()

    async def sadd(self, _key: str, member: str) -> None:
        self.members.add(member)

    async def srem(self, _key: str, member: str) -> None:
        self.members.discard(member)

    async def smembers(self, _key: str) -> set[str]:
        return set(self.members)


class Asterisk:
    """Fails rw2's endpoint `failures` times with `status`, then applies it."""

    connected = True

    def __init__(self, status: int, failures: int) -> None:
        self.status = status
        self.failures = failures
        self.applied: list[str] = []

    def on_connected(self, _callback: Any) -> None:
        pass

    async def run_all(self, *requests: RestCall) -> list[Any]:
        results: list[Any] = []
        for request in requests:
            if request.path.endswith("/endpoint/rw2") and self.failures > 0:
                self.failures -= 1
                results.append(AriError(self.status, "Allocation failed", "PUT", request.path))
            else:
                if "/endpoint/" in request.path:
                    self.applied.append(request.path.rsplit("/", 1)[1])
                results.append(None)
        return results


def provisioner_for(asterisk: Asterisk) -> Provisioner:
    return Provisioner(
        cast(Any, Directory()),
        cast(Any, Redis()),
        cast(Any, asterisk),
        PjsipOptions(),
        resync_s=3600.0,
    )


async def resync_for(asterisk: Asterisk, seconds: float) -> Provisioner:
    provisioner = provisioner_for(asterisk)
    await provisioner._request_resync()  # as at ARI connect
    loop = asyncio.create_task(provisioner._resync_loop())
    await asyncio.sleep(seconds)
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    return provisioner


async def test_a_device_asterisk_failed_to_apply_is_applied_at_a_retry_soon_after() -> None:
    asterisk = Asterisk(status=500, failures=1)
    with capture_logs() as logs:
        provisioner = await resync_for(asterisk, 1.5)  # the first retry comes after 1 s
    assert asterisk.applied == ["rw1", "rw1", "rw2"]
    assert provisioner.last_resync_ok
    [incomplete] = [e for e in logs if e["event"] == "pjsip_resync_incomplete"]
    assert incomplete["failed"] == 1


async def test_a_device_asterisk_refuses_is_not_retried_until_the_next_period() -> None:
    asterisk = Asterisk(status=400, failures=1)
    with capture_logs() as logs:
        provisioner = await resync_for(asterisk, 1.5)
    assert asterisk.applied == ["rw1"]
    assert provisioner.last_resync_ok
    assert not [e for e in logs if e["event"] == "pjsip_resync_incomplete"]
    assert [e["device_id"] for e in logs if e["event"] == "pjsip_apply_failed"] == ["dev2"]


async def test_an_ari_reconnect_during_the_backoff_resyncs_at_once() -> None:
    # Asterisk restarted (it has no devices at all) while the loop waits to retry.
    asterisk = Asterisk(status=500, failures=1)
    provisioner = provisioner_for(asterisk)
    await provisioner._request_resync()
    loop = asyncio.create_task(provisioner._resync_loop())
    try:
        await asyncio.sleep(0.3)  # the first resync failed: waiting 1 s to retry
        assert asterisk.applied == ["rw1"]
        asterisk.failures = 2  # fails rw2 again, then applies it
        await provisioner._request_resync()
        await asyncio.sleep(0.3)
        assert asterisk.applied == ["rw1", "rw1"]  # resynced at once, not after the 1 s
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
