"""Directory SIP devices as PJSIP objects: what routing asks Asterisk to create."""

from __future__ import annotations

import pytest
from ringwise.directory.v1 import devices_pb2
from ringwise_routing.provisioning.pjsip import PjsipOptions, apply_calls, delete_calls


def phone(**fields: object) -> devices_pb2.SipDevice:
    base: dict[str, object] = {
        "tenant_id": "acme",
        "device_id": "dev1",
        "sip_username": "rw7f3a",
        "md5_cred": "0" * 32,
        "realm": "asterisk",
        "kind": "phone",
        "max_contacts": 2,
    }
    return devices_pb2.SipDevice(**(base | fields))  # type: ignore[arg-type]


def fields_of(body: dict[str, list[dict[str, str]]]) -> dict[str, str]:
    return {f["attribute"]: f["value"] for f in body["fields"]}


def test_a_phone_is_auth_then_aor_then_endpoint_named_after_its_user() -> None:
    calls = apply_calls(phone(), PjsipOptions())
    assert [(c.method, c.path) for c in calls] == [
        ("PUT", "/asterisk/config/dynamic/res_pjsip/auth/rw7f3a"),
        ("PUT", "/asterisk/config/dynamic/res_pjsip/aor/rw7f3a"),
        ("PUT", "/asterisk/config/dynamic/res_pjsip/endpoint/rw7f3a"),
    ]
    auth, aor, endpoint = (fields_of(c.body) for c in calls)
    assert auth == {
        "auth_type": "md5",
        "username": "rw7f3a",
        "md5_cred": "0" * 32,
        "realm": "asterisk",
    }
    assert "password" not in auth
    assert (aor["max_contacts"], aor["remove_existing"]) == ("2", "yes")
    # Registrations through the SIP edge keep its Path, so the phone is reached through it.
    assert aor["support_path"] == "yes"
    assert (endpoint["auth"], endpoint["aors"], endpoint["context"]) == (
        "rw7f3a",
        "rw7f3a",
        "from-phones",
    )
    # A variable would make the endpoint impossible to replace (e2e: test_provisioning.py).
    assert "set_var" not in endpoint
    assert endpoint["rewrite_contact"] == "yes"


def test_rewrite_contact_follows_the_option() -> None:
    endpoint = apply_calls(phone(), PjsipOptions(rewrite_contact=False))[-1]
    assert fields_of(endpoint.body)["rewrite_contact"] == "no"


def test_a_trunk_is_reached_at_and_identified_by_its_address_without_auth() -> None:
    trunk = phone(kind="trunk", md5_cred="", trunk_address="192.0.2.10:5070", sip_username="pbx1")
    calls = apply_calls(trunk, PjsipOptions())
    assert [c.path.rsplit("/", 2)[-2] for c in calls] == ["aor", "endpoint", "identify"]
    aor, endpoint, identify = (fields_of(c.body) for c in calls)
    assert aor == {"contact": "sip:192.0.2.10:5070"}
    assert "auth" not in endpoint
    assert identify == {"endpoint": "pbx1", "match": "192.0.2.10"}


def test_a_phone_without_credential_or_name_is_refused() -> None:
    with pytest.raises(ValueError, match="no credential"):
        apply_calls(phone(md5_cred=""), PjsipOptions())
    with pytest.raises(ValueError, match="sip_username"):
        apply_calls(phone(sip_username=""), PjsipOptions())


def test_deleting_removes_every_kind_of_object_endpoint_first() -> None:
    assert [c.path for c in delete_calls("rw7f3a")] == [
        "/asterisk/config/dynamic/res_pjsip/endpoint/rw7f3a",
        "/asterisk/config/dynamic/res_pjsip/identify/rw7f3a",
        "/asterisk/config/dynamic/res_pjsip/aor/rw7f3a",
        "/asterisk/config/dynamic/res_pjsip/auth/rw7f3a",
    ]
    assert all(c.method == "DELETE" for c in delete_calls("x"))
