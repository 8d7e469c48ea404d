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
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
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


class Mailer:
    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s

    def _open_data(self, email: EmailMessage) -> smtplib.SMTP:
        """Connect and send everything of the transaction but the final "."."""
        sender = parseaddr(str(email["From"]))[1]
        recipient = parseaddr(str(email["To"]))[1]
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        except (OSError, smtplib.SMTPException) as exc:
            raise EmailNotSent(f"no SMTP server: {exc!r}") from exc
        try:
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
