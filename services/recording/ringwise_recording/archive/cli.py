"""ringwise-recording-decrypt: open an archived recording (.rwrec) with the key that sealed it.

    ringwise-recording-decrypt --private-key tenant.pem call.rwrec call.wav
    ringwise-recording-decrypt --info call.rwrec
    RINGWISE_RECORDING_PLATFORM_KEY=... ringwise-recording-decrypt --platform call.rwrec out.wav

Customer-key recordings open only with the tenant's RSA private key (PEM; its passphrase, if
any, is read from the environment variable named by --passphrase-env). The output is written
to a temporary file and renamed only when the whole recording authenticated, so a tampered
or truncated archive never leaves a partial audio file behind. Exit codes: 0 ok, 1 the
recording does not open (wrong key, tampered), 2 usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ringwise_recording.archive.envelope import (
    EnvelopeError,
    PlatformKey,
    aiter_file,
    open_stream,
    read_header,
)


def _private_key(path: Path, passphrase_env: str | None) -> rsa.RSAPrivateKey:
    passphrase = os.environ.get(passphrase_env, "").encode() if passphrase_env else None
    key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase or None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the private key must be an RSA key")
    return key


async def decrypt_file(source: Path, target: Path, key: PlatformKey | rsa.RSAPrivateKey) -> int:
    """Decrypt source into target; returns the plaintext size. Raises EnvelopeError."""
    partial = target.with_name(target.name + ".partial")
    size = 0
    try:
        with partial.open("wb") as out:
            async for chunk in open_stream(aiter_file(str(source)), key):
                out.write(chunk)
                size += len(chunk)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ringwise-recording-decrypt", description="Decrypt a Ringwise archived recording."
    )
    parser.add_argument("source", type=Path, help="the archived recording (.rwrec)")
    parser.add_argument("target", type=Path, nargs="?", help="where to write the audio")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--private-key", type=Path, help="the tenant's RSA private key (PEM)")
    keys.add_argument(
        "--platform",
        action="store_true",
        help="use the platform key from RINGWISE_RECORDING_PLATFORM_KEY(_ID)",
    )
    keys.add_argument("--info", action="store_true", help="print the header (no key needed)")
    parser.add_argument("--passphrase-env", help="environment variable holding the passphrase")
    args = parser.parse_args(argv)
    try:
        if args.info:
            header = asyncio.run(read_header(aiter_file(str(args.source))))
            header.pop("wrapped_key", None)
            print(json.dumps(header, indent=2, sort_keys=True))
            return 0
        if args.target is None or not (args.private_key or args.platform):
            parser.error("give a target file and --private-key or --platform")
        key: PlatformKey | rsa.RSAPrivateKey
        if args.platform:
            raw = os.environ.get("RINGWISE_RECORDING_PLATFORM_KEY", "")
            key_id = os.environ.get("RINGWISE_RECORDING_PLATFORM_KEY_ID", "platform-1")
            key = PlatformKey(key_id, base64.b64decode(raw))
        else:
            key = _private_key(args.private_key, args.passphrase_env)
        size = asyncio.run(decrypt_file(args.source, args.target, key))
    except EnvelopeError as exc:
        print(f"ringwise-recording-decrypt: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError, TypeError) as exc:
        print(f"ringwise-recording-decrypt: {exc}", file=sys.stderr)
        return 2
    print(f"{args.target}: {size} bytes, authenticated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
