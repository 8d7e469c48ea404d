"""StoredProfiles: the ProfileSource call handling reads (source.py), and the writes the API
and feature codes make.

Reads (`routing_for`) are cheap per call: each routing instance keeps the stored profile and
the tenant policy in memory. Every write is announced on
`ringwise.v1.routing.<tenant>.profile_changed` (core NATS), and every instance drops its copy
on the notice; a TTL (RINGWISE_PROFILE_CACHE_TTL_S) is the backstop should a notice be lost.
A per-tenant generation counter keeps a read that raced a notice out of the cache. If Mongo
cannot be read, a call uses the last copy it had (however old) rather than fail.

Writes are read-modify-write on the stored version: `change()` retries on a conflict (a
feature code must not fail because the user's app saved at the same moment); the API passes
the version of the client's If-Match and gets VersionConflict (412) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from prometheus_client import Counter
from pymongo.errors import PyMongoError
from ringwise.directory.v1 import resolve_pb2
from ringwise.routing.v1 import profiles_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.logs import get_logger

from ringwise_routing.plans.model import BUILTIN_STATE_NAMES, RoutingProfile
from ringwise_routing.plans.validation import FieldError, divert_targets, find_divert_loops
from ringwise_routing.profiles import document
from ringwise_routing.profiles.document import Doc, DocumentInvalid, TrunkDial
from ringwise_routing.profiles.source import ProfileChange, UserReply, UserRouting
from ringwise_routing.profiles.store import ProfileStore, Stored, VersionConflict

log = get_logger(__name__)

LOOKUPS = Counter(
    "ringwise_routing_profile_lookups_total",
    "Routing profile reads for calls, by where they were answered from",
    ["source"],  # cache | store | stale
)
CHANGES = Counter("ringwise_routing_profile_changes_total", "Stored profile changes", ["origin"])

CHANGE_ATTEMPTS = 5
CACHE_MAX_ENTRIES = 50_000


class DirectoryUnavailable(Exception):
    """The directory did not answer a user lookup."""


@dataclass(frozen=True)
class Changed:
    """A stored profile after a write."""

    doc: Doc
    version: int
    profile: RoutingProfile


class StoredProfiles:
    def __init__(
        self,
        nc: NatsClient,
        store: ProfileStore,
        trunk_dial: TrunkDial,
        *,
        ttl_s: float = 30.0,
        directory_timeout_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nc = nc
        self.store = store
        self.trunk_dial = trunk_dial
        self._ttl_s = ttl_s
        self._directory_timeout_s = directory_timeout_s
        self._clock = clock
        self._profiles: dict[tuple[str, str], tuple[float, Stored]] = {}
        self._policies: dict[str, tuple[float, Stored]] = {}
        self._generation: dict[str, int] = {}
        self._subscription: Subscription | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        async def changed(msg: Msg) -> None:
            notice = profiles_pb2.ProfileChanged()
            try:
                notice.ParseFromString(msg.data)
            except DecodeError:
                log.warning("profile_change_undecodable", subject=msg.subject)
                return
            self.forget(notice.tenant_id, notice.user_id)

        self._subscription = await self._nc.subscribe(subjects.ROUTING_PROFILE_CHANGES, cb=changed)

    async def close(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
            self._subscription = None

    # -- the cache ---------------------------------------------------------------------------

    def forget(self, tenant_id: str, user_id: str = "") -> None:
        """Drop cached copies: one user's profile, or (user_id "") the tenant's policy."""
        self._generation[tenant_id] = self._generation.get(tenant_id, 0) + 1
        if user_id:
            self._profiles.pop((tenant_id, user_id), None)
        else:
            self._policies.pop(tenant_id, None)

    def _trim(self) -> None:
        if len(self._profiles) + len(self._policies) < CACHE_MAX_ENTRIES:
            return
        now = self._clock()
        for cache in (self._profiles, self._policies):
            for key in [k for k, (expires, _) in cache.items() if expires <= now]:
                del cache[key]  # type: ignore[arg-type]
        if len(self._profiles) >= CACHE_MAX_ENTRIES:
            self._profiles.clear()

    async def _cached_profile(self, tenant_id: str, user_id: str) -> Stored:
        key = (tenant_id, user_id)
        cached = self._profiles.get(key)
        if cached is not None and cached[0] > self._clock():
            LOOKUPS.labels("cache").inc()
            return cached[1]
        generation = self._generation.get(tenant_id, 0)
        try:
            stored = await self.store.get_profile(tenant_id, user_id)
        except PyMongoError as exc:
            if cached is None:
                raise
            LOOKUPS.labels("stale").inc()
            log.warning(
                "profile_store_unavailable_stale_copy", tenant_id=tenant_id, error=repr(exc)
            )
            return cached[1]
        LOOKUPS.labels("store").inc()
        if self._generation.get(tenant_id, 0) == generation:
            self._trim()
            self._profiles[key] = (self._clock() + self._ttl_s, stored)
        return stored

    async def _cached_policy(self, tenant_id: str) -> Stored:
        cached = self._policies.get(tenant_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        generation = self._generation.get(tenant_id, 0)
        try:
            stored = await self.store.get_policy(tenant_id)
        except PyMongoError as exc:
            if cached is None:
                raise
            log.warning("policy_store_unavailable_stale_copy", tenant_id=tenant_id, error=repr(exc))
            return cached[1]
        if self._generation.get(tenant_id, 0) == generation:
            self._trim()
            self._policies[tenant_id] = (self._clock() + self._ttl_s, stored)
        return stored

    # -- ProfileSource -----------------------------------------------------------------------

    async def routing_for(self, user: UserReply) -> UserRouting:
        if not user.tenant_id or not user.user_id:
            return document.user_routing(user, None, None, self.trunk_dial)
        profile, policy = await asyncio.gather(
            self._cached_profile(user.tenant_id, user.user_id),
            self._cached_policy(user.tenant_id),
        )
        return document.user_routing(user, profile.doc, policy.doc, self.trunk_dial)

    async def change(
        self, user: UserReply, change: ProfileChange, *, origin: str
    ) -> RoutingProfile:
        """A user's own change (feature code, app): retried on a concurrent write. Raises
        DocumentInvalid when the result breaks a rule (nothing is stored then)."""
        for attempt in range(CHANGE_ATTEMPTS):
            try:
                return (await self.apply(user, change, origin=origin)).profile
            except VersionConflict:
                log.info("profile_change_conflict_retry", user_id=user.user_id, attempt=attempt)
        raise VersionConflict(f"profile of {user.user_id} kept changing; gave up")

    # -- writes ------------------------------------------------------------------------------

    async def apply(
        self,
        user: UserReply,
        change: ProfileChange,
        *,
        origin: str,
        if_version: int | None = None,
    ) -> Changed:
        """One read-modify-write of the user's stored profile (the default one when none is
        stored). `if_version`: the version the client read (VersionConflict if it is stale)."""
        stored = await self.store.get_profile(user.tenant_id, user.user_id)
        if if_version is not None and if_version != stored.version:
            raise VersionConflict(f"profile is at version {stored.version}, not {if_version}")
        before = stored.doc or document.default_document(user, self.trunk_dial)
        profile, _ = document.profile_from_document(user.tenant_id, user, before, self.trunk_dial)
        after = document.document_from_profile(change(profile), before)
        return await self.save(user, after, stored.version, origin=origin, check_devices=False)

    async def save(
        self,
        user: UserReply,
        doc: Doc,
        expected_version: int,
        *,
        origin: str,
        check_devices: bool = True,
    ) -> Changed:
        """Check `doc` for `user` (field rules, devices, divert loops across the tenant),
        store it over `expected_version` and announce it."""
        policy = await self.store.get_policy(user.tenant_id)
        errors: list[FieldError] = document.unknown_devices(doc, user) if check_devices else []
        errors += document.check_profile(user, doc, policy.doc, self.trunk_dial)
        if not errors:
            errors += await self._divert_loops(user, doc)
        if errors:
            raise DocumentInvalid(errors)
        version = await self.store.put_profile(
            user.tenant_id, user.user_id, doc, expected_version, origin
        )
        CHANGES.labels(origin).inc()
        await self._announce(user.tenant_id, user.user_id, version, origin)
        profile, _ = document.profile_from_document(user.tenant_id, user, doc, self.trunk_dial)
        return Changed(doc, version, profile)

    async def remove(self, user: UserReply, expected_version: int, *, origin: str) -> int:
        """Forget the user's profile (the default routing applies again)."""
        if expected_version == 0:
            return 0
        version = await self.store.put_profile(
            user.tenant_id, user.user_id, None, expected_version, origin
        )
        CHANGES.labels(origin).inc()
        await self._announce(user.tenant_id, user.user_id, version, origin)
        return version

    async def save_policy(
        self, tenant_id: str, doc: Doc, expected_version: int, *, origin: str
    ) -> int:
        """Store the tenant's routing policy; a custom state that profiles still use cannot
        be removed (their calls would find no such state)."""
        custom = set(doc["custom_states"])
        errors: list[FieldError] = []
        profiles = await self.store.tenant_profiles(tenant_id)
        for user_id, profile in sorted(profiles.items()):
            missing = sorted(
                name
                for name in profile["states"]
                if name not in BUILTIN_STATE_NAMES and name not in custom
            )
            if missing:
                errors.append(
                    FieldError("custom_states", f"{', '.join(missing)} still used by {user_id}")
                )
        if errors:
            raise DocumentInvalid(errors[:20])
        version = await self.store.put_policy(tenant_id, doc, expected_version, origin)
        CHANGES.labels(origin).inc()
        await self._announce(tenant_id, "", version, origin)
        return version

    async def _divert_loops(self, user: UserReply, doc: Doc) -> list[FieldError]:
        mine = document.divert_view(user.tenant_id, user.user_id, doc)
        if not divert_targets(mine):
            return []
        others = await self.store.tenant_profiles(user.tenant_id)
        views = {
            uid: document.divert_view(user.tenant_id, uid, other)
            for uid, other in others.items()
            if uid != user.user_id
        }
        views[user.user_id] = mine
        return find_divert_loops(views, [user.user_id])

    async def _announce(self, tenant_id: str, user_id: str, version: int, origin: str) -> None:
        self.forget(tenant_id, user_id)
        notice = profiles_pb2.ProfileChanged(
            tenant_id=tenant_id, user_id=user_id, version=version, origin=origin
        )
        try:
            await self._nc.publish(subjects.profile_changed(tenant_id), notice.SerializeToString())
        except Exception as exc:  # best effort: the TTL is the backstop
            log.warning("profile_change_not_announced", tenant_id=tenant_id, error=repr(exc))

    # -- reads for the API -------------------------------------------------------------------

    async def stored_profile(self, tenant_id: str, user_id: str) -> Stored:
        return await self.store.get_profile(tenant_id, user_id)

    async def stored_policy(self, tenant_id: str) -> Stored:
        return await self.store.get_policy(tenant_id)

    async def resolve_user(self, tenant_id: str, user_id: str) -> UserReply | None:
        """The directory's view of a user (devices, numbers), or None for no such user."""
        try:
            reply = await bus.request(
                self._nc,
                subjects.DIRECTORY_RESOLVE_USER,
                resolve_pb2.ResolveUserRequest(tenant_id=tenant_id, user_id=user_id),
                resolve_pb2.ResolveNumberReply,
                timeout_s=self._directory_timeout_s,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, bus.RemoteError) as exc:
            raise DirectoryUnavailable(repr(exc)) from exc
        if reply.status != resolve_pb2.ResolveNumberReply.STATUS_FOUND:
            return None
        if reply.tenant_id != tenant_id or reply.user_id != user_id:
            # Never act on another tenant's user, whatever the directory says.
            log.error("resolve_user_mismatch", tenant_id=tenant_id, user_id=user_id)
            return None
        return reply
