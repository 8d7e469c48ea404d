"""The stored routing documents (profiles/document.py): what an API body becomes, what a call
then does with it, the field errors of bad bodies, and the write-only secrets."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from ringwise.directory.v1 import resolve_pb2
from ringwise_routing.plans import changes
from ringwise_routing.plans.engine import Ring, Voicemail, plan_call
from ringwise_routing.plans.model import (
    Caller,
    DeviceStatus,
    LocationKind,
    ManualState,
    PlanContext,
    RingMode,
)
from ringwise_routing.plans.outbound import CliChoice, CollectPin, DialPermission, plan_outbound
from ringwise_routing.plans.validation import find_divert_loops
from ringwise_routing.profiles import document
from ringwise_routing.profiles.document import DocumentInvalid

TRUNK = "192.0.2.10:5060"
MONDAY_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def trunk_dial(number: str) -> str:
    return f"PJSIP/pstn/sip:{number}@{TRUNK}"


def no_trunk(_number: str) -> str:
    return ""


def alice(*device_ids: str) -> resolve_pb2.ResolveNumberReply:
    devices = [
        resolve_pb2.Device(device_id=d, kind="sip", dial_string=f"PJSIP/{d}", label="Desk")
        for d in device_ids or ("desk-1",)
    ]
    return resolve_pb2.ResolveNumberReply(
        status=resolve_pb2.ResolveNumberReply.STATUS_FOUND,
        tenant_id="acme",
        user_id="alice",
        smartnumber="+441632960001",
        outbound_numbers=["+441632960099"],
        allowed_clis=["+441632960050"],
        devices=devices,
        ring_timeout_s=25,
    )


def full_body() -> dict[str, Any]:
    """Every field of the document, set to something other than its default."""
    return {
        "terminals": [
            {"id": "desk", "location": "Desk", "device_id": "desk-1", "ring_timeout_s": 15},
            {"id": "mob", "location": "Mobile", "number": "+447700900123", "ring_timeout_s": 30},
        ],
        "states": {
            "Available": {
                "terminals": ["desk", "mob"],
                "ring_mode": "simultaneous",
                "fallback": {"kind": "voicemail", "greeting": "available"},
            },
            "Busy": {"fallback": {"kind": "delegate", "target": "bob"}},
            "Travelling": {"terminals": ["mob"], "fallback": {"kind": "no_messages"}},
            "Holiday": {"fallback": {"kind": "external", "target": "+441632960777"}},
            "Meeting": {"terminals": ["desk"], "fallback": {"kind": "team", "target": "sales"}},
        },
        "default_state": "Busy",
        "vip_state": "Travelling",
        "manual": {"state": "Holiday", "until": "2026-12-01T09:00:00+00:00"},
        "schedule": {
            "timezone": "Europe/London",
            "entries": [
                {"days": ["mon", "fri"], "start": "09:00", "end": "17:30", "state": "Available"}
            ],
            "otherwise": "Busy",
        },
        "logged_out": True,
        "call_flow": {
            "period": {"days": ["sat", "sun"], "start": "22:00", "end": "06:00"},
            "timezone": "Europe/London",
            "call_timeout_s": 25,
            "redirects": [
                {"kind": "external", "target": "+441632960888", "ring_timeout_s": 40},
                {"kind": "voicemail"},
            ],
        },
        "vip_numbers": ["+441632960333"],
        "inbound_filter": {
            "blocked": ["+44870*"],
            "allowed_only": ["+44*"],
            "anonymous": "reject",
        },
        "delegates": ["bob", "carol"],
        "screening": {
            "enabled": True,
            "ask_name": False,
            "password": "4321",
            "skip_for_vip": False,
            "skip_for_internal": False,
        },
        "outbound": {
            "cli_choice": "chosen",
            "chosen_number": "+441632960050",
            "international": "pin",
            "premium": "allowed",
            "dialling_pin": "97531",
        },
    }


def simple_body() -> dict[str, Any]:
    return {
        "terminals": [{"id": "desk", "location": "Desk", "device_id": "desk-1"}],
        "states": {
            "Available": {"terminals": ["desk"]},
            "Busy": {},
            "Travelling": {"terminals": ["desk"]},
            "Holiday": {},
        },
    }


def test_a_stored_document_survives_the_model_and_back() -> None:
    doc = document.parse_profile(full_body())
    profile, _ = document.profile_from_document("acme", alice(), doc, trunk_dial)
    assert document.document_from_profile(profile, doc) == doc


def test_the_model_holds_what_the_document_says() -> None:
    doc = document.parse_profile(full_body())
    profile, outbound = document.profile_from_document("acme", alice(), doc, trunk_dial)
    desk, mob = profile.terminals
    assert (desk.dial_string, desk.kind, desk.ring_timeout_s) == ("PJSIP/desk-1", "Desk", 15)
    assert mob.dial_string == f"PJSIP/pstn/sip:+447700900123@{TRUNK}"
    assert profile.states["Available"].ring_mode is RingMode.SIMULTANEOUS
    assert profile.states["Available"].terminal_ids == ("desk", "mob")
    assert profile.manual == ManualState("Holiday", datetime(2026, 12, 1, 9, tzinfo=UTC))
    assert profile.logged_out and profile.delegates == ("bob", "carol")
    assert profile.inbound_filter.allowed_only == frozenset({"+44*"})
    assert profile.call_flow is not None and profile.call_flow.redirects[0].ring_timeout_s == 40
    # Numbers and CLIs the user may present come from the directory, not the profile.
    assert outbound.smartnumber == "+441632960001"
    assert outbound.designated_number == "+441632960099"
    assert (outbound.cli_choice, outbound.international) == (CliChoice.CHOSEN, DialPermission.PIN)


def test_secrets_are_stored_as_argon2id_hashes_and_never_shown() -> None:
    doc = document.parse_profile(full_body())
    pin_hash = doc["outbound"]["dialling_pin_hash"]
    password_hash = doc["screening"]["password_hash"]
    assert pin_hash.startswith("$argon2id$") and password_hash.startswith("$argon2id$")
    shown = document.public_profile(doc)
    assert shown["outbound"]["dialling_pin_set"] is True
    assert shown["screening"]["password_set"] is True
    assert "97531" not in repr(shown) and "$argon2" not in repr(shown)
    assert "dialling_pin_hash" not in shown["outbound"]
    assert document.verify_secret(pin_hash, "97531")
    assert not document.verify_secret(pin_hash, "97532")
    assert not document.verify_secret(None, "97531")
    assert not document.verify_secret("not a hash", "97531")


async def test_a_secret_is_checked_off_the_event_loop() -> None:
    stored = document.hash_secret("2468")
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    ticker = asyncio.create_task(ticking())
    try:
        assert await document.verify_secret_off_loop(stored, "2468")
        assert not await document.verify_secret_off_loop(stored, "2469")
    finally:
        ticker.cancel()
    assert ticks > 2  # the loop kept running while argon2 worked


def test_a_secret_left_out_is_kept_and_null_clears_it() -> None:
    first = document.parse_profile(full_body())
    body = full_body()
    del body["outbound"]["dialling_pin"]
    body["screening"]["password"] = None
    second = document.parse_profile(body, previous=first)
    assert second["outbound"]["dialling_pin_hash"] == first["outbound"]["dialling_pin_hash"]
    assert second["screening"]["password_hash"] is None


def test_a_get_reply_can_be_sent_back_unchanged() -> None:
    first = document.parse_profile(full_body())
    shown: dict[str, Any] = {"tenant_id": "acme", "user_id": "alice", "version": 3, "stored": True}
    shown |= document.public_profile(first, alice(), trunk_dial)
    assert [t["status"] for t in shown["terminals"]] == ["active", "active"]
    again = document.parse_profile(copy.deepcopy(shown), previous=first)
    assert again == first


def test_the_executor_checks_the_pin_against_the_hash_the_plan_carries() -> None:
    doc = document.parse_profile(full_body())
    _, outbound = document.profile_from_document("acme", alice(), doc, trunk_dial)
    routing = document.user_routing(alice(), doc, None, trunk_dial)
    plan = plan_outbound(outbound, routing.dialling, "+33142000000")
    pin_step = plan.steps[0]
    assert isinstance(pin_step, CollectPin)
    assert document.verify_secret(pin_step.pin, "97531")
    assert not document.verify_secret(pin_step.pin, pin_step.pin)


def test_a_device_gone_from_the_directory_is_deleted_and_never_rung() -> None:
    doc = document.parse_profile(simple_body())
    routing = document.user_routing(alice("other-phone"), doc, None, trunk_dial)
    (desk,) = routing.profile.terminals
    assert desk.status is DeviceStatus.DELETED
    plan = plan_call(
        routing.profile, Caller("+441632960555"), MONDAY_10, PlanContext(routing.tenant)
    )
    assert not any(isinstance(step, Ring) for step in plan.steps)
    assert isinstance(plan.final, Voicemail)
    assert "terminal.deleted" in [r.code for r in plan.reasons]


def test_the_api_shows_which_terminals_cannot_be_rung_now() -> None:
    doc = document.parse_profile(full_body())
    shown = document.public_profile(doc, alice("another-phone"), no_trunk)
    assert [(t["id"], t["status"]) for t in shown["terminals"]] == [
        ("desk", "deleted"),
        ("mob", "blocked"),
    ]
    assert "status" not in doc["terminals"][0]  # the stored document is left as it was


def test_an_external_number_without_a_pstn_trunk_is_never_rung() -> None:
    body = simple_body()
    body["terminals"].append({"id": "mob", "location": "Mobile", "number": "+447700900123"})
    body["states"]["Available"]["terminals"] = ["mob", "desk"]
    doc = document.parse_profile(body)
    profile, _ = document.profile_from_document("acme", alice(), doc, no_trunk)
    assert profile.terminal("mob") is not None
    assert profile.terminal("mob").status is DeviceStatus.BLOCKED  # type: ignore[union-attr]
    plan = plan_call(
        profile,
        Caller("+441632960555"),
        MONDAY_10,
        PlanContext(document.user_routing(alice(), doc, None, no_trunk).tenant),
    )
    rung = [leg.terminal_id for step in plan.steps if isinstance(step, Ring) for leg in step.legs]
    assert rung == ["desk"]


def test_an_external_directory_device_is_dialled_through_the_trunk() -> None:
    user = alice()
    user.devices.append(
        resolve_pb2.Device(device_id="home-1", kind="external", number="+441632960400")
    )
    body = simple_body()
    body["terminals"].append({"id": "home", "location": "Home", "device_id": "home-1"})
    doc = document.parse_profile(body)
    profile, _ = document.profile_from_document("acme", user, doc, trunk_dial)
    assert profile.terminal("home").dial_string == trunk_dial("+441632960400")  # type: ignore[union-attr]


def test_without_a_profile_the_document_is_the_default_routing() -> None:
    user = alice("desk-1", "soft-1")
    default = document.user_routing(user, None, None, trunk_dial).profile
    as_document = document.default_document(user, trunk_dial)
    stored = document.user_routing(user, as_document, None, trunk_dial).profile
    caller = Caller("+441632960555")
    assert plan_call(
        default,
        caller,
        MONDAY_10,
        PlanContext(document.user_routing(user, None, None, trunk_dial).tenant),
    ) == plan_call(
        stored,
        caller,
        MONDAY_10,
        PlanContext(document.user_routing(user, as_document, None, trunk_dial).tenant),
    )
    assert [t["device_id"] for t in as_document["terminals"]] == ["desk-1", "soft-1"]


def test_a_temporary_location_set_by_phone_is_stored_as_a_number() -> None:
    doc = document.parse_profile(simple_body())
    profile, _ = document.profile_from_document("acme", alice(), doc, trunk_dial)
    changed = changes.set_temporary_location(profile, "+447700900999")
    assert not isinstance(changed, list)
    after = document.document_from_profile(changed, doc)
    temp = after["terminals"][-1]
    assert temp == {
        "id": changes.TEMP_TERMINAL_ID,
        "location": "Temp",
        "ring_timeout_s": 30,
        "number": "+447700900999",
    }
    assert after["states"]["Available"]["terminals"] == [changes.TEMP_TERMINAL_ID, "desk"]
    again, _ = document.profile_from_document("acme", alice(), after, trunk_dial)
    assert again.terminal(changes.TEMP_TERMINAL_ID).dial_string == trunk_dial("+447700900999")  # type: ignore[union-attr]
    assert again.terminal(changes.TEMP_TERMINAL_ID).kind is LocationKind.TEMP  # type: ignore[union-attr]


def _mutate(path: str, value: Any) -> dict[str, Any]:
    body = full_body()
    target: Any = body
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return body


_DELETE = object()
SIX_TERMINALS = [{"id": f"t{i}", "number": f"+4477009001{i:02d}"} for i in range(6)]


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        ("terminals", SIX_TERMINALS, "terminals", "at most 5 terminals, not 6"),
        ("colour", "blue", "colour", "unknown field"),
        ("terminals.1.number", "07700900123", "terminals[1].number", "E.164"),
        ("terminals.1.device_id", "desk-1", "terminals[1]", "either device_id or number"),
        ("terminals.1.id", "desk", "terminals[1].id", "duplicate terminal id desk"),
        ("terminals.0.ring_timeout_s", 3, "terminals[0].ring_timeout_s", "5..120"),
        ("terminals.0.location", "Garden", "terminals[0].location", "one of Mobile"),
        ("states.Available.ring_mode", "random", "states.Available.ring_mode", "one of"),
        ("states.Busy.fallback.kind", "sms", "states.Busy.fallback.kind", "one of"),
        ("states.Holiday.fallback.target", "0800", "states.Holiday.fallback.target", "E.164"),
        ("states.$bad", {}, "states.$bad", "a state name"),
        ("manual.until", "next tuesday", "manual.until", "ISO 8601"),
        ("manual.until", "2026-12-01T09:00:00", "manual.until", "with a zone"),
        ("manual.until", "0001-01-01T00:00:00+14:00", "manual.until", "with a zone"),
        ("schedule.entries.0.days", ["monday"], "schedule.entries[0].days", "mon, tue"),
        ("schedule.entries.0.start", "9:00", "schedule.entries[0].start", "HH:MM"),
        ("call_flow.redirects.0.target", "bob", "call_flow.redirects[0].target", "E.164"),
        ("vip_numbers", ["VIP"], "vip_numbers[0]", "E.164"),
        ("inbound_filter.blocked", ["+44 870*"], "inbound_filter.blocked[0]", "prefix"),
        ("delegates", ["bob smith"], "delegates[0]", "a user id"),
        ("screening.password", "12", "screening.password", "4 to 12 digits"),
        ("screening.password", "12ab", "screening.password", "digits only"),
        ("outbound.dialling_pin", 1234, "outbound.dialling_pin", "digits only"),
        ("outbound.chosen_number", _DELETE, "outbound.chosen_number", "choose the number"),
        ("outbound.international", "sometimes", "outbound.international", "one of"),
        ("logged_out", "yes", "logged_out", "true or false"),
    ],
)
def test_a_bad_field_is_named_in_the_errors(
    path: str, value: Any, field: str, message: str
) -> None:
    with pytest.raises(DocumentInvalid) as refused:
        document.parse_profile(_mutate(path, value))
    assert [(e.field, message in e.message) for e in refused.value.errors] == [(field, True)]


def test_a_body_that_is_not_an_object_is_refused() -> None:
    bodies: list[Any] = [[], "profile", None, 3]
    for body in bodies:
        with pytest.raises(DocumentInvalid) as refused:
            document.parse_profile(body)
        assert refused.value.errors[0].field == "body"


def _check(body: dict[str, Any], policy: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    doc = document.parse_profile(body)
    return [(e.field, e.message) for e in document.check_profile(alice(), doc, policy, trunk_dial)]


@pytest.mark.parametrize(
    ("path", "value", "field", "message"),
    [
        (
            "states.Available.terminals",
            ["desk", "nowhere"],
            "states.Available.terminal_ids",
            "no terminal nowhere",
        ),
        ("default_state", "Lunch", "default_state", "unknown availability state Lunch"),
        ("manual.state", "Lunch", "manual.state", "unknown availability state Lunch"),
        ("schedule.timezone", "Mars/Olympus", "schedule.timezone", "unknown time zone"),
        (
            "states.Busy.fallback.target",
            "alice",
            "states.Busy.fallback.target",
            "cannot delegate to self",
        ),
        ("delegates", ["alice"], "delegates", "own delegate"),
        ("vip_numbers", ["+441632960444"], "vip_numbers", "also blocked"),
    ],
)
def test_a_profile_that_cannot_work_is_refused(
    path: str, value: Any, field: str, message: str
) -> None:
    body = _mutate(path, value)
    if path == "vip_numbers":
        body["inbound_filter"]["blocked"] = ["+441632960444"]
    errors = _check(body, {"custom_states": ["Meeting"]})
    assert any(f == field and message in m for f, m in errors), errors


def test_a_state_the_tenant_does_not_define_is_refused() -> None:
    errors = _check(full_body(), None)
    assert ("states.Meeting.name", "unknown availability state Meeting") in errors
    assert _check(full_body(), {"custom_states": ["Meeting"]}) == []


def test_device_ids_the_user_does_not_have_are_named() -> None:
    doc = document.parse_profile(full_body())
    assert document.unknown_devices(doc, alice("desk-1")) == []
    (error,) = document.unknown_devices(doc, alice("desk-2"))
    assert (error.field, error.message) == (
        "terminals[0].device_id",
        "the user has no device desk-1",
    )


def test_divert_loops_across_stored_profiles_are_found() -> None:
    def delegating_to(target: str) -> dict[str, Any]:
        body = simple_body()
        body["states"]["Busy"] = {"fallback": {"kind": "delegate", "target": target}}
        return document.parse_profile(body)

    views = {
        user: document.divert_view("acme", user, delegating_to(target))
        for user, target in (("alice", "bob"), ("bob", "carol"), ("carol", "alice"))
    }
    (loop,) = find_divert_loops(views, ["alice"])
    assert loop.message == "divert loop: alice -> bob -> carol -> alice"


def test_the_tenant_policy_document() -> None:
    doc = document.parse_policy(
        {
            "custom_states": ["Meeting", "On call"],
            "inbound_filter": {"blocked": ["+44909*"], "anonymous": "reject"},
            "dialling": {
                "country_code": "+33",
                "emergency_numbers": ["112", "15"],
                "premium_prefixes": ["+338*"],
                "credit_fail_open": True,
            },
        }
    )
    user = alice()
    tenant, dialling = document.policy_from_document("acme", doc, user)
    assert tenant.custom_states == frozenset({"Meeting", "On call"})
    assert tenant.inbound_filter.anonymous.value == "reject"
    assert dialling.country_code == "+33" and dialling.credit_fail_open
    assert dialling.emergency_numbers == frozenset({"112", "15"})
    assert dialling.allowed_clis == frozenset({"+441632960050"})
    # Left-out parts take the defaults.
    assert document.parse_policy({}) == document.default_policy_document()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"custom_states": ["Busy"]}, "custom_states", "built-in"),
        ({"custom_states": ["9am"]}, "custom_states[0]", "a state name"),
        ({"dialling": {"country_code": "44"}}, "dialling.country_code", "like +44"),
        ({"dialling": {"emergency_numbers": []}}, "dialling.emergency_numbers", "at least one"),
        ({"dialling": {"premium_prefixes": ["09*"]}}, "dialling.premium_prefixes[0]", "prefix"),
        ({"dialling": {"credit_fail_open": "no"}}, "dialling.credit_fail_open", "true or false"),
        ({"inbound_filter": {"anonymous": "maybe"}}, "inbound_filter.anonymous", "one of"),
        ({"rules": []}, "rules", "unknown field"),
    ],
)
def test_a_bad_tenant_policy_is_refused(body: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(DocumentInvalid) as refused:
        document.parse_policy(body)
    assert [(e.field, message in e.message) for e in refused.value.errors] == [(field, True)]
