"""The pure rules: validation, password policy and lockout, number lifecycle, devices,
contacts' visibility, schedules, CSV import/export, and the api.yaml role rules."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest
from ringwise.api.v1 import api_pb2
from ringwise_directory.auth.domain import (
    key_hash,
    lockout_seconds,
    new_api_key,
    password_problem,
    temporary_password,
)
from ringwise_directory.common.access import allowed, load_rules
from ringwise_directory.common.records import check_if_match, diff, encode_cursor, page_request
from ringwise_directory.common.validation import Fields, normalise_number
from ringwise_directory.contacts.domain import can_edit, can_view, contact_fields, digits_pattern
from ringwise_directory.devices.domain import (
    device_fields,
    dial_target,
    md5_cred,
    new_sip_password,
    trunk_address_ok,
)
from ringwise_directory.numbers.domain import due_for_release, end_of_month, transition
from ringwise_directory.schedules.domain import is_within, schedule_fields
from ringwise_directory.tenants.domain import tenant_fields
from ringwise_directory.users import transfer
from ringwise_directory.users.domain import caller_id_errors, user_fields
from ringwise_kit.api import ApiCall, ApiError

UTC_NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def errors_of(exc: pytest.ExceptionInfo[ApiError]) -> dict[str, str]:
    return {e["field"]: e["message"] for e in exc.value.errors}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "A", "country": "gb", "time_zone": "UTC"}, {"country"}),
        ({"name": "A", "country": "GB", "time_zone": "London"}, {"time_zone"}),
        ({"name": "A", "country": "GB", "time_zone": "UTC", "vat_id": "123"}, {"vat_id"}),
        ({"name": "A", "country": "GB", "time_zone": "UTC", "language": "english"}, {"language"}),
        (
            {"name": "A", "country": "GB", "time_zone": "UTC", "tenant_id": "Bad Slug"},
            {"tenant_id"},
        ),
        ({"country": "GB", "time_zone": "UTC", "colour": "red"}, {"name", "colour"}),
        ({"name": 5, "country": "GB", "time_zone": "UTC"}, {"name"}),
    ],
)
def test_tenant_fields_are_checked_all_at_once(body: dict[str, Any], fields: set[str]) -> None:
    with pytest.raises(ApiError) as exc:
        tenant_fields(body, partial=False)
    assert exc.value.status == 422
    assert set(errors_of(exc)) == fields


def test_valid_tenant_gets_defaults_and_patch_can_clear_vat() -> None:
    tenant = tenant_fields(
        {"name": " Acme ", "country": "GB", "time_zone": "Europe/London", "vat_id": "GB123456789"},
        partial=False,
    )
    assert tenant == {
        "name": "Acme",
        "country": "GB",
        "time_zone": "Europe/London",
        "vat_id": "GB123456789",
        "language": "en",
    }
    assert tenant_fields({"vat_id": None}, partial=True) == {"vat_id": None}


def test_user_fields_self_service_and_caller_ids() -> None:
    user = user_fields(
        {"email": "a@b.example", "name": "A", "outbound_numbers": ["+441234567"]}, partial=False
    )
    assert user["allowed_clis"] == ["+441234567"]
    assert (user["role"], user["status"], user["ring_timeout_s"]) == ("user", "active", 20)
    with pytest.raises(ApiError) as exc:
        user_fields({"role": "tenant_admin", "name": "x"}, partial=True, self_service=True)
    assert errors_of(exc) == {"role": "only an administrator can change this"}
    with pytest.raises(ApiError) as exc:
        user_fields(
            {"email": "nope", "name": "A", "extension": "1", "ring_timeout_s": 1}, partial=False
        )
    assert set(errors_of(exc)) == {"email", "extension", "ring_timeout_s"}
    assert user_fields({"extension": None}, partial=True) == {"extension": None}
    assert caller_id_errors({"outbound_numbers": ["+441"], "allowed_clis": []}) == [
        {"field": "outbound_numbers/0", "message": "must also be in allowed_clis"}
    ]


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("Short1!", "at least 12 characters"),
        ("alllowercaseletters", "use at least three of: lower-case, upper-case, digits, symbols"),
        ("Aa1Aa1Aa1Aa1Aa1", "too repetitive"),
        ("Jonathan-2026-Pass", "must not contain the username"),
        ("x" * 129, "at most 128 characters"),
        ("Correct-Horse-42", None),
    ],
)
def test_password_policy(password: str, problem: str | None) -> None:
    assert password_problem(password, "jonathan@example.com") == problem


def test_generated_secrets() -> None:
    passwords = {temporary_password() for _ in range(50)}
    assert len(passwords) == 50
    assert all(password_problem(p) is None for p in passwords)
    assert len(new_sip_password()) >= 22  # 192 bits, URL-safe base64
    key = new_api_key("k_1")
    assert key.startswith("rwk_k_1.") and key_hash(key) == hashlib.sha256(key.encode()).hexdigest()


def test_lockout_backoff() -> None:
    assert [lockout_seconds(n) for n in range(1, 10)] == [0, 0, 0, 0, 30, 60, 120, 240, 480]
    assert lockout_seconds(50) == 3600


def test_number_lifecycle_rules() -> None:
    assert transition("reserved", "activate") == "active"
    assert transition("active", "activate") is None
    assert transition("active", "request_deletion") == "awaiting_deletion"
    assert transition("awaiting_deletion", "cancel_deletion") == "active"
    assert end_of_month(datetime(2026, 2, 10, tzinfo=UTC)) == datetime(
        2026, 2, 28, 23, 59, 59, tzinfo=UTC
    )
    due = {"status": "reserved", "expires_at": UTC_NOON}
    assert due_for_release(due, UTC_NOON) and not due_for_release(
        due, datetime(2026, 11, 25, tzinfo=UTC)
    )
    assert not due_for_release({"status": "active"}, UTC_NOON)
    assert normalise_number("15550100") == "+15550100"
    assert normalise_number("%2B15550100") == "+15550100"
    with pytest.raises(ApiError):
        normalise_number("+0123")


def test_devices_and_how_asterisk_reaches_them() -> None:
    assert md5_cred("rw1", "asterisk", "pw") == hashlib.md5(b"rw1:asterisk:pw").hexdigest()
    assert dial_target({"kind": "sip_phone", "sip_username": "rw1"}) == ("sip", "PJSIP/rw1")
    assert dial_target({"kind": "sip_trunk", "sip_username": "rw2"}) == ("sip", "PJSIP/rw2")
    assert dial_target({"kind": "external", "number": "+447700900000"}) == ("external", "")
    assert dial_target({"kind": "static", "dial_string": "PJSIP/phones/sip:a@h"}) == (
        "sip",
        "PJSIP/phones/sip:a@h",
    )
    for good in ("203.0.113.5", "203.0.113.5:5060", "pbx.example.com", "pbx.example.com:5080"):
        assert trunk_address_ok(good), good
    for bad in ("0.0.0.0", "224.0.0.1", "pbx example", "host:99999", "host:port", ""):
        assert not trunk_address_ok(bad), bad
    with pytest.raises(ApiError) as exc:
        device_fields({"kind": "external"}, partial=False)
    assert errors_of(exc) == {"number": "is required"}
    with pytest.raises(ApiError) as exc:
        device_fields({"trunk_address": "x"}, partial=True, kind="sip_phone")
    assert "trunk_address" in errors_of(exc)


def test_contact_visibility() -> None:
    private = {
        "owner_id": "ann",
        "visibility": "private",
        "editable_by": "private",
        "scope": "personal",
    }
    staff = {
        "owner_id": "ann",
        "visibility": "staff",
        "editable_by": "private",
        "scope": "personal",
    }
    shared = {
        "owner_id": "ann",
        "visibility": "public",
        "editable_by": "staff",
        "scope": "personal",
    }
    company = {"owner_id": None, "visibility": "staff", "editable_by": "private", "scope": "tenant"}
    assert can_view(private, "ann") and not can_view(private, "bob")
    assert can_view(staff, "bob") and not can_edit(staff, "bob", is_admin=False)
    assert can_edit(shared, "bob", is_admin=False)
    assert can_edit(company, "admin", is_admin=True) and not can_edit(
        company, "bob", is_admin=False
    )
    assert contact_fields({"name": "X"}, partial=False)["visibility"] == "private"
    assert contact_fields({"name": "X", "scope": "tenant"}, partial=False)["visibility"] == "staff"
    with pytest.raises(ApiError) as exc:
        contact_fields({"name": "X", "numbers": [{"number": "123"}, {}]}, partial=False)
    assert set(errors_of(exc)) == {"numbers/0/number", "numbers/1/number"}
    pattern = digits_pattern("020 7111")
    assert pattern is not None and pattern.search("+442071110000")
    assert digits_pattern("Bob") is None


def test_schedules() -> None:
    office = schedule_fields(
        {
            "name": "Office",
            "time_zone": "America/New_York",
            "ranges": [{"days": ["mon", "tue"], "start": "09:00", "end": "17:00"}],
        },
        partial=False,
    )
    # 12:00 UTC on Wednesday 25 Nov 2026 is 07:00 in New York: a Wednesday, outside.
    assert not is_within(office, UTC_NOON)
    monday_ny_10 = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    assert is_within(office, monday_ny_10)
    assert not is_within(office, datetime(2026, 11, 23, 22, 0, tzinfo=UTC))  # 17:00 NY: closed
    late = schedule_fields(
        {
            "name": "Late",
            "time_zone": "UTC",
            "ranges": [{"days": ["sat"], "start": "20:00", "end": "24:00"}],
        },
        partial=False,
    )
    assert is_within(late, datetime(2026, 11, 28, 23, 59, tzinfo=UTC))


def test_pages_cursors_and_etags() -> None:
    def call(**query: str) -> ApiCall:
        return ApiCall(operation="x", principal=api_pb2.Principal(), query=list(query.items()))

    page = page_request(call(sort="-name", limit="10"), ("name",), "name")
    assert (page.sort_field, page.descending, page.limit, page.after) == ("name", True, 10, None)
    cursor = encode_cursor("name", True, "Bob", "u_1")
    assert page_request(call(sort="-name", cursor=cursor), ("name",), "name").after == (
        "Bob",
        "u_1",
    )
    with pytest.raises(ApiError) as exc:
        page_request(call(sort="name", cursor=cursor), ("name",), "name")  # another order
    assert errors_of(exc) == {"cursor": "not a cursor this list returned"}
    stamp = encode_cursor("created_at", False, UTC_NOON, "u_2")
    assert page_request(call(sort="created_at", cursor=stamp), ("created_at",), "x").after == (
        UTC_NOON,
        "u_2",
    )

    check_if_match(ApiCall(operation="x", principal=api_pb2.Principal(), if_match='"3"'), 3)
    check_if_match(ApiCall(operation="x", principal=api_pb2.Principal(), if_match="*"), 3)
    with pytest.raises(ApiError) as stale:
        check_if_match(ApiCall(operation="x", principal=api_pb2.Principal(), if_match='"2"'), 3)
    assert stale.value.status == 412
    assert diff({"a": 1, "b": 2, "version": 1}, {"a": 1, "b": 3, "version": 2}) == (
        {"b": 2},
        {"b": 3},
    )


def test_fields_reject_non_objects() -> None:
    fields = Fields(["not", "an", "object"])
    with pytest.raises(ApiError) as exc:
        fields.check()
    assert errors_of(exc) == {"": "must be a JSON object"}


def test_csv_round_trip_and_bad_files() -> None:
    users = [{"email": "a@b.example", "name": "=HYPERLINK()", "outbound_numbers": ["+441", "+442"]}]
    text = transfer.to_csv(users).decode()
    assert "'=HYPERLINK()" in text and "+441 +442" in text
    rows = transfer.parse_csv(text)
    assert rows == [
        (2, {"email": "a@b.example", "name": "=HYPERLINK()", "outbound_numbers": ["+441", "+442"]})
    ]
    with pytest.raises(transfer.ImportFileError, match="empty"):
        transfer.parse_csv("")
    with pytest.raises(transfer.ImportFileError, match="the column name is required"):
        transfer.parse_csv("email\r\na@b.example\r\n")


def test_every_operation_has_roles_and_self_rules_match_their_paths() -> None:
    rules = load_rules()
    assert len(rules) >= 40
    for rule in rules.values():
        assert rule.path.startswith("/v1/")
        if rule.self_param:
            assert "{" + rule.self_param + "}" in rule.path
        if "{tenant_id}" in rule.path:
            continue
        assert rule.roles == frozenset(), f"{rule.operation_id} is platform-level: operators only"
    get_user = rules["getUser"]

    def as_user(subject: str, user_id: str) -> ApiCall:
        principal = api_pb2.Principal(subject_id=subject, role=api_pb2.ROLE_USER)
        return ApiCall(operation="getUser", principal=principal, path_params={"user_id": user_id})

    assert allowed(get_user, as_user("u1", "u1"))
    assert not allowed(get_user, as_user("u1", "u2"))
    assert not allowed(rules["listUsers"], as_user("u1", "u1"))


def test_excel_export_survives_characters_a_workbook_cannot_hold() -> None:
    data = transfer.to_xlsx([{"email": "a@b.example", "name": "Bad\x01Name"}])
    assert data[:2] == b"PK"  # a zip container: the workbook was written
    with pytest.raises(ApiError) as exc:
        user_fields({"email": "a@b.example", "name": "Bad\x01Name"}, partial=False)
    assert errors_of(exc) == {"name": "must not contain control characters"}
