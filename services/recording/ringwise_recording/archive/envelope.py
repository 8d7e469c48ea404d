"""The archive's encrypted recording format: chunked AES-256-GCM under a per-recording data key.

One pass, constant memory: the audio is cut into fixed-size chunks, each sealed on its own, so
a file of any size is encrypted while it streams from Asterisk to S3, and decrypted while it
streams back. Layout (docs/recording.md has the full description):

    MAGIC (8) | header length (u32 BE) | header (JSON, UTF-8)
    chunk*:     flag (u8: 0 more, 1 final) | ciphertext length (u32 BE) | ciphertext + tag
    trailer:    TRAILER_MAGIC (8) | plaintext length (u64 BE) | plaintext SHA-256 (32)

Chunk i's nonce is the header's 8-byte random prefix + i (u32 BE); its associated data binds it
to the header, its index and whether it is final, and the final chunk's also covers the trailer,
so chunks cannot be reordered, dropped, truncated or moved to another recording undetected.

The data key is wrapped either with the platform key (AES-256-GCM, "platform" mode) or with the
tenant's RSA public key (RSA-OAEP-SHA256, "customer" mode: only the tenant's private key opens
it, see the ringwise-recording-decrypt CLI).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"RWREC\x00\x01\n"
TRAILER_MAGIC = b"RWEND\x00\x01\n"
TRAILER_LEN = len(TRAILER_MAGIC) + 8 + 32
CHUNK_BYTES = 1 << 20
TAG_LEN = 16
MODE_PLATFORM = "platform"
MODE_CUSTOMER = "customer"
WRAP_PLATFORM = "A256GCM"
WRAP_CUSTOMER = "RSA-OAEP-256"
MIN_RSA_BITS = 2048
MAX_CHUNK_BYTES = 16 << 20
REQUIRED_TEXT = ("mode", "wrap", "key_id", "wrapped_key", "nonce_prefix", "recording_id")
_HEAD = struct.Struct(">I")
_CHUNK_HEAD = struct.Struct(">BI")
_AAD = struct.Struct(">QB")
_LENGTH = struct.Struct(">Q")


class EnvelopeError(Exception):
    """The data is not a valid recording envelope, or it was tampered with."""


@dataclass(frozen=True)
class PlatformKey:
    """A platform key-encryption key (32 bytes), named so it can be rotated."""

    key_id: str
    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise ValueError("a platform key is 32 bytes (AES-256)")


@dataclass(frozen=True)
class CustomerKey:
    """A tenant's RSA public key (PEM); the platform can wrap with it but never unwrap."""

    key_id: str
    public_pem: bytes

    def public_key(self) -> rsa.RSAPublicKey:
        key = serialization.load_pem_public_key(self.public_pem)
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("the customer key must be an RSA public key")
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"the customer key must have at least {MIN_RSA_BITS} bits")
        return key


WrappingKey = PlatformKey | CustomerKey


def fingerprint(public_pem: bytes) -> str:
    """A stable id for a public key: sha256 of its DER encoding (first 16 hex digits)."""
    key = serialization.load_pem_public_key(public_pem)
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "rsa-" + hashlib.sha256(der).hexdigest()[:16]


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=label
    )


def _wrap(data_key: bytes, key: WrappingKey, recording_id: str) -> tuple[str, str, bytes]:
    label = recording_id.encode()
    if isinstance(key, PlatformKey):
        nonce = os.urandom(12)
        return MODE_PLATFORM, WRAP_PLATFORM, nonce + AESGCM(key.key).encrypt(nonce, data_key, label)
    wrapped = key.public_key().encrypt(data_key, _oaep(label))
    return MODE_CUSTOMER, WRAP_CUSTOMER, wrapped


def _unwrap(header: dict[str, Any], key: PlatformKey | rsa.RSAPrivateKey) -> bytes:
    wrapped = header["wrapped_key"]
    label = str(header["recording_id"]).encode()
    try:
        if header["wrap"] == WRAP_PLATFORM:
            if not isinstance(key, PlatformKey):
                raise EnvelopeError("this recording is sealed with a platform key")
            if key.key_id != header["key_id"]:
                raise EnvelopeError(
                    f"sealed with platform key {header['key_id']}, not {key.key_id}"
                )
            return AESGCM(key.key).decrypt(wrapped[:12], wrapped[12:], label)
        if header["wrap"] == WRAP_CUSTOMER:
            if not isinstance(key, rsa.RSAPrivateKey):
                raise EnvelopeError("this recording is sealed with the customer's public key")
            return key.decrypt(wrapped, _oaep(label))
    except (InvalidTag, ValueError) as exc:
        raise EnvelopeError(f"the data key does not open with this key: {exc!r}") from None
    except TypeError as exc:
        raise EnvelopeError(f"the wrapped data key is malformed: {exc!r}") from None
    raise EnvelopeError(f"unknown key wrapping {header['wrap']!r}")


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + _HEAD.pack(index)


def _aad(header_digest: bytes, index: int, final: bool, trailer: bytes = b"") -> bytes:
    return header_digest + _AAD.pack(index, 1 if final else 0) + trailer


class Sealer:
    """Encrypts one recording as it streams: feed() plaintext, then finish()."""

    def __init__(
        self,
        key: WrappingKey,
        recording_id: str,
        *,
        chunk_bytes: int = CHUNK_BYTES,
        data_key: bytes | None = None,
    ) -> None:
        self._data_key = data_key or AESGCM.generate_key(bit_length=256)
        self._aead = AESGCM(self._data_key)
        self._prefix = os.urandom(8)
        self._chunk_bytes = chunk_bytes
        mode, wrap, wrapped = _wrap(self._data_key, key, recording_id)
        self.mode = mode
        self.key_id = key.key_id
        header = {
            "v": 1,
            "alg": "AES-256-GCM",
            "chunk": chunk_bytes,
            "mode": mode,
            "wrap": wrap,
            "key_id": key.key_id,
            "wrapped_key": base64.b64encode(wrapped).decode(),
            "nonce_prefix": base64.b64encode(self._prefix).decode(),
            "recording_id": recording_id,
        }
        header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        self._header_digest = hashlib.sha256(header_bytes).digest()
        self._preamble: bytes | None = MAGIC + _HEAD.pack(len(header_bytes)) + header_bytes
        self._pending = bytearray()
        self._index = 0
        self._plain_sha = hashlib.sha256()
        self.plain_length = 0

    @property
    def plain_sha256(self) -> str:
        return self._plain_sha.hexdigest()

    def _take_preamble(self) -> bytes:
        preamble, self._preamble = self._preamble or b"", None
        return preamble

    def feed(self, data: bytes) -> bytes:
        """Ciphertext ready so far (see feed_pieces)."""
        return b"".join(self.feed_pieces(data))

    def feed_pieces(self, data: bytes) -> list[bytes]:
        """Ciphertext ready so far, as pieces (no joining copy). A full chunk is sealed only
        once more data follows it, since the final chunk is sealed differently. Whole chunks
        are sealed straight from the input; only a partial chunk waits in the pending buffer."""
        self._plain_sha.update(data)
        self.plain_length += len(data)
        out = [self._take_preamble()]
        with memoryview(data) as view:
            rest = view
            if self._pending:
                need = self._chunk_bytes - len(self._pending)
                if len(rest) <= need:
                    self._pending += rest
                    return out
                self._pending += rest[:need]
                rest = rest[need:]
                out += self._seal(self._pending, final=False)
                self._pending = bytearray()
            while len(rest) > self._chunk_bytes:
                out += self._seal(rest[: self._chunk_bytes], final=False)
                rest = rest[self._chunk_bytes :]
            self._pending += rest
        return out

    def _seal(
        self, chunk: bytes | bytearray | memoryview, *, final: bool, trailer: bytes = b""
    ) -> list[bytes]:
        aad = _aad(self._header_digest, self._index, final, trailer)
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index), chunk, aad)
        self._index += 1
        return [_CHUNK_HEAD.pack(1 if final else 0, len(sealed)), sealed]

    def finish(self) -> bytes:
        trailer = TRAILER_MAGIC + _LENGTH.pack(self.plain_length) + self._plain_sha.digest()
        last = self._seal(self._pending, final=True, trailer=trailer)
        self._pending = bytearray()
        return b"".join([self._take_preamble(), *last, trailer])


@dataclass(frozen=True)
class Opened:
    """What the header of an envelope says (readable without any key)."""

    header: dict[str, Any]
    header_digest: bytes


class _Reader:
    """Exact-size reads over an async byte stream, holding at most one chunk."""

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self._source = source
        self._buffer = bytearray()
        self._done = False

    async def read(self, size: int) -> bytes:
        while len(self._buffer) < size and not self._done:
            try:
                self._buffer += await anext(self._source)
            except StopAsyncIteration:
                self._done = True
        if len(self._buffer) < size:
            raise EnvelopeError("the envelope is truncated")
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    async def at_end(self) -> bool:
        while not self._buffer and not self._done:
            try:
                self._buffer += await anext(self._source)
            except StopAsyncIteration:
                self._done = True
        return not self._buffer


async def _read_header(reader: _Reader) -> Opened:
    if await reader.read(len(MAGIC)) != MAGIC:
        raise EnvelopeError("not a Ringwise recording envelope (bad magic)")
    (length,) = _HEAD.unpack(await reader.read(_HEAD.size))
    if length > 64 * 1024:
        raise EnvelopeError("the envelope header is implausibly large")
    raw = await reader.read(length)
    try:
        header = json.loads(raw)
    except ValueError:
        raise EnvelopeError("the envelope header is not JSON") from None
    if not isinstance(header, dict):
        raise EnvelopeError("the envelope header is not an object")
    if header.get("v") != 1 or header.get("alg") != "AES-256-GCM":
        raise EnvelopeError("unsupported envelope version/algorithm")
    for name in REQUIRED_TEXT:
        if not isinstance(header.get(name), str):
            raise EnvelopeError(f"the envelope header lacks {name}")
    chunk = header.get("chunk")
    if not isinstance(chunk, int) or not 1 <= chunk <= MAX_CHUNK_BYTES:
        raise EnvelopeError("the envelope header has no valid chunk size")
    try:
        header["wrapped_key"] = base64.b64decode(header["wrapped_key"], validate=True)
        header["nonce_prefix"] = base64.b64decode(header["nonce_prefix"], validate=True)
    except binascii.Error:
        raise EnvelopeError("the envelope header holds invalid base64") from None
    if len(header["nonce_prefix"]) != 8:
        raise EnvelopeError("the envelope header has no valid nonce prefix")
    return Opened(header, hashlib.sha256(raw).digest())


async def open_stream(
    source: AsyncIterator[bytes], key: PlatformKey | rsa.RSAPrivateKey
) -> AsyncIterator[bytes]:
    """Decrypt an envelope as it streams, yielding plaintext chunk by chunk. Raises
    EnvelopeError on any tampering, truncation or wrong key: the plaintext already yielded
    must then be discarded (the final check covers the whole recording)."""
    reader = _Reader(source)
    opened = await _read_header(reader)
    header = opened.header
    aead = AESGCM(_unwrap(header, key))
    prefix = header["nonce_prefix"]
    max_sealed = int(header["chunk"]) + TAG_LEN
    plain_sha = hashlib.sha256()
    length = 0
    index = 0
    while True:
        flag, size = _CHUNK_HEAD.unpack(await reader.read(_CHUNK_HEAD.size))
        if flag not in (0, 1) or size > max_sealed or size < TAG_LEN:
            raise EnvelopeError(f"chunk {index} has a corrupt frame")
        sealed = await reader.read(size)
        trailer = await reader.read(TRAILER_LEN) if flag == 1 else b""
        try:
            plain = aead.decrypt(
                _nonce(prefix, index), sealed, _aad(opened.header_digest, index, flag == 1, trailer)
            )
        except InvalidTag:
            raise EnvelopeError(f"chunk {index} fails authentication (tampered)") from None
        plain_sha.update(plain)
        length += len(plain)
        index += 1
        yield plain
        if flag == 1:
            break
    (expected_length,) = _LENGTH.unpack(trailer[len(TRAILER_MAGIC) : len(TRAILER_MAGIC) + 8])
    if trailer[:8] != TRAILER_MAGIC or expected_length != length:
        raise EnvelopeError("the trailer does not match the decrypted length")
    if trailer[-32:] != plain_sha.digest():
        raise EnvelopeError("the decrypted audio does not match its SHA-256")
    if not await reader.at_end():
        raise EnvelopeError("data after the trailer")


async def read_header(source: AsyncIterator[bytes]) -> dict[str, Any]:
    """The envelope's header (mode, key id...), without decrypting anything."""
    header = dict((await _read_header(_Reader(source))).header)
    header["wrapped_key"] = base64.b64encode(header["wrapped_key"]).decode()
    header["nonce_prefix"] = base64.b64encode(header["nonce_prefix"]).decode()
    return header


def iter_file(path: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            yield chunk


async def aiter_file(path: str, chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    for chunk in iter_file(path, chunk_bytes):
        yield chunk
