"""Voicemail settings (RINGWISE_* environment variables; README lists them)."""

from __future__ import annotations

from typing import Self

from pydantic import SecretStr, model_validator
from ringwise_kit.config import AriSettings, KitSettings, MongoSettings

from ringwise_voicemail.messages.email import Mailer, SmtpSecurity


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
    # Voicemail-to-email through an SMTP relay. security: none | starttls | tls (implicit);
    # AUTH when a username is set (only with TLS); the relay's certificate is verified against
    # the system CAs, or smtp_ca_file, unless smtp_verify_tls is off.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_security: SmtpSecurity = SmtpSecurity.NONE
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_verify_tls: bool = True
    smtp_ca_file: str = ""
    mail_from: str = "voicemail@ringwise.invalid"
    # Deposits.
    deposit_max_seconds: int = 180
    deposit_min_seconds: float = 2.0
    # The directory's answers (MWI targets, team members, reply senders).
    directory_timeout_s: float = 2.0
    # host:port of the SIP edge's phone socket (Kubernetes): a phone registered with another
    # Asterisk pod than the one sending its MWI NOTIFY is reached through the edge's location
    # table (messages/mwi.py). Empty: only the sending pod's registered contacts.
    phones_via_edge: str = ""
    # Retention job: how often it runs.
    retention_interval_s: float = 3600.0

    @model_validator(mode="after")
    def _credentials_only_over_tls(self) -> Self:
        if self.smtp_username and self.smtp_security is SmtpSecurity.NONE:
            raise ValueError(
                "RINGWISE_SMTP_USERNAME is set but RINGWISE_SMTP_SECURITY is none: the "
                "password would cross the network in clear; use starttls or tls"
            )
        if self.smtp_password.get_secret_value() and not self.smtp_username:
            raise ValueError("RINGWISE_SMTP_PASSWORD is set without RINGWISE_SMTP_USERNAME")
        return self

    def mailer(self) -> Mailer:
        return Mailer(
            self.smtp_host,
            self.smtp_port,
            security=self.smtp_security,
            username=self.smtp_username,
            password=self.smtp_password.get_secret_value(),
            verify_tls=self.smtp_verify_tls,
            ca_file=self.smtp_ca_file,
        )
