"""Which key seals a tenant's recordings: the platform key, or the tenant's own public key.

Tenant settings live in the recording service's Mongo (collection tenant_settings):
`encryption: {"mode": "platform" | "customer", "public_key_pem": ..., "key_id": ...}`.
"""

from __future__ import annotations

from ringwise_kit.bus import PermanentError

from ringwise_recording.archive.envelope import (
    MODE_CUSTOMER,
    CustomerKey,
    PlatformKey,
    WrappingKey,
)
from ringwise_recording.recordings.store import RecordingStore


class TenantKeys:
    def __init__(self, store: RecordingStore, platform: PlatformKey | None) -> None:
        self._store = store
        self.platform = platform

    async def wrapping_key(self, tenant_id: str) -> WrappingKey:
        settings = await self._store.tenant_settings(tenant_id)
        encryption = settings.get("encryption") or {}
        if encryption.get("mode") == MODE_CUSTOMER:
            return CustomerKey(encryption["key_id"], encryption["public_key_pem"].encode())
        if self.platform is None:
            raise PermanentError(
                f"tenant {tenant_id} uses platform keys; RINGWISE_RECORDING_PLATFORM_KEY is unset"
            )
        return self.platform
