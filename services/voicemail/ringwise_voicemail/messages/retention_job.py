"""The retention job: deletes messages past their tenant's retention, audio and metadata
together, then refreshes the owners' message-waiting counts. The clock is a parameter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from prometheus_client import Counter
from ringwise_kit.logs import get_logger

from ringwise_voicemail.mailbox.greetings import GreetingKind, expired_temporaries
from ringwise_voicemail.mailbox.retention import Folder
from ringwise_voicemail.mailbox.store import MailboxStore
from ringwise_voicemail.messages.audio import AudioStore
from ringwise_voicemail.messages.store import MessageStore

log = get_logger(__name__)

EXPIRED = Counter("ringwise_voicemail_expired_total", "Messages deleted by retention")


@dataclass
class RetentionJob:
    mailboxes: MailboxStore
    messages: MessageStore
    audio: AudioStore
    # Called per user whose counts changed (MWI); errors are logged, never fatal to the job.
    counts_changed: Callable[[str, str], object]

    async def run_once(self, now: datetime) -> int:
        """Delete every message due at `now`; returns how many were deleted."""
        deleted = 0
        for tenant_id in await self.mailboxes.tenants_with_mailboxes():
            policy = await self.mailboxes.retention_of(tenant_id)
            touched: set[str] = set()
            while True:
                due = await self.messages.due_for_deletion(tenant_id, policy, now)
                # The query is only a bound; the pure policy has the last word.
                due = [d for d in due if policy.is_due(Folder(d["folder"]), d["received_at"], now)]
                if not due:
                    break
                for doc in due:
                    # Audio first: a crash in between leaves metadata that the next run
                    # finds again, never audio nobody can reach.
                    await self.audio.delete(doc["audio_key"])
                    await self.messages.delete(tenant_id, doc["user_id"], doc["_id"])
                    touched.add(doc["user_id"])
                    deleted += 1
                    EXPIRED.inc()
            await self._expire_temporary_greetings(tenant_id, now)
            for user_id in sorted(touched):
                try:
                    result = self.counts_changed(tenant_id, user_id)
                    if asyncio.iscoroutine(result):
                        await result
                except Exception as exc:
                    log.warning("mwi_refresh_failed", user_id=user_id, error=str(exc))
        if deleted:
            log.info("retention_deleted", count=deleted)
        return deleted

    async def _expire_temporary_greetings(self, tenant_id: str, now: datetime) -> None:
        """A temporary greeting is gone after its day (it already stopped playing then)."""
        for mailbox in await self.mailboxes.with_greeting(tenant_id, GreetingKind.TEMPORARY):
            for greeting in expired_temporaries(mailbox.greetings, now, mailbox.time_zone):
                await self.mailboxes.remove_greeting(tenant_id, mailbox.user_id, greeting.kind)
                await self.audio.delete(greeting.audio_key)
                log.info("temporary_greeting_expired", user_id=mailbox.user_id)


def retention_ctx(
    job: Callable[[web.Application], RetentionJob],
    interval_s: float,
    clock: Callable[[], datetime],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        runner = job(app)

        async def loop() -> None:
            while True:
                try:
                    await runner.run_once(clock())
                except Exception:
                    log.exception("retention_run_failed")
                await asyncio.sleep(interval_s)

        task = asyncio.create_task(loop(), name="voicemail-retention")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx
