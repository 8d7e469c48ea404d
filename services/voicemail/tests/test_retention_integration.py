"""The retention job against real Mongo-wire and S3, driven by a controllable clock:
no message deleted early, none kept late, audio and metadata deleted together."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from pymongo import AsyncMongoClient
from ringwise_dev.infra import Infra
from ringwise_voicemail.mailbox.greetings import Greeting, GreetingKind
from ringwise_voicemail.mailbox.retention import Folder, RetentionPolicy
from ringwise_voicemail.mailbox.store import MailboxStore
from ringwise_voicemail.messages.audio import message_key
from ringwise_voicemail.messages.retention_job import RetentionJob
from ringwise_voicemail.messages.store import MessageStore
from voicemail_harness import s3_audio

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

_dbs = itertools.count()
T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


class Parts:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], infra: Infra) -> None:
        db = f"voicemail_retention_{next(_dbs)}"
        self.mailboxes = MailboxStore(client, db)
        self.messages = MessageStore(client, db)
        self.audio = s3_audio(infra, f"vm-retention-{db.rsplit('_', 1)[-1]}")
        self.refreshed: list[tuple[str, str]] = []
        self.job = RetentionJob(
            self.mailboxes,
            self.messages,
            self.audio,
            lambda tenant, user: self.refreshed.append((tenant, user)),
        )

    async def message(
        self, tenant: str, user: str, message_id: str, folder: Folder, received_at: datetime
    ) -> None:
        key = message_key(tenant, user, message_id)
        await self.audio.put(key, b"RIFF-audio-" + message_id.encode())
        stored = await self.messages.insert_once(
            {
                "_id": message_id,
                "tenant_id": tenant,
                "user_id": user,
                "folder": folder.value,
                "received_at": received_at,
                "duration_s": 5.0,
                "caller_number": "+441632960001",
                "caller_name": "",
                "urgent": False,
                "audio_key": key,
            }
        )
        assert stored

    async def present(self, tenant: str, user: str, message_id: str) -> tuple[bool, bool]:
        """(metadata there, audio there)."""
        doc = await self.messages.get(tenant, user, message_id)
        return doc is not None, await self.audio.exists(message_key(tenant, user, message_id))


@pytest_asyncio.fixture(loop_scope="session")
async def parts(infra: Infra) -> AsyncIterator[Parts]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        infra.endpoints.mongo_url, tz_aware=True
    )
    made = Parts(client, infra)
    await made.mailboxes.ensure_indexes()
    await made.messages.ensure_indexes()
    await made.audio.ensure_bucket()
    yield made
    made.audio.close()
    await client.close()


async def test_unsaved_messages_go_on_the_first_run_after_thirty_days_and_not_a_second_before(
    parts: Parts,
) -> None:
    await parts.mailboxes.put_settings("acme", "alice", {}, T0)
    await parts.message("acme", "alice", "m-new", Folder.NEW, T0)
    await parts.message("acme", "alice", "m-newer", Folder.NEW, T0 + timedelta(hours=1))
    await parts.message("acme", "alice", "m-saved", Folder.SAVED, T0)
    await parts.message("acme", "alice", "m-archived", Folder.ARCHIVED, T0)
    limit = T0 + timedelta(days=30)

    assert await parts.job.run_once(limit - timedelta(seconds=1)) == 0
    assert await parts.present("acme", "alice", "m-new") == (True, True)
    assert parts.refreshed == []

    assert await parts.job.run_once(limit) == 1
    assert await parts.present("acme", "alice", "m-new") == (False, False)
    assert await parts.present("acme", "alice", "m-newer") == (True, True)
    assert parts.refreshed == [("acme", "alice")]

    assert await parts.job.run_once(limit + timedelta(hours=1)) == 1
    assert await parts.present("acme", "alice", "m-newer") == (False, False)

    # Saved (no saved limit by default) and archived messages stay, years on.
    assert await parts.job.run_once(T0 + timedelta(days=3650)) == 0
    assert await parts.present("acme", "alice", "m-saved") == (True, True)
    assert await parts.present("acme", "alice", "m-archived") == (True, True)


async def test_each_tenant_keeps_messages_for_its_own_retention(parts: Parts) -> None:
    await parts.mailboxes.put_settings("short", "bob", {}, T0)
    await parts.mailboxes.put_settings("long", "carol", {}, T0)
    await parts.mailboxes.set_retention("short", RetentionPolicy(unsaved_days=7, saved_days=14))
    await parts.mailboxes.set_retention("long", RetentionPolicy(unsaved_days=60))
    await parts.message("short", "bob", "s-new", Folder.NEW, T0)
    await parts.message("short", "bob", "s-saved", Folder.SAVED, T0)
    await parts.message("short", "bob", "s-archived", Folder.ARCHIVED, T0)
    await parts.message("long", "carol", "l-new", Folder.NEW, T0)

    day = timedelta(days=1)
    assert await parts.job.run_once(T0 + 7 * day - timedelta(microseconds=1)) == 0
    assert await parts.job.run_once(T0 + 7 * day) == 1
    assert await parts.present("short", "bob", "s-new") == (False, False)
    assert await parts.present("short", "bob", "s-saved") == (True, True)

    assert await parts.job.run_once(T0 + 14 * day - timedelta(seconds=1)) == 0
    assert await parts.job.run_once(T0 + 14 * day) == 1
    assert await parts.present("short", "bob", "s-saved") == (False, False)

    # 30 days is the default, not this tenant's: carol's message is still there.
    assert await parts.job.run_once(T0 + 30 * day) == 0
    assert await parts.present("long", "carol", "l-new") == (True, True)
    assert await parts.job.run_once(T0 + 60 * day) == 1
    assert await parts.present("long", "carol", "l-new") == (False, False)
    assert await parts.present("short", "bob", "s-archived") == (True, True)


async def test_a_temporary_greeting_is_deleted_after_its_day_in_the_users_time_zone(
    parts: Parts,
) -> None:
    await parts.mailboxes.put_settings("tz", "dan", {"time_zone": "America/New_York"}, T0)
    key = "tz/voicemail/dan/greetings/temporary-1.wav"
    await parts.audio.put(key, b"RIFF-greeting")
    day = date(2026, 10, 1)
    await parts.mailboxes.set_greeting("tz", "dan", Greeting(GreetingKind.TEMPORARY, key, T0, day))
    end = datetime(2026, 10, 2, 4, 0, tzinfo=UTC)  # midnight in New York (EDT)

    await parts.job.run_once(end - timedelta(seconds=1))
    mailbox = await parts.mailboxes.get("tz", "dan")
    assert mailbox is not None and GreetingKind.TEMPORARY in mailbox.greetings
    assert await parts.audio.exists(key)

    await parts.job.run_once(end)
    mailbox = await parts.mailboxes.get("tz", "dan")
    assert mailbox is not None and GreetingKind.TEMPORARY not in mailbox.greetings
    assert not await parts.audio.exists(key)
