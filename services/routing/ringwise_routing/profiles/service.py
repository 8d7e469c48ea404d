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
from typing import Any

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

from ringwise_routing.plans.model import RoutingProfile
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
MAX_EXTENSION_DIGITS = 6
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
        # (tenant, user) -> the stored records and directory answer it was built from.
        self._built: dict[tuple[str, str], tuple[Stored, Stored, bytes, UserRouting]] = {}
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
        """Keep memory bounded: drop expired copies once there are many."""
        if len(self._profiles) + len(self._policies) < CACHE_MAX_ENTRIES:
            return
        now = self._clock()
        self._profiles = {k: v for k, v in self._profiles.items() if v[0] > now}
        self._policies = {k: v for k, v in self._policies.items() if v[0] > now}
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
        key = (user.tenant_id, user.user_id)
        profile = await self._cached_profile(user.tenant_id, user.user_id)
        policy = await self._cached_policy(user.tenant_id)
        # The same stored records and the same directory answer give the same routing: keep
        # the built one (building it costs more than the lookups).
        fingerprint = user.SerializeToString(deterministic=True)
        built = self._built.get(key)
        if (
            built is not None
            and built[0] is profile
            and built[1] is policy
            and built[2] == fingerprint
        ):
            return built[3]
        routing = document.user_routing(user, profile.doc, policy.doc, self.trunk_dial)
        if len(self._built) >= CACHE_MAX_ENTRIES:
            self._built.clear()
        self._built[key] = (profile, policy, fingerprint, routing)
        return routing

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
        actor: str = "",
    ) -> Changed:
        """One read-modify-write of the user's stored profile (the default one when none is
        stored). `if_version`: the version the client read (VersionConflict if it is stale)."""
        stored = await self.store.get_profile(user.tenant_id, user.user_id)
        if if_version is not None and if_version != stored.version:
            raise VersionConflict(f"profile is at version {stored.version}, not {if_version}")
        before = stored.doc or document.default_document(user, self.trunk_dial)
        profile, _ = document.profile_from_document(user.tenant_id, user, before, self.trunk_dial)
        after = document.document_from_profile(change(profile), before)
        return await self.save(
            user, after, stored.version, origin=origin, check_references=False, actor=actor
        )

    async def save(
        self,
        user: UserReply,
        doc: Doc,
        expected_version: int,
        *,
        origin: str,
        check_references: bool = True,
        actor: str = "",
    ) -> Changed:
        """Check `doc` for `user` (field rules, divert loops across the tenant and, with
        `check_references`, that its devices, users and teams exist), store it over
        `expected_version` and announce it. A change by phone does not check references: a
        device deleted in the directory stays in the profile (DELETED) until it is edited."""
        policy = await self.store.get_policy(user.tenant_id)
        errors: list[FieldError] = []
        if check_references:
            errors += document.unknown_devices(doc, user)
            errors += await self._unknown_targets(user.tenant_id, doc)
        errors += document.check_profile(user, doc, policy.doc, self.trunk_dial)
        if not errors:
            errors += await self._divert_loops(user, doc)
        if errors:
            raise DocumentInvalid(errors)
        version = await self.store.put_profile(
            user.tenant_id, user.user_id, doc, expected_version, origin, actor
        )
        CHANGES.labels(origin).inc()
        await self._announce(user.tenant_id, user.user_id, version, origin, actor)
        profile, _ = document.profile_from_document(user.tenant_id, user, doc, self.trunk_dial)
        return Changed(doc, version, profile)

    async def remove(
        self, user: UserReply, expected_version: int, *, origin: str, actor: str = ""
    ) -> int:
        """Forget the user's profile (the default routing applies again)."""
        if expected_version == 0:
            return 0
        version = await self.store.put_profile(
            user.tenant_id, user.user_id, None, expected_version, origin, actor
        )
        CHANGES.labels(origin).inc()
        await self._announce(user.tenant_id, user.user_id, version, origin, actor)
        return version

    async def save_policy(
        self, tenant_id: str, doc: Doc, expected_version: int, *, origin: str, actor: str = ""
    ) -> int:
        """Store the tenant's routing policy; a custom state that profiles still use cannot
        be removed (their calls would find no such state)."""
        current = await self.store.get_policy(tenant_id)
        if current.version != expected_version:
            raise VersionConflict(f"policy is at version {current.version}")
        removed = set((current.doc or {}).get("custom_states") or ()) - set(doc["custom_states"])
        users = await self.store.users_of_states(tenant_id, removed)
        errors = [
            FieldError("custom_states", f"{', '.join(states)} still used by {user_id}")
            for user_id, states in sorted(users.items())
        ]
        if errors:
            raise DocumentInvalid(errors[:20])
        version = await self.store.put_policy(tenant_id, doc, expected_version, origin, actor)
        CHANGES.labels(origin).inc()
        await self._announce(tenant_id, "", version, origin, actor)
        return version

    async def _unknown_targets(self, tenant_id: str, doc: Doc) -> list[FieldError]:
        """Delegates, and the users and teams calls are diverted to, that the directory does
        not know in this tenant."""
        users, teams = document.divert_references(doc)
        user_ids = sorted({target for _, target in users})
        team_ids = sorted({target for _, target in teams})
        found_users = await asyncio.gather(*(self.resolve_user(tenant_id, u) for u in user_ids))
        found_teams = await asyncio.gather(*(self._team_exists(tenant_id, t) for t in team_ids))
        missing_users = {u for u, found in zip(user_ids, found_users, strict=True) if not found}
        missing_teams = {t for t, found in zip(team_ids, found_teams, strict=True) if not found}
        return [
            FieldError(path, f"no active user {target} in this tenant")
            for path, target in users
            if target in missing_users
        ] + [
            FieldError(path, f"no team {target} in this tenant")
            for path, target in teams
            if target in missing_teams
        ]

    async def _team_exists(self, tenant_id: str, team_id: str) -> bool:
        try:
            reply = await bus.request(
                self._nc,
                subjects.DIRECTORY_RESOLVE_TEAM,
                resolve_pb2.ResolveTeamRequest(tenant_id=tenant_id, team_id=team_id),
                resolve_pb2.ResolveTeamReply,
                timeout_s=self._directory_timeout_s,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, bus.RemoteError) as exc:
            raise DirectoryUnavailable(repr(exc)) from exc
        return (
            reply.status == resolve_pb2.ResolveNumberReply.STATUS_FOUND
            and reply.tenant_id == tenant_id
        )

    async def _divert_loops(self, user: UserReply, doc: Doc) -> list[FieldError]:
        mine = document.divert_view(user.tenant_id, user.user_id, doc)
        if not divert_targets(mine):
            return []
        others = await self.store.diverting_profiles(user.tenant_id)
        views = {
            uid: document.divert_view(user.tenant_id, uid, other)
            for uid, other in others.items()
            if uid != user.user_id
        }
        views[user.user_id] = mine
        return find_divert_loops(views, [user.user_id])

    async def _announce(
        self, tenant_id: str, user_id: str, version: int, origin: str, actor: str = ""
    ) -> None:
        # The audit line: who changed whose routing, never what (secrets live in it).
        log.info(
            "routing_settings_changed",
            tenant_id=tenant_id,
            user_id=user_id or None,
            version=version,
            origin=origin,
            actor=actor or None,
        )
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

    async def internal_caller(self, tenant_id: str, number: str) -> str | None:
        """The tenant's user a caller number (E.164) or extension belongs to, if any (explain
        treats their calls as internal). Any failure: None (an outside caller)."""
        request: Any
        if number.startswith("+"):
            subject, request = (
                subjects.DIRECTORY_RESOLVE_NUMBER,
                resolve_pb2.ResolveNumberRequest(number=number),
            )
        elif number.isdigit() and len(number) <= MAX_EXTENSION_DIGITS:
            subject, request = (
                subjects.DIRECTORY_RESOLVE_USER,
                resolve_pb2.ResolveUserRequest(tenant_id=tenant_id, extension=number),
            )
        else:
            return None
        try:
            reply = await bus.request(
                self._nc,
                subject,
                request,
                resolve_pb2.ResolveNumberReply,
                timeout_s=self._directory_timeout_s,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, bus.RemoteError):
            return None
        if reply.status == resolve_pb2.ResolveNumberReply.STATUS_FOUND and (
            reply.tenant_id == tenant_id
        ):
            return reply.user_id or None
        return None

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
