"""Voicemail's mailer against a real SMTP server (aiosmtpd) that requires STARTTLS and AUTH,
or speaks TLS from the first byte; its certificate is self-signed, made here with
`cryptography`. Every TLS or AUTH failure comes before DATA: EmailNotSent (safe to resend).
No infra fixture: each test runs its own server on a port of this test base."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError
from ringwise_dev.ports import TEST_PORTS
from ringwise_voicemail.messages.email import EmailNotSent, Mailer, SmtpSecurity
from ringwise_voicemail.settings import VoicemailSettings

HOST = "127.0.0.1"
USER, PASSWORD = "voicemail@relay", "relay-Pa55word"
# Next to the platform's SMTP sink (base + 25), inside this test base's block.
STARTTLS_PORT = TEST_PORTS.base + 26
IMPLICIT_TLS_PORT = TEST_PORTS.base + 27
PLAIN_PORT = TEST_PORTS.base + 28


@dataclass
class Certificate:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 (the relay's address)."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = Certificate(folder / "relay.pem", folder / "relay.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def server_tls(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert, certificate.key)
    return context


@dataclass
class Delivered:
    to: list[str]
    login: str
    over_tls: bool


@dataclass
class Relay:
    """What the server accepted: one entry per message, with who authenticated and whether
    the session was encrypted at that point."""

    delivered: list[Delivered] = field(default_factory=list)

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else ""
        # session.ssl covers STARTTLS; an implicit-TLS transport carries its ssl object.
        transport = server.transport
        encrypted = session.ssl is not None or (
            transport is not None and transport.get_extra_info("ssl_object") is not None
        )
        self.delivered.append(Delivered(list(envelope.rcpt_tos), login, bool(encrypted)))
        return "250 OK"


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


def serve(port: int, **smtp: Any) -> Iterator[Relay]:
    relay = Relay()
    controller = Controller(relay, hostname=HOST, port=port, server_hostname="relay.test", **smtp)
    controller.start()
    try:
        yield relay
    finally:
        controller.stop()


@pytest.fixture
def starttls_relay(certificate: Certificate) -> Iterator[Relay]:
    """A submission relay: STARTTLS required before anything else, AUTH only inside TLS."""
    yield from serve(
        STARTTLS_PORT,
        tls_context=server_tls(certificate),
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
        auth_required=True,
    )


@pytest.fixture
def implicit_tls_relay(certificate: Certificate) -> Iterator[Relay]:
    yield from serve(
        IMPLICIT_TLS_PORT,
        ssl_context=server_tls(certificate),
        authenticator=authenticator,
        # aiosmtpd counts only STARTTLS as TLS for this rule; here every byte is encrypted.
        auth_require_tls=False,
        auth_required=True,
    )


@pytest.fixture
def plain_relay() -> Iterator[Relay]:
    """An old relay: no STARTTLS on offer."""
    yield from serve(PLAIN_PORT, authenticator=authenticator, auth_require_tls=False)


def email(to: str = "alice@example.com") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "voicemail@example.com"
    message["To"] = to
    message["Subject"] = "New voicemail"
    message.set_content("You have a new voicemail.\n")
    return message


def mailer(port: int, security: SmtpSecurity, **options: Any) -> Mailer:
    return Mailer(HOST, port, timeout_s=5.0, security=security, **options)


async def test_starttls_and_auth_deliver_with_a_verified_certificate(
    starttls_relay: Relay, certificate: Certificate
) -> None:
    relay_mailer = mailer(
        STARTTLS_PORT,
        SmtpSecurity.STARTTLS,
        username=USER,
        password=PASSWORD,
        ca_file=str(certificate.cert),
    )
    await relay_mailer.send(email())
    assert starttls_relay.delivered == [Delivered(["alice@example.com"], USER, over_tls=True)]


async def test_the_certificate_is_verified_by_default(starttls_relay: Relay) -> None:
    """Without the relay's CA (system CAs only), the self-signed certificate is refused
    before any credential or message is sent."""
    relay_mailer = mailer(STARTTLS_PORT, SmtpSecurity.STARTTLS, username=USER, password=PASSWORD)
    with pytest.raises(EmailNotSent, match="SSLCertVerificationError"):
        await relay_mailer.send(email())
    assert starttls_relay.delivered == []


async def test_verification_is_turned_off_only_when_asked(starttls_relay: Relay) -> None:
    relay_mailer = mailer(
        STARTTLS_PORT,
        SmtpSecurity.STARTTLS,
        username=USER,
        password=PASSWORD,
        verify_tls=False,
    )
    await relay_mailer.send(email("bob@example.com"))
    assert starttls_relay.delivered == [Delivered(["bob@example.com"], USER, over_tls=True)]


async def test_a_wrong_password_is_refused(starttls_relay: Relay, certificate: Certificate) -> None:
    relay_mailer = mailer(
        STARTTLS_PORT,
        SmtpSecurity.STARTTLS,
        username=USER,
        password="wrong",
        ca_file=str(certificate.cert),
    )
    with pytest.raises(EmailNotSent, match="SMTPAuthenticationError"):
        await relay_mailer.send(email())
    assert starttls_relay.delivered == []


async def test_without_auth_the_relay_refuses_the_message(
    starttls_relay: Relay, certificate: Certificate
) -> None:
    """aiosmtpd, like a submission relay, takes no mail from an unauthenticated client."""
    relay_mailer = mailer(STARTTLS_PORT, SmtpSecurity.STARTTLS, ca_file=str(certificate.cert))
    with pytest.raises(EmailNotSent, match="MAIL FROM refused: 530"):
        await relay_mailer.send(email())
    assert starttls_relay.delivered == []


async def test_a_relay_without_starttls_gets_nothing(plain_relay: Relay) -> None:
    """STARTTLS is required, never opportunistic: no fall-back to plain text."""
    relay_mailer = mailer(
        PLAIN_PORT, SmtpSecurity.STARTTLS, username=USER, password=PASSWORD, verify_tls=False
    )
    with pytest.raises(EmailNotSent, match="SMTPNotSupportedError"):
        await relay_mailer.send(email())
    assert plain_relay.delivered == []


async def test_implicit_tls_with_auth(implicit_tls_relay: Relay, certificate: Certificate) -> None:
    relay_mailer = mailer(
        IMPLICIT_TLS_PORT,
        SmtpSecurity.TLS,
        username=USER,
        password=PASSWORD,
        ca_file=str(certificate.cert),
    )
    await relay_mailer.send(email())
    assert implicit_tls_relay.delivered == [Delivered(["alice@example.com"], USER, over_tls=True)]
    with pytest.raises(EmailNotSent, match="SSLCertVerificationError"):
        await mailer(IMPLICIT_TLS_PORT, SmtpSecurity.TLS).send(email())
    assert len(implicit_tls_relay.delivered) == 1


def test_credentials_are_never_sent_without_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="needs TLS"):
        Mailer(HOST, PLAIN_PORT, username=USER, password=PASSWORD)
    monkeypatch.setenv("RINGWISE_SMTP_USERNAME", USER)
    with pytest.raises(ValidationError, match="would cross the network in clear"):
        VoicemailSettings()
    monkeypatch.delenv("RINGWISE_SMTP_USERNAME")
    monkeypatch.setenv("RINGWISE_SMTP_PASSWORD", PASSWORD)
    with pytest.raises(ValidationError, match="without RINGWISE_SMTP_USERNAME"):
        VoicemailSettings()
    monkeypatch.setenv("RINGWISE_SMTP_SECURITY", "ssl")
    with pytest.raises(ValidationError, match="smtp_security"):
        VoicemailSettings()


async def test_the_service_mailer_from_its_environment(
    starttls_relay: Relay, certificate: Certificate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings the chart sets (RINGWISE_SMTP_*), password from the Secret."""
    for name, value in {
        "HOST": HOST,
        "PORT": str(STARTTLS_PORT),
        "SECURITY": "starttls",
        "USERNAME": USER,
        "PASSWORD": PASSWORD,
        "CA_FILE": str(certificate.cert),
    }.items():
        monkeypatch.setenv(f"RINGWISE_SMTP_{name}", value)
    settings = VoicemailSettings()
    assert settings.smtp_verify_tls is True  # on unless turned off
    await settings.mailer().send(email("carol@example.com"))
    assert starttls_relay.delivered == [Delivered(["carol@example.com"], USER, over_tls=True)]
