"""Voicemail-to-email: one email per message, the audio attached or linked.

The Message-ID is derived from the message id, so a resend after a crash (between the SMTP
server's acceptance and our record of it) is recognisable as the same email.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from ringwise_voicemail.mailbox.store import Mailbox


def message_id_header(message_id: str) -> str:
    return f"<vm-{message_id}@ringwise>"


def compose(
    mailbox: Mailbox,
    *,
    sender: str,
    message_id: str,
    caller_number: str,
    caller_name: str,
    received_at: datetime,
    duration_s: float,
    urgent: bool,
    audio: bytes | None,
    audio_url: str | None,
) -> EmailMessage:
    local = received_at.astimezone(ZoneInfo(mailbox.time_zone))
    caller = f"{caller_name} <{caller_number}>" if caller_name else (caller_number or "unknown")
    email = EmailMessage()
    email["From"] = sender
    email["To"] = mailbox.email
    email["Subject"] = f"{'URGENT: ' if urgent else ''}New voicemail from {caller}"
    email["Date"] = format_datetime(received_at)
    email["Message-ID"] = message_id_header(message_id)
    email["X-Ringwise-Message-Id"] = message_id
    if urgent:
        email["Importance"] = "high"
    lines = [
        f"You have a new voicemail from {caller}.",
        "",
        f"Received: {local:%A %d %B %Y, %H:%M} ({mailbox.time_zone})",
        f"Duration: {round(duration_s)} s",
    ]
    if audio_url:
        lines += ["", f"Listen: {audio_url}", "(the link expires)"]
    email.set_content("\n".join(lines) + "\n")
    if audio is not None:
        email.add_attachment(
            audio,
            maintype="audio",
            subtype="wav",
            filename=f"voicemail-{local:%Y%m%d-%H%M%S}.wav",
        )
    return email


class SmtpSecurity(StrEnum):
    NONE = "none"  # plain SMTP: a relay on a trusted network (the local sink)
    STARTTLS = "starttls"  # plain connection upgraded with STARTTLS (port 587); required
    TLS = "tls"  # TLS from the first byte (implicit TLS, "SMTPS", port 465)


class Mailer:
    """Sends through the SMTP relay: TLS as configured, AUTH when a username is given.

    With STARTTLS the upgrade is required: a relay that does not offer it gets nothing (no
    fall-back to plain text), and credentials only ever travel inside TLS. The relay's
    certificate is verified (system CAs, or ca_file) unless verify_tls is turned off."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout_s: float = 10.0,
        *,
        security: SmtpSecurity = SmtpSecurity.NONE,
        username: str = "",
        password: str = "",
        verify_tls: bool = True,
        ca_file: str = "",
    ) -> None:
        if username and security is SmtpSecurity.NONE:
            raise ValueError("SMTP AUTH needs TLS: set the SMTP security to starttls or tls")
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.security = security
        self._username = username
        self._password = password
        self._tls = (
            self._tls_context(verify_tls, ca_file) if security is not SmtpSecurity.NONE else None
        )

    @staticmethod
    def _tls_context(verify: bool, ca_file: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=ca_file or None)
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _send(self, email: EmailMessage) -> None:
        smtp: smtplib.SMTP
        if self.security is SmtpSecurity.TLS:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=self._tls)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with smtp:
            if self.security is SmtpSecurity.STARTTLS:
                # Raises SMTPNotSupportedError when the relay does not offer STARTTLS.
                smtp.starttls(context=self._tls)
            if self._username:
                smtp.login(self._username, self._password)
            smtp.send_message(email)

    async def send(self, email: EmailMessage) -> None:
        await asyncio.to_thread(self._send, email)
