"""Voicemail-to-email: one email per message, the audio attached or linked.

SMTP has no idempotency: the server takes responsibility for a message when it receives the
final "." of DATA, and we learn it from its 250. So the Mailer speaks SMTP itself up to that
point and lets the caller record, durably, that the "." is about to go (before_commit): a
send that died before that record cannot have been accepted (a server discards a transaction
whose DATA never ended), so it is simply sent again; only one that died between the record
and our note of the 250 is uncertain. The Message-ID is derived from the message id, so that
one resend is recognisable as the same email.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from enum import StrEnum
from io import BytesIO
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


class EmailNotSent(Exception):
    """The server certainly did not take the email (refused it, or the connection failed
    before the end of DATA): sending again cannot duplicate it."""


_LINE_START_DOT = re.compile(rb"(?m)^\.")


def _wire_body(email: EmailMessage) -> bytes:
    """The message as DATA carries it: CRLF lines, leading dots doubled (RFC 5321 4.5.2),
    ending in CRLF; the terminating "." is sent apart."""
    out = BytesIO()
    BytesGenerator(out).flatten(email, linesep="\r\n")
    body = _LINE_START_DOT.sub(b"..", out.getvalue())
    return body if body.endswith(b"\r\n") else body + b"\r\n"


class SmtpSecurity(StrEnum):
    NONE = "none"  # plain SMTP: a relay on a trusted network (the local sink)
    STARTTLS = "starttls"  # plain connection upgraded with STARTTLS (port 587); required
    TLS = "tls"  # TLS from the first byte (implicit TLS, "SMTPS", port 465)


class Mailer:
    """Sends through the SMTP relay: TLS as configured, AUTH when a username is given.

    With STARTTLS the upgrade is required: a relay that does not offer it gets nothing (no
    fall-back to plain text), and credentials only ever travel inside TLS. The relay's
    certificate is verified (system CAs, or ca_file) unless verify_tls is turned off. A TLS or
    AUTH failure happens before DATA: EmailNotSent, safe to send again."""

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
        plain = security is SmtpSecurity.NONE
        self._tls = None if plain else self._tls_context(verify_tls, ca_file)

    @staticmethod
    def _tls_context(verify: bool, ca_file: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=ca_file or None)
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        if self.security is SmtpSecurity.TLS:
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s, context=self._tls)
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)

    def _secure_and_log_in(self, smtp: smtplib.SMTP) -> None:
        if self.security is SmtpSecurity.STARTTLS:
            # Raises SMTPNotSupportedError when the relay does not offer STARTTLS.
            smtp.starttls(context=self._tls)
        if self._username:
            smtp.login(self._username, self._password)

    def _open_data(self, email: EmailMessage) -> smtplib.SMTP:
        """Connect (TLS, AUTH) and send everything of the transaction but the final "."."""
        sender = parseaddr(str(email["From"]))[1]
        recipient = parseaddr(str(email["To"]))[1]
        try:
            smtp = self._connect()
        except (OSError, smtplib.SMTPException) as exc:
            raise EmailNotSent(f"no SMTP server: {exc!r}") from exc
        try:
            self._secure_and_log_in(smtp)
            smtp.ehlo_or_helo_if_needed()
            code, reply = smtp.mail(sender)
            if code != 250:
                raise EmailNotSent(f"MAIL FROM refused: {code} {reply!r}")
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                raise EmailNotSent(f"RCPT TO refused: {code} {reply!r}")
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                raise EmailNotSent(f"DATA refused: {code} {reply!r}")
            smtp.send(_wire_body(email))
        except EmailNotSent:
            smtp.close()
            raise
        except (OSError, smtplib.SMTPException) as exc:
            smtp.close()
            raise EmailNotSent(f"before the end of DATA: {exc!r}") from exc
        return smtp

    @staticmethod
    def _commit(smtp: smtplib.SMTP) -> None:
        """The final ".": from here the server may have taken the email, whatever we hear."""
        try:
            smtp.send(b".\r\n")
            code, reply = smtp.getreply()
            if code != 250:
                raise EmailNotSent(f"the server refused the message: {code} {reply!r}")
            # Accepted already; the goodbye is a courtesy.
            with contextlib.suppress(OSError, smtplib.SMTPException):
                smtp.quit()
        finally:
            smtp.close()

    async def send(
        self,
        email: EmailMessage,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Send one email. Raises EmailNotSent when it certainly was not taken; any other
        error after before_commit leaves the outcome unknown."""
        smtp = await asyncio.to_thread(self._open_data, email)
        try:
            if before_commit is not None:
                await before_commit()
        except BaseException:
            smtp.close()  # DATA never ends: the server drops the transaction
            raise
        await asyncio.to_thread(self._commit, smtp)
