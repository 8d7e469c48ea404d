"""Who is calling: bearer tokens, API keys, and the login/refresh exchanges with directory.

Directory owns credentials (argon2 hashes, API keys, lockout); the gateway owns tokens. A
refresh token is single-use: its id is kept in Redis until it is used or revoked.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
import redis.asyncio as aioredis
from nats.aio.client import Client as NatsClient
from ringwise.api.v1 import api_pb2
from ringwise.directory.v1 import auth_pb2
from ringwise_kit import bus, subjects
from ringwise_kit.api import ApiError

from ringwise_gateway.auth import tokens

Status = auth_pb2.AuthenticateReply.Status
REFRESH_PREFIX = "gw:refresh:"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    principal: api_pb2.Principal


class Identity:
    def __init__(
        self,
        nc: NatsClient,
        redis: aioredis.Redis,
        signing_key: str,
        *,
        access_ttl_s: int,
        refresh_ttl_s: int,
        api_key_cache_s: float,
        directory_timeout_s: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        tokens.check_signing_key(signing_key)
        self.nc = nc
        self.redis = redis
        self.key = signing_key
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.api_key_cache_s = api_key_cache_s
        self.directory_timeout_s = directory_timeout_s
        self.clock = clock
        self._api_keys: dict[str, tuple[float, api_pb2.Principal]] = {}

    def now(self) -> int:
        return int(self.clock())

    async def _directory(self, req: auth_pb2.AuthenticateRequest) -> auth_pb2.AuthenticateReply:
        try:
            return await bus.request(
                self.nc,
                subjects.DIRECTORY_AUTHENTICATE,
                req,
                auth_pb2.AuthenticateReply,
                timeout_s=self.directory_timeout_s,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, bus.RemoteError):
            raise ApiError(
                503,
                "Service Unavailable",
                "sign-in is unavailable, retry shortly",
                headers={"Retry-After": "2"},
            ) from None

    async def principal_from_bearer(self, token: str) -> api_pb2.Principal:
        try:
            return tokens.verify_access(token, self.key, self.now())
        except tokens.TokenError:
            raise unauthorized("the bearer token is invalid or expired") from None

    async def principal_from_api_key(self, api_key: str) -> api_pb2.Principal:
        digest = hashlib.sha256(api_key.encode()).hexdigest()
        cached = self._api_keys.get(digest)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        reply = await self._directory(auth_pb2.AuthenticateRequest(api_key=api_key))
        if reply.status != Status.STATUS_OK:
            self._api_keys.pop(digest, None)
            raise unauthorized("the API key is invalid or revoked")
        if len(self._api_keys) > 10_000:
            self._api_keys.clear()
        self._api_keys[digest] = (time.monotonic() + self.api_key_cache_s, reply.principal)
        return reply.principal

    async def login(
        self, email: str, password: str, new_password: str, client_address: str
    ) -> TokenPair:
        reply = await self._directory(
            auth_pb2.AuthenticateRequest(
                password=auth_pb2.PasswordCredential(
                    email=email, password=password, new_password=new_password
                ),
                client_address=client_address,
            )
        )
        _raise_for(reply)
        return await self._issue(reply.principal)

    async def refresh(self, refresh_token: str) -> TokenPair:
        try:
            claims = tokens.verify_refresh(refresh_token, self.key, self.now())
        except tokens.TokenError:
            raise unauthorized("the refresh token is invalid or expired") from None
        # Single use: whoever presents it first gets the new pair.
        owner = await self.redis.getdel(REFRESH_PREFIX + claims.token_id)
        owner_id = owner.decode() if isinstance(owner, bytes) else owner
        if owner_id != claims.subject_id:
            raise unauthorized("the refresh token was already used or revoked")
        reply = await self._directory(auth_pb2.AuthenticateRequest(user_id=claims.subject_id))
        _raise_for(reply)
        return await self._issue(reply.principal)

    async def logout(self, refresh_token: str) -> None:
        try:
            claims = tokens.verify_refresh(refresh_token, self.key, self.now())
        except tokens.TokenError:
            return  # nothing to revoke
        await self.redis.delete(REFRESH_PREFIX + claims.token_id)

    async def _issue(self, principal: api_pb2.Principal) -> TokenPair:
        now = self.now()
        access = tokens.issue_access(principal, self.key, now, self.access_ttl_s)
        refresh, claims = tokens.issue_refresh(
            principal.subject_id, self.key, now, self.refresh_ttl_s
        )
        await self.redis.set(
            REFRESH_PREFIX + claims.token_id, principal.subject_id, ex=self.refresh_ttl_s
        )
        return TokenPair(access, refresh, self.access_ttl_s, principal)


def unauthorized(detail: str) -> ApiError:
    return ApiError(
        401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="ringwise"'}
    )


def _raise_for(reply: auth_pb2.AuthenticateReply) -> None:
    status = reply.status
    if status == Status.STATUS_OK:
        return
    if status == Status.STATUS_LOCKED:
        retry = max(1, reply.retry_after_s)
        raise ApiError(
            429,
            "Too Many Requests",
            f"too many failed sign-ins; try again in {retry} s",
            headers={"Retry-After": str(retry)},
        )
    if status == Status.STATUS_MUST_CHANGE_PASSWORD:
        raise ApiError(
            403,
            "Password Change Required",
            "this is a temporary password: sign in again with new_password set",
            errors=[{"field": "body/new_password", "message": "a new password is required"}],
        )
    if status == Status.STATUS_WEAK_PASSWORD:
        raise ApiError(
            422,
            "Unprocessable Content",
            reply.detail or "the new password is too weak",
            errors=[{"field": "body/new_password", "message": reply.detail or "too weak"}],
        )
    if status == Status.STATUS_DISABLED:
        raise ApiError(403, "Forbidden", "this account is disabled")
    raise unauthorized("wrong email or password")
