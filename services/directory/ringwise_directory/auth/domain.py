"""Pure rules: password policy, temporary passwords, lockout backoff, API key format."""

from __future__ import annotations

import hashlib
import secrets
import string

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 128
LOCKOUT_AFTER_FAILURES = 5
LOCKOUT_BASE_S = 30
LOCKOUT_MAX_S = 3600
API_KEY_PREFIX = "rwk_"
API_KEY_ROLES = ("tenant_admin", "supervisor", "compliance_officer")


def password_problem(password: str, email: str = "") -> str | None:
    """Why a new password is refused, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"at most {MAX_PASSWORD_LENGTH} characters"
    classes = sum(
        (
            any(c.islower() for c in password),
            any(c.isupper() for c in password),
            any(c.isdigit() for c in password),
            any(not c.isalnum() for c in password),
        )
    )
    if classes < 3:
        return "use at least three of: lower-case, upper-case, digits, symbols"
    if len(set(password)) < 5:
        return "too repetitive"
    local_part = email.split("@", 1)[0].lower()
    if len(local_part) >= 4 and local_part in password.lower():
        return "must not contain the username"
    return None


def temporary_password() -> str:
    """16 characters meeting the policy; the user must replace it at first login."""
    alphabet = string.ascii_letters + string.digits
    while True:
        candidate = (
            "".join(secrets.choice(alphabet) for _ in range(14))
            + "-"
            + secrets.choice(string.digits)
        )
        if password_problem(candidate) is None:
            return candidate


def lockout_seconds(failures: int) -> int:
    """0 below the threshold; then 30 s, doubling with each further failure, capped at 1 h."""
    if failures < LOCKOUT_AFTER_FAILURES:
        return 0
    return int(min(LOCKOUT_BASE_S * 2 ** (failures - LOCKOUT_AFTER_FAILURES), LOCKOUT_MAX_S))


def new_api_key(key_id: str) -> str:
    return f"{API_KEY_PREFIX}{key_id}.{secrets.token_urlsafe(32)}"


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()
