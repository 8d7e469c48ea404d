"""The archive's encrypted format: round trips in both key modes, and every kind of tampering."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ringwise_recording.archive.envelope import (
    CustomerKey,
    EnvelopeError,
    PlatformKey,
    Sealer,
    fingerprint,
    open_stream,
    read_header,
)

PLATFORM = PlatformKey("platform-test", os.urandom(32))
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = PRIVATE.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
CUSTOMER = CustomerKey(fingerprint(PUBLIC_PEM), PUBLIC_PEM)
CHUNK = 1024


def seal(plain: bytes, key: PlatformKey | CustomerKey, pieces: int = 7) -> bytes:
    sealer = Sealer(key, "rec-1", chunk_bytes=CHUNK)
    step = max(1, len(plain) // pieces)
    out = [sealer.feed(plain[i : i + step]) for i in range(0, len(plain), step)]
    out.append(sealer.finish())
    assert sealer.plain_length == len(plain)
    return b"".join(out)


async def chunks_of(data: bytes, size: int = 333) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def unseal(data: bytes, key: PlatformKey | rsa.RSAPrivateKey) -> bytes:
    return b"".join([chunk async for chunk in open_stream(chunks_of(data), key)])


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 5 * CHUNK + 17])
@pytest.mark.parametrize("mode", ["platform", "customer"])
def test_round_trip_at_every_chunk_boundary(size: int, mode: str) -> None:
    plain = os.urandom(size)
    if mode == "platform":
        assert asyncio.run(unseal(seal(plain, PLATFORM), PLATFORM)) == plain
    else:
        assert asyncio.run(unseal(seal(plain, CUSTOMER), PRIVATE)) == plain


def test_the_header_names_mode_and_key_but_not_the_data_key() -> None:
    header = asyncio.run(read_header(chunks_of(seal(b"abc", CUSTOMER))))
    assert (header["mode"], header["key_id"], header["wrap"]) == (
        "customer",
        CUSTOMER.key_id,
        "RSA-OAEP-256",
    )


def test_customer_recordings_cannot_be_opened_with_the_platform_key() -> None:
    sealed = seal(b"secret audio", CUSTOMER)
    with pytest.raises(EnvelopeError, match="customer"):
        asyncio.run(unseal(sealed, PLATFORM))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(EnvelopeError, match="does not open"):
        asyncio.run(unseal(sealed, other))


def test_wrong_platform_key_is_refused() -> None:
    sealed = seal(b"secret audio", PLATFORM)
    with pytest.raises(EnvelopeError):
        asyncio.run(unseal(sealed, PlatformKey("platform-test", os.urandom(32))))


@pytest.mark.parametrize("position", range(0, 400, 7))
def test_a_bit_flip_anywhere_in_the_header_or_first_chunk_is_detected(position: int) -> None:
    sealed = seal(os.urandom(3 * CHUNK + 5), PLATFORM)
    flipped = sealed[:position] + bytes([sealed[position] ^ 0x01]) + sealed[position + 1 :]
    with pytest.raises(EnvelopeError):
        asyncio.run(unseal(flipped, PLATFORM))


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda d: d[:-1], id="truncated trailer"),
        pytest.param(lambda d: d[: len(d) // 2], id="truncated mid-chunk"),
        pytest.param(lambda d: d[:200] + bytes([d[200] ^ 1]) + d[201:], id="bit flip"),
        pytest.param(lambda d: d[:-1] + bytes([d[-1] ^ 1]), id="trailer hash"),
        pytest.param(lambda d: d + b"x", id="appended"),
    ],
)
def test_tampering_is_detected(tamper: object) -> None:
    sealed = seal(os.urandom(3 * CHUNK + 5), PLATFORM)
    assert callable(tamper)
    with pytest.raises(EnvelopeError):
        asyncio.run(unseal(tamper(sealed), PLATFORM))


def test_dropping_the_final_chunk_is_detected() -> None:
    # Cut after the second full chunk: the frames are intact but the final one is missing.
    sealed = seal(os.urandom(3 * CHUNK), PLATFORM)
    header_len = 8 + 4 + int.from_bytes(sealed[8:12], "big")
    frame = 5 + CHUNK + 16
    with pytest.raises(EnvelopeError, match="truncated"):
        asyncio.run(unseal(sealed[: header_len + 2 * frame], PLATFORM))


def test_cli_decrypts_with_the_private_key(tmp_path: Path) -> None:
    plain = os.urandom(2 * CHUNK + 3)
    sealed_path = tmp_path / "call.rwrec"
    sealed_path.write_bytes(seal(plain, CUSTOMER))
    key_path = tmp_path / "tenant.pem"
    key_path.write_bytes(
        PRIVATE.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter2"),
        )
    )
    script = Path(sys.executable).with_name("ringwise-recording-decrypt")
    out = tmp_path / "call.wav"
    done = subprocess.run(
        [
            str(script),
            "--private-key",
            str(key_path),
            "--passphrase-env",
            "PASS",
            str(sealed_path),
            str(out),
        ],
        env={**os.environ, "PASS": "hunter2"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == plain
    # Tampered: exit 1 and no audio file left behind.
    sealed_path.write_bytes(sealed_path.read_bytes()[:-3])
    out.unlink()
    done = subprocess.run(
        [
            str(script),
            "--private-key",
            str(key_path),
            "--passphrase-env",
            "PASS",
            str(sealed_path),
            str(out),
        ],
        env={**os.environ, "PASS": "hunter2"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert not out.exists()
    assert not list(tmp_path.glob("*.partial"))
