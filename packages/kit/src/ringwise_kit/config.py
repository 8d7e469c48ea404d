"""Settings from the environment: one prefix (RINGWISE_) for every service.

Each service subclasses KitSettings with its own fields; README lists them all.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KitSettings(BaseSettings):
    """Settings every service shares. Values come from RINGWISE_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="RINGWISE_", extra="ignore")

    service_name: str = "ringwise"
    log_level: str = "info"
    http_host: str = "127.0.0.1"
    http_port: int = 9100
    nats_url: str = "nats://127.0.0.1:4222"
    # Time a service gives in-flight work to finish on SIGTERM before it stops.
    shutdown_grace_s: float = 10.0
    # JetStream replicas of the streams a service provisions (3 on a 3-node NATS cluster).
    stream_replicas: int = Field(default=1, ge=1, le=5)
    # The event loop: uvloop (libuv, in C) cost the routed call path about a tenth less Python
    # CPU per call than the standard library's loop (docs/benchmarks.md); "asyncio" is the
    # fallback should a library ever misbehave on it.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RINGWISE_", extra="ignore")

    redis_url: str = "redis://127.0.0.1:6379/0"


class MongoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RINGWISE_", extra="ignore")

    mongo_url: str = "mongodb://127.0.0.1:27017"


class AriSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RINGWISE_", extra="ignore")

    ari_url: str = "http://127.0.0.1:8088"
    ari_user: str = "ringwise"
    ari_password: SecretStr = SecretStr("")
    ari_app: str = "ringwise"
    # Several Asterisks (Kubernetes): routing names the one it owns in the events that leave
    # a recording in that Asterisk's spool (the pod name), and the services fetching such
    # recordings build that Asterisk's ARI URL from this template ("{instance}" replaced,
    # e.g. http://{instance}.rw-asterisk.telephony.svc.cluster.local:8088). Empty (one
    # Asterisk): everything is at ari_url. ringwise_kit.ari.instances has the rules.
    asterisk_instance: str = ""
    ari_url_template: str = ""

    @field_validator("ari_url_template")
    @classmethod
    def _template_names_the_instance(cls, value: str) -> str:
        if value and (
            value.count("{instance}") != 1 or not value.startswith(("http://", "https://"))
        ):
            raise ValueError(
                "must be an http(s) URL with exactly one {instance} placeholder, "
                "e.g. http://{instance}.asterisk.telephony.svc.cluster.local:8088"
            )
        return value
