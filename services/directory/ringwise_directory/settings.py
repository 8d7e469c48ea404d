"""Directory service settings (RINGWISE_* environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from ringwise_kit.config import KitSettings, MongoSettings


class DirectorySettings(KitSettings, MongoSettings):
    service_name: str = "directory"
    http_port: int = 9102
    directory_db: str = "ringwise_directory"
    # JSON file with demo/test tenants, users and numbers, loaded (upserted) at start-up.
    directory_fixture: Path | None = None
    # The SIP digest realm of provisioned phones (md5_cred = md5(user:realm:password)).
    sip_realm: str = "asterisk"
    # How often the number lifecycle job releases expired reservations and due deletions.
    number_lifecycle_interval_s: float = 3600.0
    # The platform's first operator admin, created at start-up when missing.
    operator_email: str | None = None
    operator_password: SecretStr | None = None
    # Requests (REST calls, logins, resolves) handled at the same time; more wait in NATS.
    max_concurrent_requests: int = 32
    # argon2id cost of passwords people choose (OWASP's recommended 19 MiB, 2 passes).
    password_hash_memory_kib: int = 19456
    password_hash_time_cost: int = 2
