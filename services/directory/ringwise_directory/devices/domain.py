"""Pure rules for devices: kinds, generated SIP credentials, how Asterisk reaches each one."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from typing import Any

from ringwise_directory.common.validation import Fields

MAX_DEVICES_PER_USER = 5
# sip_phone registers with generated credentials; sip_trunk is a PBX reached at a static IP;
# external is a PSTN number (mobile, home). "static" is only loaded from the dev fixture: a
# phone with a fixed dial string and no provisioned PJSIP objects.
KINDS = ("sip_phone", "sip_trunk", "external")
SIP_KINDS = ("sip_phone", "sip_trunk")
HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
PASSWORD_BYTES = 24  # 192 random bits, comfortably above the 128 the issue asks for


def new_sip_username() -> str:
    """Globally unique; also the PJSIP endpoint/auth/aor id, so only [a-z0-9]."""
    return "rw" + secrets.token_hex(10)


def new_sip_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def md5_cred(username: str, realm: str, password: str) -> str:
    """The SIP digest HA1, md5(username:realm:password): what PJSIP's md5_cred expects."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).hexdigest()


def dial_target(device: dict[str, Any]) -> tuple[str, str]:
    """(kind, dial string) for the resolve replies. External numbers carry no dial string:
    routing dials their number (Device.number) through its PSTN trunk."""
    kind = device.get("kind")
    if kind in SIP_KINDS:
        return "sip", f"PJSIP/{device['sip_username']}"
    if kind == "external":
        return "external", ""
    return device.get("resolve_kind") or "sip", device.get("dial_string", "")


def trunk_address_ok(value: str) -> bool:
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if port and (not port.isdigit() or not 1 <= int(port) <= 65535):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return bool(HOST.match(host))
    return not (ip.is_unspecified or ip.is_multicast)


def device_fields(body: Any, *, partial: bool, kind: str | None = None) -> dict[str, Any]:
    """Create: kind + its fields; PATCH: the changeable fields of the device's kind."""
    fields = Fields(body, partial=partial)
    if not partial:
        kind = fields.choice("kind", KINDS, required=True)
    common = ("label",)
    by_kind = {
        "sip_phone": ("max_contacts",),
        "sip_trunk": ("trunk_address",),
        "external": ("number",),
    }
    fields.reject_unknown((() if partial else ("kind",)) + common + (by_kind.get(kind or "", ())))
    out: dict[str, Any] = {"label": fields.text("label", max_len=60)}
    if kind == "sip_phone":
        out["max_contacts"] = fields.integer("max_contacts", 1, 10)
    elif kind == "sip_trunk":
        address = fields.text("trunk_address", required=True, max_len=260)
        if address is not None and not trunk_address_ok(address):
            fields.error("trunk_address", "must be host[:port] of the PBX (an IP or a DNS name)")
        out["trunk_address"] = address
    elif kind == "external":
        out["number"] = fields.e164("number", required=True)
    fields.check()
    if kind:
        out["kind"] = kind
    return {k: v for k, v in out.items() if v is not None or (partial and k in body)}
