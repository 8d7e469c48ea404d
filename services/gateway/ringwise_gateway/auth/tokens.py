"""Bearer and refresh tokens: HS256 JWTs (PyJWT), pure functions, no I/O.

An access token carries the principal (subject, tenant, role, email) and lives minutes; a
refresh token carries only the subject and a token id (jti) that the gateway keeps in Redis,
so a refresh token is single-use (rotated on every refresh) and can be revoked at logout.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import jwt
from ringwise.api.v1 import api_pb2
from ringwise_kit.api import ROLE_NAMES, ROLES_BY_NAME

ALGORITHM = "HS256"
ISSUER = "ringwise-gateway"
ACCESS = "access"
REFRESH = "refresh"
MIN_KEY_BYTES = 32


class TokenError(Exception):
    """The token is malformed, forged, expired or of the wrong kind."""


@dataclass(frozen=True)
class RefreshClaims:
    subject_id: str
    token_id: str
    expires_at: int


def check_signing_key(key: str) -> None:
    if len(key.encode()) < MIN_KEY_BYTES:
        raise ValueError(
            f"RINGWISE_TOKEN_SIGNING_KEY must be at least {MIN_KEY_BYTES} bytes of random data"
        )


def issue_access(principal: api_pb2.Principal, key: str, now: int, ttl_s: int) -> str:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "typ": ACCESS,
        "sub": principal.subject_id,
        "tid": principal.tenant_id,
        "role": ROLE_NAMES[principal.role],
        "email": principal.email,
        "amr": principal.auth_method,
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def issue_refresh(subject_id: str, key: str, now: int, ttl_s: int) -> tuple[str, RefreshClaims]:
    claims = RefreshClaims(subject_id, secrets.token_urlsafe(16), now + ttl_s)
    token = jwt.encode(
        {
            "iss": ISSUER,
            "typ": REFRESH,
            "sub": subject_id,
            "jti": claims.token_id,
            "iat": now,
            "exp": claims.expires_at,
        },
        key,
        algorithm=ALGORITHM,
    )
    return token, claims


def _decode(token: str, key: str, kind: str, now: int) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={
                "require": ["exp", "iat", "sub", "typ"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise TokenError(str(exc)) from None
    if claims.get("typ") != kind:
        raise TokenError(f"not an {kind} token")
    # Expiry checked against the caller's clock, so tests can control time.
    if int(claims["exp"]) <= now:
        raise TokenError("token expired")
    return claims


def verify_access(token: str, key: str, now: int) -> api_pb2.Principal:
    claims = _decode(token, key, ACCESS, now)
    role = ROLES_BY_NAME.get(str(claims.get("role")))
    if role is None:
        raise TokenError("unknown role")
    return api_pb2.Principal(
        subject_id=str(claims["sub"]),
        tenant_id=str(claims.get("tid", "")),
        role=role,
        email=str(claims.get("email", "")),
        auth_method=str(claims.get("amr", "")),
    )


def verify_refresh(token: str, key: str, now: int) -> RefreshClaims:
    claims = _decode(token, key, REFRESH, now)
    if not claims.get("jti"):
        raise TokenError("refresh token without id")
    return RefreshClaims(str(claims["sub"]), str(claims["jti"]), int(claims["exp"]))
