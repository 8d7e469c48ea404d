"""Voicemail settings (RINGWISE_* environment variables; README lists them)."""

from __future__ import annotations

from pydantic import SecretStr
from ringwise_kit.config import AriSettings, KitSettings, MongoSettings


class VoicemailSettings(KitSettings, MongoSettings, AriSettings):
    service_name: str = "voicemail"
    http_port: int = 9104
    voicemail_db: str = "ringwise_voicemail"
    # S3: audio of messages and greetings, under a per-tenant prefix.
    s3_endpoint: str = "http://127.0.0.1:8333"
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_region: str = "us-east-1"
    s3_bucket: str = "ringwise-voicemail"
    # Short-lived audio links (API playback, "link" emails).
    audio_url_ttl_s: int = 900
    email_link_ttl_s: int = 7 * 24 * 3600
    # Voicemail-to-email.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    mail_from: str = "voicemail@ringwise.invalid"
    # Deposits.
    deposit_max_seconds: int = 180
    deposit_min_seconds: float = 2.0
    # The directory's answers (MWI targets, team members, reply senders).
    directory_timeout_s: float = 2.0
    # Retention job: how often it runs.
    retention_interval_s: float = 3600.0
