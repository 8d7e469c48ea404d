"""Recording service settings (RINGWISE_* environment variables)."""

from __future__ import annotations

import base64
import binascii

from pydantic import SecretStr, field_validator
from ringwise_kit.config import AriSettings, KitSettings, MongoSettings


class RecordingSettings(KitSettings, MongoSettings, AriSettings):
    service_name: str = "recording"
    http_port: int = 9105
    recording_db: str = "ringwise_recording"
    # The WORM archive (any S3 with Object Lock; the dev platform runs SeaweedFS).
    s3_endpoint: str = ""
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_region: str = "us-east-1"
    recordings_bucket: str = "ringwise-recordings"
    # Dev/test only: create the bucket (versioned, Object Lock COMPLIANCE) if it is missing.
    recordings_bucket_create: bool = False
    # Platform key-encryption key: base64 of 32 bytes (AES-256), and its id (for rotation).
    recording_platform_key: SecretStr = SecretStr("")
    recording_platform_key_id: str = "platform-1"
    # Multipart part size and how many parts are in flight at once (memory = size x (n+1)).
    recording_part_mb: int = 8
    recording_parts_in_flight: int = 2
    # Retention when an event names none (days); a tenant setting overrides it.
    recording_default_retention_days: int = 365
    # Presigned download URLs (and playback stream links) live this long.
    recording_download_url_s: int = 300
    # Where clients reach this service's decrypting playback stream (platform-key recordings);
    # empty: http://<http_host>:<http_port>.
    recording_stream_base_url: str = ""
    # Verifier: how many archived recordings it re-reads per run, and how often it runs.
    recording_verify_sample: int = 20
    recording_verify_interval_s: float = 3600.0
    recording_expiry_interval_s: float = 3600.0

    @field_validator("recording_platform_key")
    @classmethod
    def _key_is_32_bytes(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw:
            try:
                decoded = base64.b64decode(raw, validate=True)
            except binascii.Error:
                raise ValueError("recording_platform_key must be base64") from None
            if len(decoded) != 32:
                raise ValueError("recording_platform_key must decode to 32 bytes")
        return value

    def platform_key_bytes(self) -> bytes:
        raw = self.recording_platform_key.get_secret_value()
        if not raw:
            raise ValueError("RINGWISE_RECORDING_PLATFORM_KEY is not set")
        return base64.b64decode(raw)
