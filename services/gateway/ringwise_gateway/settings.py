"""Gateway settings (RINGWISE_* environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from ringwise_kit.config import KitSettings, RedisSettings

DEFAULT_OPENAPI = Path(__file__).resolve().parent.parent / "openapi.yaml"


class GatewaySettings(KitSettings, RedisSettings):
    service_name: str = "gateway"
    http_port: int = 9100
    # HMAC key that signs bearer and refresh tokens. Required: the gateway refuses to start
    # with an empty or short key (see main.py). Rotate by deploying a new key (tokens then
    # in flight fail once and clients log in again).
    token_signing_key: SecretStr = SecretStr("")
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 24 * 3600
    # How long a verified API key is trusted without asking directory again (revocation delay).
    api_key_cache_s: float = 30.0
    # Time the owning service has to answer a forwarded call.
    forward_timeout_s: float = 5.0
    idempotency_ttl_s: int = 24 * 3600
    max_body_bytes: int = 10 * 1024 * 1024
    openapi_path: Path = DEFAULT_OPENAPI
