"""A directory SIP device as PJSIP sorcery objects (pure: data in, ARI calls out).

Phones get auth + aor + endpoint, named after the device's sip_username, so a REGISTER for
that user name finds all three. The secret is the digest hash (auth_type md5, md5_cred):
neither directory nor Asterisk holds the password. A static-IP trunk (a customer's PBX) gets an
aor pointing at it, an endpoint and an identify object matching its address; no registration.
"""

from __future__ import annotations

from dataclasses import dataclass

from ringwise.directory.v1 import devices_pb2
from ringwise_kit.ari import calls
from ringwise_kit.ari.calls import RestCall

CONFIG_CLASS = "res_pjsip"
PHONE = "phone"
TRUNK = "trunk"


@dataclass(frozen=True)
class PjsipOptions:
    transport: str = "transport-udp"
    # The dialplan context a device's own calls start in (outbound calls are routing's too).
    context: str = "from-phones"
    codecs: str = "ulaw,alaw"
    # Behind NAT the source address of the REGISTER is the only reachable one; the local test
    # platform turns it off because its phones register for a sipp answering on another port.
    rewrite_contact: bool = True
    default_expiration_s: int = 600
    maximum_expiration_s: int = 3600


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def endpoint_fields(device: devices_pb2.SipDevice, options: PjsipOptions) -> dict[str, str]:
    name = device.sip_username
    fields = {
        "transport": options.transport,
        "context": options.context,
        "disallow": "all",
        "allow": options.codecs,
        "aors": name,
        "direct_media": "no",
        "rtp_symmetric": "yes",
        "force_rport": "yes",
        "rewrite_contact": _yes(options.rewrite_contact),
        "100rel": "no",
        "timers": "no",
        "allow_subscribe": "yes",
        # No set_var: Asterisk 22 cannot replace an endpoint that has one (it re-reads the
        # variable as an option of its own name, fails, and answers the PUT 500 "Allocation
        # failed"), and routing finds a device's tenant through the directory anyway.
    }
    if device.kind != TRUNK:
        fields["auth"] = name
    return fields


def apply_calls(device: devices_pb2.SipDevice, options: PjsipOptions) -> list[RestCall]:
    """The ARI calls that create or replace the device's objects, in dependency order."""
    name = device.sip_username
    if not name:
        raise ValueError("a SIP device needs a sip_username")
    out: list[RestCall] = []
    if device.kind == TRUNK:
        host = device.trunk_address.split(":", 1)[0]
        out.append(
            calls.put_dynamic_config(
                CONFIG_CLASS, "aor", name, {"contact": f"sip:{device.trunk_address}"}
            )
        )
        out.append(
            calls.put_dynamic_config(
                CONFIG_CLASS, "endpoint", name, endpoint_fields(device, options)
            )
        )
        out.append(
            calls.put_dynamic_config(
                CONFIG_CLASS, "identify", name, {"endpoint": name, "match": host}
            )
        )
        return out
    if not device.md5_cred:
        raise ValueError(f"phone {name} has no credential")
    out.append(
        calls.put_dynamic_config(
            CONFIG_CLASS,
            "auth",
            name,
            {
                "auth_type": "md5",
                "username": name,
                "md5_cred": device.md5_cred,
                "realm": device.realm or "asterisk",
            },
        )
    )
    out.append(
        calls.put_dynamic_config(
            CONFIG_CLASS,
            "aor",
            name,
            {
                "max_contacts": str(device.max_contacts or 1),
                "remove_existing": "yes",
                # Through the SIP edge a REGISTER carries a Path (RFC 3327): calls and MWI
                # NOTIFYs to the phone go back through the edge (and its NAT mapping).
                "support_path": "yes",
                "default_expiration": str(options.default_expiration_s),
                "maximum_expiration": str(options.maximum_expiration_s),
            },
        )
    )
    out.append(
        calls.put_dynamic_config(CONFIG_CLASS, "endpoint", name, endpoint_fields(device, options))
    )
    return out


def delete_calls(sip_username: str) -> list[RestCall]:
    """Remove every object a device may have (missing ones answer 404, which is fine)."""
    return [
        calls.delete_dynamic_config(CONFIG_CLASS, kind, sip_username)
        for kind in ("endpoint", "identify", "aor", "auth")
    ]
