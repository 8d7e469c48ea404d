#!/usr/bin/env python3
"""Container entrypoint of the Ringwise Asterisk image: render asterisk/etc from the
environment, then exec Asterisk in the foreground.

Standard library only (the image has python3-minimal and nothing else of Python). It renders
exactly like the local platform (ringwise_dev.asterisk.render_text; deploy/tests checks they
agree): only ${RINGWISE_*} placeholders are replaced, an unknown one is an error, and
Asterisk's own ${EXTEN}... stay intact.

Settings (environment):
  RINGWISE_ARI_PASSWORD       required; from a Kubernetes Secret
  RINGWISE_PSTN_HOST          required; the SIP edge's addresses (IPs/CIDRs, comma separated)
  RINGWISE_INSTANCE_DIR       writable folder for etc/, log/, spool/... (/var/lib/ringwise-asterisk)
  RINGWISE_INSTANCE_NAME      defaults to $HOSTNAME (the pod name)
  RINGWISE_SIP_BIND, RINGWISE_SIP_PORT                   0.0.0.0, 5070
  RINGWISE_ARI_PORT, RINGWISE_ARI_USER, RINGWISE_ARI_APP  8088, ringwise, ringwise
  RINGWISE_ARI_BIND           address ARI/HTTP listens on: 127.0.0.1 (only the routing sidecar);
                              the chart sets 0.0.0.0 so voicemail and recording fetch
                              recordings from this pod (a NetworkPolicy admits only them)
  RINGWISE_RTP_START, RINGWISE_RTP_END                   10000, 10999
  RINGWISE_EXTERNAL_ADDRESS   public address put in SIP/SDP (NAT), or
  RINGWISE_EXTERNAL_ADDRESSES one per StatefulSet ordinal, comma separated (pod "x-2" takes the 3rd)
  RINGWISE_LOCAL_NETS         networks not behind the NAT (comma separated CIDRs)
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

PLACEHOLDER = re.compile(r"\$\{(RINGWISE_[A-Z0-9_]+)\}")
TEMPLATES = Path(os.environ.get("RINGWISE_ASTERISK_TEMPLATES", "/usr/share/ringwise/asterisk/etc"))
NAT_INCLUDE = "pjsip_transport_nat.conf"
DEFAULTS = {
    "RINGWISE_INSTANCE_DIR": "/var/lib/ringwise-asterisk",
    "RINGWISE_SIP_BIND": "0.0.0.0",
    "RINGWISE_SIP_PORT": "5070",
    "RINGWISE_ARI_PORT": "8088",
    "RINGWISE_ARI_BIND": "127.0.0.1",
    "RINGWISE_ARI_USER": "ringwise",
    "RINGWISE_ARI_APP": "ringwise",
    "RINGWISE_RTP_START": "10000",
    "RINGWISE_RTP_END": "10999",
}
REQUIRED = ("RINGWISE_ARI_PASSWORD", "RINGWISE_PSTN_HOST")
# A newline would start a new config line and ';' a comment: either would let a value
# rewrite the configuration, so such values are refused rather than escaped.
UNSAFE = re.compile(r"[\r\n;]")


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it."""


def render_text(text: str, values: Mapping[str, str]) -> str:
    """Replace ${RINGWISE_*} placeholders; an unknown one is an error, not an empty string."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"no value for placeholder ${{{name}}}")
        return values[name]

    return PLACEHOLDER.sub(sub, text)


def _port(values: Mapping[str, str], name: str) -> int:
    raw = values[name]
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError(f"{name}={raw!r} is not a port number (1-65535)")
    return int(raw)


def _list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _ordinal(instance_name: str) -> int | None:
    """A StatefulSet pod is named <set>-<ordinal>."""
    match = re.search(r"-(\d+)$", instance_name)
    return int(match.group(1)) if match else None


def settings(env: Mapping[str, str]) -> dict[str, str]:
    """The template values from env (defaults filled in), checked; raises ConfigError."""
    values = {**DEFAULTS, **{k: v for k, v in env.items() if k.startswith("RINGWISE_")}}
    values.setdefault("RINGWISE_INSTANCE_NAME", env.get("HOSTNAME", "asterisk"))
    missing = [name for name in REQUIRED if not values.get(name)]
    if missing:
        raise ConfigError(f"missing required setting(s): {', '.join(missing)}")
    for name, value in values.items():
        if UNSAFE.search(value):
            raise ConfigError(f"{name} must not contain a newline or ';'")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", values["RINGWISE_INSTANCE_NAME"]):
        raise ConfigError(
            f"RINGWISE_INSTANCE_NAME={values['RINGWISE_INSTANCE_NAME']!r} is not a name"
        )
    for name in ("RINGWISE_SIP_PORT", "RINGWISE_ARI_PORT"):
        _port(values, name)
    try:
        ipaddress.ip_address(values["RINGWISE_ARI_BIND"])
    except ValueError:
        # http.conf takes one address; a host name or a list would be ignored by Asterisk.
        raise ConfigError(
            f"RINGWISE_ARI_BIND={values['RINGWISE_ARI_BIND']!r} is not an IP address"
        ) from None
    rtp_start, rtp_end = _port(values, "RINGWISE_RTP_START"), _port(values, "RINGWISE_RTP_END")
    # Asterisk gives each call an even RTP port and the next odd one for RTCP.
    if rtp_start % 2 or rtp_end <= rtp_start:
        raise ConfigError(
            f"RTP range {rtp_start}-{rtp_end}: the start must be even and below the end"
        )
    return values


def external_address(values: Mapping[str, str]) -> str | None:
    """This pod's public address: the single one, or the one at its StatefulSet ordinal."""
    single = values.get("RINGWISE_EXTERNAL_ADDRESS", "").strip()
    per_pod = _list(values.get("RINGWISE_EXTERNAL_ADDRESSES", ""))
    if single and per_pod:
        raise ConfigError("set RINGWISE_EXTERNAL_ADDRESS or RINGWISE_EXTERNAL_ADDRESSES, not both")
    if not per_pod:
        return single or None
    name = values["RINGWISE_INSTANCE_NAME"]
    ordinal = _ordinal(name)
    if ordinal is None or ordinal >= len(per_pod):
        raise ConfigError(
            f"RINGWISE_EXTERNAL_ADDRESSES has {len(per_pod)} address(es); none for pod {name!r}"
        )
    return per_pod[ordinal]


def nat_include(values: Mapping[str, str]) -> str:
    """Lines for the UDP transport section (pjsip.conf includes this file inside it)."""
    lines = ["; Rendered by the container entrypoint: NAT settings of this pod's transport."]
    address = external_address(values)
    if address:
        lines += [f"external_media_address = {address}", f"external_signaling_address = {address}"]
    lines += [f"local_net = {net}" for net in _list(values.get("RINGWISE_LOCAL_NETS", ""))]
    return "\n".join(lines) + "\n"


def prepare(env: Mapping[str, str], templates: Path = TEMPLATES) -> Path:
    """Render the config into the instance folder; return the path of asterisk.conf."""
    values = settings(env)
    instance = Path(values["RINGWISE_INSTANCE_DIR"])
    for sub in ("log", "spool", "run", "lib", "cache"):
        (instance / sub).mkdir(parents=True, exist_ok=True)
    etc = instance / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    for stale in etc.iterdir():
        stale.unlink()
    for path in sorted(templates.iterdir()):
        if path.is_file() and path.suffix == ".conf":
            target = etc / path.name
            target.write_text(render_text(path.read_text(), values))
            # ari.conf holds the ARI password.
            target.chmod(0o600)
    (etc / NAT_INCLUDE).write_text(nat_include(values))
    return etc / "asterisk.conf"


def main(argv: list[str]) -> int:
    try:
        conf = prepare(os.environ)
    except (ConfigError, KeyError) as exc:
        print(f"ringwise-asterisk: {exc}", file=sys.stderr)
        return 2
    # Extra arguments go to Asterisk (e.g. -vvv); it replaces this process (PID 1 stays it).
    os.execvp("asterisk", ["asterisk", "-f", "-n", "-C", str(conf), *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
