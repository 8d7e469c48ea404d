"""Keeps Asterisk's PJSIP objects in step with directory's SIP devices, over ARI.

Asterisk keeps dynamically created objects in memory only, so the whole set is re-applied
whenever the ARI connection (re)opens (Asterisk or routing restarted) and every resync_s, and
each device change from directory is applied as it comes. The usernames applied are kept in a
Redis set, so a device deleted while routing was down is removed at the next re-apply too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import nats.errors
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from prometheus_client import Counter, Gauge
from ringwise.directory.v1 import devices_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.ari import AriClient
from ringwise_kit.ari.client import AriError, AriNotFound
from ringwise_kit.logs import get_logger

from ringwise_routing.provisioning.edge import PhonesViaEdge
from ringwise_routing.provisioning.pjsip import TRUNK, PjsipOptions, apply_calls, delete_calls

log = get_logger(__name__)

APPLIED_SET = "routing:pjsip:applied"
PAGE = 500
APPLIED = Counter("ringwise_routing_pjsip_applied_total", "PJSIP device applies", ["outcome"])
DEVICES = Gauge("ringwise_routing_pjsip_devices", "SIP devices applied at the last resync")


class ResyncIncomplete(Exception):
    """Asterisk failed to apply some devices (5xx); the others were applied."""

    def __init__(self, failed: int) -> None:
        super().__init__(f"{failed} devices not applied")
        self.failed = failed


class Provisioner:
    def __init__(
        self,
        nc: NatsClient,
        redis: aioredis.Redis,
        ari: AriClient,
        options: PjsipOptions,
        *,
        resync_s: float = 300.0,
        directory_timeout_s: float = 3.0,
        phones_via_edge: PhonesViaEdge | None = None,
    ) -> None:
        self.nc = nc
        # Learns which endpoints are phones (the ones dialled through the SIP edge, if any).
        self.phones_via_edge = phones_via_edge or PhonesViaEdge()
        self.redis = redis
        self.ari = ari
        self.options = options
        self.resync_s = resync_s
        self.directory_timeout_s = directory_timeout_s
        self._sub: Any = None
        self._started_sub: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._resync_lock = asyncio.Lock()
        self._resync_wanted = asyncio.Event()
        self.last_resync_ok = False

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(
            subjects.DIRECTORY_SIP_DEVICE_CHANGES, cb=self._on_change
        )
        # A directory that crashed may not have announced its last changes: re-apply them all.
        self._started_sub = await self.nc.subscribe(
            subjects.DIRECTORY_STARTED, cb=self._on_directory_started
        )
        # Run after every ARI (re)connect; in the background, so call events are not held up.
        self.ari.on_connected(self._request_resync)
        self._spawn(self._resync_loop())

    async def stop(self) -> None:
        for sub in (self._sub, self._started_sub):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _request_resync(self) -> None:
        self._resync_wanted.set()

    async def _on_directory_started(self, _msg: Msg) -> None:
        self._resync_wanted.set()

    async def _resync_loop(self) -> None:
        retry_s = 1.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resync_wanted.wait(), self.resync_s)
            self._resync_wanted.clear()
            if not self.ari.connected:
                continue
            try:
                await self.resync()
                retry_s = 1.0
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError, bus.RemoteError):
                self.last_resync_ok = False
                log.warning("pjsip_resync_directory_unavailable", retry_in_s=retry_s)
            except ResyncIncomplete as exc:
                # Asterisk failed some devices (5xx): try again soon.
                log.warning("pjsip_resync_incomplete", failed=exc.failed, retry_in_s=retry_s)
            except Exception:
                self.last_resync_ok = False
                log.exception("pjsip_resync_failed", retry_in_s=retry_s)
            else:
                continue
            # Try again soon rather than at the next period, backing off up to a minute; an ARI
            # reconnect (Asterisk restarted: it has no devices at all) does not wait for that.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resync_wanted.wait(), retry_s)
            retry_s = min(retry_s * 2, 60.0)
            self._resync_wanted.set()

    async def _on_change(self, msg: Msg) -> None:
        change = devices_pb2.SipDeviceChanged()
        try:
            change.ParseFromString(msg.data)
        except Exception:
            log.warning("pjsip_bad_change_event")
            return
        device = change.device
        try:
            if change.deleted:
                await self.remove(device.sip_username)
            else:
                await self.apply(device)
        except Exception:
            # The next resync heals it.
            log.exception(
                "pjsip_change_failed", tenant_id=device.tenant_id, device_id=device.device_id
            )

    async def apply(self, device: devices_pb2.SipDevice) -> None:
        results = await self.ari.run_all(*apply_calls(device, self.options))
        failures = [r for r in results if isinstance(r, AriError)]
        if failures:
            APPLIED.labels("failed").inc()
            raise failures[0]
        await self.redis.sadd(APPLIED_SET, device.sip_username)
        if device.kind == TRUNK:
            self.phones_via_edge.not_a_phone(device.sip_username)
        else:
            self.phones_via_edge.phone_provisioned(device.sip_username)
        APPLIED.labels("applied").inc()
        log.info(
            "pjsip_device_applied",
            tenant_id=device.tenant_id,
            device_id=device.device_id,
            sip_username=device.sip_username,
        )

    async def remove(self, sip_username: str) -> None:
        results = await self.ari.run_all(*delete_calls(sip_username))
        failures = [
            r for r in results if isinstance(r, AriError) and not isinstance(r, AriNotFound)
        ]
        if failures:
            APPLIED.labels("failed").inc()
            raise failures[0]
        await self.redis.srem(APPLIED_SET, sip_username)
        self.phones_via_edge.not_a_phone(sip_username)
        APPLIED.labels("removed").inc()
        log.info("pjsip_device_removed", sip_username=sip_username)

    async def devices(self) -> AsyncIterator[devices_pb2.SipDevice]:
        after = ""
        while True:
            reply = await bus.request(
                self.nc,
                subjects.DIRECTORY_LIST_SIP_DEVICES,
                devices_pb2.ListSipDevicesRequest(after=after, limit=PAGE),
                devices_pb2.ListSipDevicesReply,
                timeout_s=self.directory_timeout_s,
            )
            for device in reply.devices:
                yield device
            if not reply.next_after:
                return
            after = reply.next_after

    async def resync(self) -> int:
        """Apply every device directory knows; remove the ones it no longer has."""
        async with self._resync_lock:
            seen: set[str] = set()
            failed = 0
            async for device in self.devices():
                seen.add(device.sip_username)
                try:
                    await self.apply(device)
                except (AriError, ValueError) as exc:
                    # Asterisk failing (5xx) makes the resync incomplete and retried soon; a
                    # device it refuses (4xx) or we cannot render waits for its next change.
                    if isinstance(exc, AriError) and exc.status >= 500:
                        failed += 1
                    log.exception("pjsip_apply_failed", device_id=device.device_id)
            applied = await self.redis.smembers(APPLIED_SET)
            stale = {m.decode() if isinstance(m, bytes) else str(m) for m in applied} - seen
            for username in stale:
                await self.remove(username)
            DEVICES.set(len(seen))
            self.last_resync_ok = not failed
            log.info("pjsip_resync_done", devices=len(seen), removed=len(stale), failed=failed)
            if failed:
                raise ResyncIncomplete(failed)
            return len(seen)
