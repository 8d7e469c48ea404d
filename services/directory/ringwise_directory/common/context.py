"""What every feature's store and handlers share: the database, the clock, history, events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from nats.aio.client import Client as NatsClient
from pymongo.asynchronous.database import AsyncDatabase
from ringwise.directory.v1 import devices_pb2, resolve_pb2
from ringwise_kit import subjects
from ringwise_kit.logs import get_logger

from ringwise_directory.common.records import Clock, Doc, utc_now
from ringwise_directory.history.store import HistoryStore

log = get_logger(__name__)


class Notifier:
    """Core-NATS change events for routing (it drops caches / applies PJSIP objects).

    Published after the write is stored. A crash in between loses the event, never the data:
    routing's caches expire and it re-applies the full device set periodically."""

    def __init__(self, nc: NatsClient | None) -> None:
        self._nc = nc

    async def number_changed(self, tenant_id: str, number: str, version: int) -> None:
        change = resolve_pb2.NumberChanged(tenant_id=tenant_id, number=number, version=version)
        await self._publish(subjects.number_changed(tenant_id), change.SerializeToString())

    async def sip_device_changed(self, device: devices_pb2.SipDevice, *, deleted: bool) -> None:
        change = devices_pb2.SipDeviceChanged(device=device, deleted=deleted)
        await self._publish(
            subjects.sip_device_changed(device.tenant_id), change.SerializeToString()
        )

    async def _publish(self, subject: str, payload: bytes) -> None:
        # The change is stored already: a NATS hiccup must not turn it into a failed request.
        if self._nc is None:
            return
        try:
            await self._nc.publish(subject, payload)
        except Exception as exc:
            log.warning("change_event_not_published", subject=subject, error=type(exc).__name__)


@dataclass
class Directory:
    db: AsyncDatabase[Doc]
    notifier: Notifier
    clock: Clock = utc_now
    sip_realm: str = "asterisk"
    history: HistoryStore = field(init=False)

    def __post_init__(self) -> None:
        self.history = HistoryStore(self.db, self.clock)

    def now(self) -> datetime:
        return self.clock()
