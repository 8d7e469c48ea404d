"""Teams, contacts with Staff/Public/Private visibility, the directory search, schedules,
history, and the users' Excel/CSV export and CSV import."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import timedelta

import pytest
from directory_harness import Harness
from openpyxl import load_workbook
from ringwise.api.v1 import api_pb2
from ringwise_kit.api import ApiCall

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
ADMIN, SUPERVISOR, USER = api_pb2.ROLE_TENANT_ADMIN, api_pb2.ROLE_SUPERVISOR, api_pb2.ROLE_USER
COMPLIANCE = api_pb2.ROLE_COMPLIANCE_OFFICER


async def test_teams_hold_members_and_share_the_extension_space_with_users(
    harness: Harness,
) -> None:
    tenant = await harness.new_tenant("teams")
    ann = await harness.new_user(tenant, "ann@teams.example", extension="100")
    bob = await harness.new_user(tenant, "bob@teams.example")
    supervisor = harness.client(SUPERVISOR, tenant)
    created = await supervisor.op(
        "createTeam",
        {
            "name": "Managers",
            "extension": "250",
            "email": "managers@teams.example",
            "ring_strategy": "sequential",
            "max_queue_size": 99,
            "hold_music": "Always Ah",
            "members": [bob["user_id"], ann["user_id"]],
        },
    )
    assert created.status == 201
    assert created.body["members"] == [bob["user_id"], ann["user_id"]]
    team_id = created.body["team_id"]

    clash_user = await supervisor.op(
        "createTeam", {"name": "X", "extension": "100", "ring_strategy": "random"}
    )
    assert (clash_user.status, clash_user.body["errors"][0]["field"]) == (422, "extension")
    clash_team = await harness.client(ADMIN, tenant).op(
        "createUser", {"email": "cy@teams.example", "name": "Cy", "extension": "250"}
    )
    assert clash_team.status == 422
    bad = await supervisor.op(
        "createTeam",
        {"name": "Y", "extension": "1", "ring_strategy": "loudest", "members": ["u_ghost"]},
    )
    assert bad.status == 422
    assert {e["field"] for e in bad.body["errors"]} == {"extension", "ring_strategy"}
    ghost = await supervisor.op(
        "createTeam",
        {"name": "Y", "extension": "300", "ring_strategy": "random", "members": ["u_ghost"]},
    )
    assert (ghost.status, ghost.body["errors"][0]["field"]) == (422, "members/0")

    of_bob = await supervisor.op("listTeams", query={"member": bob["user_id"]})
    assert [t["team_id"] for t in of_bob.body["items"]] == [team_id]
    await harness.client(ADMIN, tenant).op("deleteUser", user_id=bob["user_id"])
    after = await supervisor.op("getTeam", team_id=team_id)
    assert after.body["members"] == [ann["user_id"]]

    updated = await supervisor.op(
        "updateTeam", {"ring_strategy": "least_busy"}, team_id=team_id, if_match=after.etag
    )
    assert updated.status == 200
    stale = await supervisor.op(
        "updateTeam", {"ring_strategy": "random"}, team_id=team_id, if_match=after.etag
    )
    assert stale.status == 412
    assert (
        await harness.client(USER, tenant, subject_id=ann["user_id"]).op("listTeams")
    ).status == 403
    assert (await harness.client(COMPLIANCE, tenant).op("getTeam", team_id=team_id)).status == 403
    assert (await supervisor.op("deleteTeam", team_id=team_id)).status == 204


async def test_contacts_are_seen_and_edited_as_their_visibility_says(harness: Harness) -> None:
    tenant = await harness.new_tenant("contacts")
    ann = await harness.new_user(tenant, "ann@contacts.example")
    bob = await harness.new_user(tenant, "bob@contacts.example")
    as_ann = harness.client(USER, tenant, subject_id=ann["user_id"])
    as_bob = harness.client(USER, tenant, subject_id=bob["user_id"])
    admin = harness.client(ADMIN, tenant, subject_id="admin-1")

    private = await as_ann.op(
        "createContact",
        {
            "name": "Dr Private",
            "numbers": [{"label": "mobile", "number": "+447700900001"}],
            "vip": True,
        },
    )
    assert (private.status, private.body["visibility"], private.body["owner_id"]) == (
        201,
        "private",
        ann["user_id"],
    )
    staff = await as_ann.op(
        "createContact",
        {
            "name": "Plumber Staff",
            "visibility": "staff",
            "editable_by": "private",
            "groups": ["trades"],
        },
    )
    shared = await as_ann.op(
        "createContact", {"name": "Shared Sam", "visibility": "public", "editable_by": "public"}
    )
    company = await admin.op(
        "createContact",
        {"scope": "tenant", "name": "Head Office", "numbers": [{"number": "+442071110000"}]},
    )
    assert (company.status, company.body["visibility"]) == (201, "staff")
    private_company = await admin.op(
        "createContact", {"scope": "tenant", "name": "X", "visibility": "private"}
    )
    assert private_company.status == 422
    assert (await as_bob.op("createContact", {"scope": "tenant", "name": "Mine"})).status == 403

    bob_sees = {c["name"] for c in (await as_bob.op("listContacts")).body["items"]}
    assert bob_sees == {"Plumber Staff", "Shared Sam", "Head Office"}
    assert (await as_bob.op("getContact", contact_id=private.body["contact_id"])).status == 404
    # Even the tenant admin does not see someone's private contacts.
    admin_sees = {c["name"] for c in (await admin.op("listContacts")).body["items"]}
    assert "Dr Private" not in admin_sees
    ann_vips = await as_ann.op("listContacts", query={"vip": "true"})
    assert [c["name"] for c in ann_vips.body["items"]] == ["Dr Private"]

    assert (
        await as_bob.op("updateContact", {"name": "Hacked"}, contact_id=staff.body["contact_id"])
    ).status == 403
    edited = await as_bob.op(
        "updateContact", {"company": "Sam & Co"}, contact_id=shared.body["contact_id"]
    )
    assert edited.status == 200
    hide = await as_bob.op(
        "updateContact", {"visibility": "private"}, contact_id=shared.body["contact_id"]
    )
    assert (hide.status, hide.body["errors"][0]["field"]) == (422, "visibility")
    assert (
        await admin.op("updateContact", {"name": "HQ"}, contact_id=company.body["contact_id"])
    ).status == 200

    # Directory search: users, teams and the contacts the caller may see; VIPs first.
    await harness.client(ADMIN, tenant).op(
        "updateUser", {"extension": "4711"}, user_id=bob["user_id"]
    )
    found = await as_ann.op("searchDirectory", query={"q": "p"})
    names = [i["name"] for i in found.body["items"]]
    assert names[0] == "Dr Private"
    assert {"Plumber Staff", "Dr Private"} <= set(names)
    by_bob = await as_bob.op("searchDirectory", query={"q": "priv"})
    assert by_bob.body["items"] == []
    by_number = await as_bob.op("searchDirectory", query={"q": "020 7111"})
    assert [i["name"] for i in by_number.body["items"]] == ["HQ"]
    by_extension = await as_ann.op("searchDirectory", query={"q": "4711"})
    assert [(i["type"], i["id"]) for i in by_extension.body["items"]] == [("user", bob["user_id"])]
    assert by_extension.body["items"][0]["presence"] is None
    regex = await as_ann.op("searchDirectory", query={"q": ".*"})
    assert regex.status == 200 and regex.body["items"] == []
    assert (await as_ann.op("searchDirectory", query={"q": ""})).status == 400


async def test_schedules_are_validated_ranges_in_a_time_zone(harness: Harness) -> None:
    tenant = await harness.new_tenant("schedules")
    supervisor = harness.client(SUPERVISOR, tenant)
    office = await supervisor.op(
        "createSchedule",
        {
            "name": "Office hours",
            "time_zone": "Europe/Prague",
            "ranges": [
                {"days": ["fri", "mon", "tue", "wed", "thu"], "start": "09:00", "end": "12:30"},
                {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "13:30", "end": "18:00"},
            ],
        },
    )
    assert office.status == 201
    assert office.body["ranges"][0]["days"] == ["mon", "tue", "wed", "thu", "fri"]
    bad = await supervisor.op(
        "createSchedule",
        {
            "name": "Broken",
            "time_zone": "Europe/Atlantis",
            "ranges": [
                {"days": ["mon", "funday"], "start": "18:00", "end": "09:00"},
                {"days": [], "start": "25:00", "end": "26:00"},
            ],
        },
    )
    assert bad.status == 422
    fields = {e["field"] for e in bad.body["errors"]}
    assert {
        "time_zone",
        "ranges/0/days/1",
        "ranges/0/end",
        "ranges/1/days",
        "ranges/1/start",
        "ranges/1/end",
    } <= fields
    overlap = await supervisor.op(
        "createSchedule",
        {
            "name": "Overlap",
            "time_zone": "UTC",
            "ranges": [
                {"days": ["sat"], "start": "09:00", "end": "12:00"},
                {"days": ["sat", "sun"], "start": "11:00", "end": "13:00"},
            ],
        },
    )
    assert (overlap.status, overlap.body["errors"][0]["field"]) == (422, "ranges/1")
    unknown_user = await supervisor.op(
        "createSchedule", {"name": "U", "time_zone": "UTC", "ranges": [], "user_id": "u_none"}
    )
    assert unknown_user.status == 422
    listed = await supervisor.op("listSchedules")
    assert [s["name"] for s in listed.body["items"]] == ["Office hours"]


async def test_history_records_who_changed_what_before_and_after(harness: Harness) -> None:
    tenant = await harness.new_tenant("history")
    admin = harness.client(ADMIN, tenant, subject_id="admin-7", email="boss@history.example")
    user = await harness.new_user(tenant, "hal@history.example")
    renamed = await admin.op("updateUser", {"name": "Hal 9000"}, user_id=user["user_id"])
    assert renamed.status == 200
    entries = await admin.op("listHistory", query={"resource_id": user["user_id"]})
    actions = [e["action"] for e in entries.body["items"]]
    assert actions == ["user.updated", "user.created"]
    update = entries.body["items"][0]
    assert update["actor"] == {
        "id": "admin-7",
        "role": "tenant_admin",
        "email": "boss@history.example",
    }
    assert (update["before"], update["after"]) == ({"name": "hal"}, {"name": "Hal 9000"})
    assert update["at"].endswith("Z")
    only_users = await admin.op("listHistory", query={"resource_type": "tenant"})
    assert [e["action"] for e in only_users.body["items"]] == ["tenant.created"]
    window = await admin.op("listHistory", query={"since": "2030-01-01T00:00:00Z"})
    assert window.body["items"] == []
    assert (await admin.op("listHistory", query={"since": "yesterday"})).status == 400
    assert (await harness.client(SUPERVISOR, tenant).op("listHistory")).status == 403
    # Append-only: the history never shows a password hash or a password.
    created_entry = entries.body["items"][1]
    assert "password_hash" not in str(created_entry) and user["temporary_password"] not in str(
        entries.raw
    )


async def test_users_export_to_excel_and_csv_and_import_reports_each_bad_row(
    harness: Harness,
) -> None:
    tenant = await harness.new_tenant("transfer")
    admin = harness.client(ADMIN, tenant)
    await admin.op("reserveNumber", {"number": "+442079990001"})
    await harness.new_user(
        tenant, "=cmd@transfer.example", extension="10", smartnumber="+442079990001"
    )

    csv_text = (
        "email,name,extension,role,outbound_numbers,allowed_clis\r\n"
        "ok.one@transfer.example,Ok One,11,user,,\r\n"
        "not-an-email,Broken,12,user,,\r\n"
        "ok.two@transfer.example,Ok Two,13,supervisor,+442079990001,+442079990001\r\n"
        "dup@transfer.example,Dup,11,user,,\r\n"
        "king@transfer.example,King,14,operator_admin,,\r\n"
        "foreign@transfer.example,Foreign,15,user,+15550000000,+15550000000\r\n"
        "\r\n"
        "short@transfer.example,Short\r\n"
        "OK.ONE@transfer.example,Again,16,user,,\r\n"
    )
    imported = await admin.op("importUsers", {"csv": csv_text})
    assert imported.status == 200
    assert [(r["row"], r["email"]) for r in imported.body["created"]] == [
        (2, "ok.one@transfer.example"),
        (4, "ok.two@transfer.example"),
    ]
    assert all(len(r["temporary_password"]) >= 12 for r in imported.body["created"])
    assert [(e["row"], e["field"]) for e in imported.body["errors"]] == [
        (3, "email"),
        (5, "extension"),
        (6, "role"),
        (7, "outbound_numbers/0"),
        (7, "allowed_clis/0"),
        (9, ""),
        (10, "email"),
    ]
    assert imported.body["errors"][1]["message"] == "repeats row 2"
    assert imported.body["errors"][-1]["message"] == "repeats row 2"
    header_only = await admin.op("importUsers", {"csv": "email,name,shoe_size\r\n"})
    assert (header_only.status, header_only.body["errors"][0]["field"]) == (422, "csv")

    csv_export = await admin.op("exportUsers", query={"format": "csv"})
    assert csv_export.status == 200 and csv_export.content_type.startswith("text/csv")
    lines = csv_export.raw.decode().splitlines()
    assert lines[0].startswith("email,name,extension,smartnumber")
    assert "'=cmd@transfer.example" in csv_export.raw.decode()  # no formula injection
    assert any(
        line.startswith("ok.two@transfer.example,Ok Two,13,,+442079990001") for line in lines
    )

    xlsx = await admin.op("exportUsers")
    assert xlsx.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = load_workbook(io.BytesIO(xlsx.raw)).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("email", "name", "extension")
    assert {r[0] for r in rows[1:]} == {
        "=cmd@transfer.example",
        "ok.one@transfer.example",
        "ok.two@transfer.example",
    }
    assert (await admin.op("exportUsers", query={"format": "pdf"})).status == 400


async def test_one_extension_one_holder_even_when_users_and_teams_race_for_it(
    harness: Harness,
) -> None:
    tenant = await harness.new_tenant("ext-race")
    admin = harness.client(ADMIN, tenant)
    replies = await asyncio.gather(
        *(
            admin.op(
                "createUser", {"email": f"r{i}@ext.example", "name": f"R{i}", "extension": "300"}
            )
            for i in range(3)
        ),
        *(
            admin.op("createTeam", {"name": f"T{i}", "extension": "300", "ring_strategy": "random"})
            for i in range(3)
        ),
    )
    assert sorted(r.status for r in replies)[0] == 201
    assert [r.status for r in replies].count(201) == 1
    assert all(r.status in (201, 409, 422) for r in replies)
    # Moving a holder frees its old extension; deleting it frees the new one.
    winner = next(r for r in replies if r.status == 201)
    kind = "user_id" if "user_id" in winner.body else "team_id"
    operation = "updateUser" if kind == "user_id" else "updateTeam"
    moved = await admin.op(operation, {"extension": "301"}, **{kind: winner.body[kind]})
    assert moved.status == 200
    taken = await admin.op(
        "createTeam", {"name": "Now", "extension": "300", "ring_strategy": "random"}
    )
    assert taken.status == 201
    assert (
        await admin.op("createUser", {"email": "x@ext.example", "name": "X", "extension": "301"})
    ).status in (409, 422)


async def test_a_claim_left_by_a_crash_does_not_block_the_extension(harness: Harness) -> None:
    tenant = await harness.new_tenant("ext-stale")
    claims = harness.service.stores.directory.db.extensions
    # A creation that died between claiming and storing the user, two minutes ago.
    await claims.insert_one(
        {
            "tenant_id": tenant,
            "extension": "410",
            "holder": "user:u_never_stored",
            "claimed_at": harness.clock() - timedelta(minutes=2),
        }
    )
    admin = harness.client(ADMIN, tenant)
    created = await admin.op(
        "createUser", {"email": "late@ext.example", "name": "Late", "extension": "410"}
    )
    assert created.status == 201


async def test_a_retried_team_creation_under_one_idempotency_key_returns_the_first_team(
    harness: Harness,
) -> None:
    tenant = await harness.new_tenant("ext-replay")
    admin = harness.client(ADMIN, tenant, subject_id="admin-r")
    body = {"name": "Sales", "extension": "520", "ring_strategy": "random"}

    def create(key: str) -> ApiCall:
        return ApiCall(
            operation="createTeam",
            principal=admin.principal,
            path_params={"tenant_id": tenant},
            body=json.dumps(body).encode(),
            request_id="r",
            idempotency_key=key,
        )

    first = await admin.send(create("k-1"))
    again = await admin.send(create("k-1"))
    assert (first.status, again.status) == (201, 201)
    assert again.body["team_id"] == first.body["team_id"]
    other_key = await admin.send(create("k-2"))
    assert other_key.status in (409, 422)  # a new creation: the extension is taken
    listed = await admin.op("listTeams")
    assert len(listed.body["items"]) == 1
