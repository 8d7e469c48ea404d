"""Voicemail-to-email: one email per message, the audio attached or linked.

The Message-ID is derived from the message id, so a resend after a crash (between the SMTP
server's acceptance and our record of it) is recognisable as the same email.
"""

from __future__ import annotations

import asyncio
import smtplib
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
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


class Mailer:
    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s

    async def send(self, email: EmailMessage) -> None:
        def send() -> None:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                smtp.send_message(email)

        await asyncio.to_thread(send)
