"""The billing API operations as the gateway forwards them (ApiRouter), on real Mongo-wire."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from openpyxl import load_workbook
from pymongo import AsyncMongoClient
from ringwise.api.v1 import api_pb2
from ringwise.billing.v1 import credit_pb2
from ringwise.events.v1 import call_pb2
from ringwise_billing import wiring
from ringwise_billing.accounts.credit import CreditControl
from ringwise_billing.accounts.payments import BankTransferProvider, TestProvider
from ringwise_billing.cdrs.store import cdr_document
from ringwise_billing.rating.example import STANDARD_2026
from ringwise_billing.wiring import Billing
from ringwise_kit import subjects
from ringwise_kit.api import ApiCall, ApiRouter
from ringwise_kit.events import event_header, to_timestamp

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PACKAGE = Path(wiring.__file__).parent
OPERATOR = api_pb2.Principal(subject_id="op", role=api_pb2.ROLE_OPERATOR_ADMIN)
ADMIN = api_pb2.Principal(subject_id="ann", tenant_id="acme", role=api_pb2.ROLE_TENANT_ADMIN)
USER = api_pb2.Principal(subject_id="bob", tenant_id="acme", role=api_pb2.ROLE_USER)
_dbs = iter(range(10_000))


@pytest_asyncio.fixture(loop_scope="session")
async def stores(mongo: AsyncMongoClient[dict[str, Any]]) -> Billing:
    billing = Billing.open(
        mongo,
        f"billing_api_test_{next(_dbs)}_{datetime.now(UTC).timestamp():.0f}",
        [BankTransferProvider(iban="DE02120300000000202051"), TestProvider()],
    )
    await billing.ensure_indexes()
    return billing


class Client:
    def __init__(self, billing: Billing) -> None:
        self.router: ApiRouter = wiring.router(lambda: billing)

    async def __call__(
        self,
        operation: str,
        principal: api_pb2.Principal = ADMIN,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        if_match: str = "",
        idempotency_key: str = "",
        **params: str,
    ) -> tuple[int, Any, api_pb2.ApiReply]:
        reply = await self.router.dispatch(
            ApiCall(
                operation=operation,
                principal=principal,
                path_params={"tenant_id": "acme", **params},
                query=query or [],
                body=json.dumps(body).encode() if body is not None else b"",
                request_id="req-1",
                if_match=if_match,
                idempotency_key=idempotency_key,
            )
        )
        decoded = json.loads(reply.body) if reply.content_type.endswith("json") else reply.body
        return reply.status, decoded, reply


def fields(problem: Any) -> set[str]:
    return {e["field"] for e in problem.get("errors", [])}


async def test_every_operation_in_the_fragments_has_a_handler_and_the_reverse() -> None:
    documented: dict[str, list[str]] = {}
    for fragment in sorted(PACKAGE.glob("*/api.yaml")):
        doc = yaml.safe_load(fragment.read_text())
        for path, item in doc["paths"].items():
            assert path.startswith("/v1/tenants/{tenant_id}/"), path
            assert "{user_id}" not in path or item["get"].get("x-ringwise-self") == "user_id"
            for method, op in item.items():
                if method == "parameters":
                    continue
                documented[op["operationId"]] = op["x-ringwise-roles"]
    handlers = wiring.router(lambda: None).handlers  # type: ignore[arg-type, return-value]
    assert set(documented) == set(handlers)
    assert len(documented) == 26


async def test_tariffs_are_operator_set_tenant_read_and_corrected_by_revision(
    stores: Billing,
) -> None:
    api = Client(stores)
    status, problem, _ = await api("createTariff", ADMIN, STANDARD_2026)
    assert status == 403
    status, created, reply = await api("createTariff", OPERATOR, STANDARD_2026)
    assert (status, created["revision"], reply.headers["ETag"]) == (201, 1, '"1"')
    assert (await api("createTariff", OPERATOR, STANDARD_2026))[0] == 409
    bad = {**STANDARD_2026, "currency": "eur", "outbound": [{"prefix": "x"}]}
    status, problem, reply = await api("createTariff", OPERATOR, bad)
    assert (status, reply.content_type) == (422, "application/problem+json")
    assert fields(problem) == {"/currency", "/outbound/0/prefix", "/outbound/0/per_minute"}
    assert (await api("createTariff", OPERATOR, b"[1]".decode()))[0] == 400

    status, listed, _ = await api("listTariffs", ADMIN)
    assert [(v["version_id"], v["outbound_rates"]) for v in listed["items"]] == [("std-2026", 5)]
    assert listed["items"][0]["created_at"]
    status, one, _ = await api("getTariff", ADMIN, version_id="std-2026")
    assert one["outbound"][0] == {
        "prefix": "44",
        "per_minute": "0.0200",
        "connection_fee": "0",
        "increment": "60/60",
        "minimum_s": 0,
        "description": "",
    }
    assert (await api("getTariff", ADMIN, version_id="nope"))[0] == 404
    assert (await api("getTariff", USER, version_id="std-2026"))[0] == 403
    fix = {**STANDARD_2026, "name": "fixed"}
    assert (await api("correctTariff", ADMIN, fix, version_id="std-2026"))[0] == 403
    status, fixed, _ = await api(
        "correctTariff", OPERATOR, fix, if_match='"1"', version_id="std-2026"
    )
    assert (status, fixed["revision"], fixed["name"]) == (200, 2, "fixed")
    stale = await api("correctTariff", OPERATOR, fix, if_match='"1"', version_id="std-2026")
    assert stale[0] == 412
    # A retried POST with its Idempotency-Key gets the first reply, not a 409.
    v2 = {**STANDARD_2026, "version_id": "v2", "effective_from": "2027-01-01T00:00:00Z"}
    first = await api("createTariff", OPERATOR, v2, idempotency_key="t-1")
    retry = await api("createTariff", OPERATOR, v2, idempotency_key="t-1")
    assert (first[0], retry[0], retry[1]) == (201, 201, first[1])
    reused = await api("createTariff", OPERATOR, STANDARD_2026, idempotency_key="t-1")
    assert (reused[0], fields(reused[1])) == (422, {"Idempotency-Key"})
    assert (await api("createTariff", OPERATOR, v2, idempotency_key="t-2"))[0] == 409
    other = {**fix, "version_id": "other"}
    assert (await api("correctTariff", OPERATOR, other, version_id="std-2026"))[0] == 422
    # Another tenant's admin sees none of it.
    outsider = api_pb2.Principal(subject_id="x", tenant_id="globex", role=api_pb2.ROLE_TENANT_ADMIN)
    assert (await api("listTariffs", outsider))[0] == 404


async def test_activation_top_ups_blocking_and_the_dashboard(stores: Billing) -> None:
    api = Client(stores)
    await api("createTariff", OPERATOR, STANDARD_2026)
    assert (await api("getBillingAccount"))[0] == 404
    status, problem, _ = await api(
        "activateBillingAccount", body={"profile": {"company": "", "country": "Germany"}}
    )
    assert status == 422
    assert fields(problem) == {"/profile/company", "/profile/country"}
    profile = {"company": "Acme GmbH", "vat_id": "DE123456789", "country": "DE"}
    status, account, _ = await api("activateBillingAccount", body={"profile": profile})
    assert (status, account["status"], account["blocked"], account["balance"]) == (
        200,
        "active",
        True,  # activated but nothing paid yet
        "0.000000",
    )
    moved = await api("activateBillingAccount", body={"profile": profile, "currency": "USD"})
    assert moved[0] == 409

    credit = CreditControl(stores.accounts, stores.tariffs)
    now = datetime.now(UTC)

    def outbound(call_id: str) -> credit_pb2.AuthoriseRequest:
        return credit_pb2.AuthoriseRequest(
            tenant_id="acme",
            call_id=call_id,
            direction=call_pb2.DIRECTION_OUTBOUND,
            to_number="+441134960000",
        )

    refused = await credit.authorise(outbound("before"), now)
    assert refused.reason == credit_pb2.AuthoriseReply.REASON_BLOCKED_UNPAID

    # Bank transfer: pending until an operator confirms; confirming twice credits once.
    status, transfer, _ = await api("createTopUp", body={"amount": "50.00"}, idempotency_key="k-1")
    assert (status, transfer["status"], transfer["provider"]) == (201, "pending", "bank_transfer")
    assert transfer["reference"] in transfer["instructions"]
    assert "DE02120300000000202051" in transfer["instructions"]
    again = await api("createTopUp", body={"amount": "50.00"}, idempotency_key="k-1")
    assert (again[0], again[1]["topup_id"]) == (200, transfer["topup_id"])
    reused = await api("createTopUp", body={"amount": "60.00"}, idempotency_key="k-1")
    assert reused[0] == 422
    assert (await api("getBillingAccount"))[1]["balance"] == "0.000000"
    tid = transfer["topup_id"]
    assert (await api("confirmTopUp", ADMIN, topup_id=tid))[0] == 403
    for _ in range(2):
        status, done, _ = await api("confirmTopUp", OPERATOR, topup_id=tid)
        assert (status, done["status"]) == (200, "completed")
    status, account, _ = await api("getBillingAccount")
    assert (account["balance"], account["blocked"]) == ("50.000000", False)
    allowed = await credit.authorise(outbound("after"), now)
    assert allowed.decision == credit_pb2.AuthoriseReply.DECISION_ALLOW

    # The test provider: completes at once, or fails.
    card = await api("createTopUp", body={"amount": "10", "provider": "test"})
    assert card[1]["status"] == "completed"
    declined = await api(
        "createTopUp",
        body={"amount": "10", "provider": "test", "provider_data": {"outcome": "declined"}},
    )
    assert (declined[1]["status"], declined[1]["failure"]) == ("failed", "card declined")
    assert (await api("confirmTopUp", OPERATOR, topup_id=declined[1]["topup_id"]))[0] == 409
    for bad in ({"amount": "0"}, {"amount": "-5"}, {"amount": "1.1234567"}, {"amount": "x"}):
        assert (await api("createTopUp", body=bad))[0] == 422, bad
    assert (await api("createTopUp", body={"amount": "5", "provider": "paypal"}))[0] == 422

    status, history, _ = await api("listTopUps", query=[("status", "completed"), ("limit", "1")])
    assert [t["amount"] for t in history["items"]] == ["10.000000"]
    status, rest, _ = await api(
        "listTopUps", query=[("status", "completed"), ("cursor", history["next_cursor"])]
    )
    assert [t["amount"] for t in rest["items"]] == ["50.000000"]
    assert (await api("listTopUps", query=[("cursor", "garbage")]))[0] == 400
    assert (await api("listTopUps", query=[("limit", "500")]))[0] == 400

    # Spend this month, through a booked call.
    call = call_pb2.CallEnded(
        header=event_header("acme", "d1", subjects.CALL_ENDED, now),
        direction=call_pb2.DIRECTION_OUTBOUND,
        to_number="+441134960000",
        started_at=to_timestamp(now - timedelta(minutes=3)),
        billable_ms=90_000,
        disposition=call_pb2.DISPOSITION_ANSWERED,
    )
    await stores.booker.book([call])
    status, first, _ = await api("listLedgerEntries", query=[("limit", "2")])
    status, rest, _ = await api("listLedgerEntries", query=[("cursor", first["next_cursor"])])
    movements = [(e["kind"], e["amount"]) for e in first["items"] + rest["items"]]
    assert sorted(movements) == [
        ("call", "-0.040000"),
        ("topup", "10.000000"),
        ("topup", "50.000000"),
    ]
    status, calls_only, _ = await api("listLedgerEntries", query=[("kind", "call")])
    assert [(e["entry_id"], e["billed_seconds"]) for e in calls_only["items"]] == [("call:d1", 120)]
    assert (await api("listLedgerEntries", query=[("kind", "gift")]))[0] == 400

    status, board, _ = await api("getBillingDashboard")
    assert status == 200
    assert board["this_month_spend"] == "0.040000"
    assert board["last_month_spend"] == "0.000000"
    assert board["account"]["balance"] == "59.960000"
    assert [p["amount"] for p in board["recent_payments"]] == ["10.000000", "50.000000"]


def ended(call_id: str, minute: int, **fields_: Any) -> call_pb2.CallEnded:
    started = datetime(2026, 3, 2, 9, minute, tzinfo=UTC)
    talk_ms = fields_.pop("talk_ms", 30_000)
    return call_pb2.CallEnded(
        header=event_header("acme", call_id, subjects.CALL_ENDED, started),
        direction=fields_.pop("direction", call_pb2.DIRECTION_OUTBOUND),
        from_number=fields_.pop("from_number", "+15550100"),
        to_number=fields_.pop("to_number", "+441134960000"),
        user_id=fields_.pop("user_id", "alice"),
        started_at=to_timestamp(started),
        answered_at=to_timestamp(started) if talk_ms else None,
        ended_at=to_timestamp(started + timedelta(milliseconds=talk_ms)),
        billable_seconds=talk_ms // 1000,
        billable_ms=talk_ms,
        duration_ms=talk_ms + 2000,
        disposition=call_pb2.DISPOSITION_ANSWERED if talk_ms else call_pb2.DISPOSITION_NO_ANSWER,
    )


async def test_call_history_filters_pages_and_exports_csv(stores: Billing) -> None:
    api = Client(stores)
    await api("createTariff", OPERATOR, STANDARD_2026)
    events = [
        ended("h1", 1),
        ended("h2", 2, user_id="bob", to_number="+447700900123"),
        ended("h3", 3, talk_ms=0),
        ended("h4", 4, direction=call_pb2.DIRECTION_INBOUND, from_number="=HYPERLINK(1)"),
    ]
    for event in events:
        await stores.cdrs.insert_once(cdr_document(event, datetime.now(UTC)))
    await stores.booker.book(events[:3])  # h4 not booked yet: no charge shown
    status, page, _ = await api("listCalls", query=[("limit", "3")])
    assert [c["call_id"] for c in page["items"]] == ["h4", "h3", "h2"]
    assert page["items"][0]["charge"] is None
    assert (page["items"][2]["charge"], page["items"][2]["currency"]) == ("0.060000", "EUR")
    status, rest, _ = await api(
        "listCalls", query=[("limit", "3"), ("cursor", page["next_cursor"])]
    )
    assert [c["call_id"] for c in rest["items"]] == ["h1"]
    assert rest["next_cursor"] is None
    queries: list[tuple[list[tuple[str, str]], list[str]]] = [
        ([("user_id", "bob")], ["h2"]),
        ([("direction", "inbound")], ["h4"]),
        ([("disposition", "no_answer")], ["h3"]),
        ([("number", "+447700900123")], ["h2"]),
        ([("from", "2026-03-02T09:02:00Z"), ("to", "2026-03-02T09:04:00+00:00")], ["h3", "h2"]),
        ([("from", "2026-03-03")], []),
    ]
    for query, expected in queries:
        status, found, _ = await api("listCalls", query=query)
        assert [c["call_id"] for c in found["items"]] == expected, query
    for bad in [("direction", "sideways"), ("from", "yesterday"), ("to", "2026-03-02T09:00")]:
        status, problem, reply = await api("listCalls", query=[bad])
        assert (status, reply.content_type) == (400, "application/problem+json"), bad
        assert fields(problem) == {bad[0]}

    status, body, reply = await api("exportCalls", query=[("from", "2026-03-02")])
    assert (status, reply.content_type) == (200, "text/csv; charset=utf-8")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert [r["call_id"] for r in rows] == ["h4", "h3", "h2", "h1"]
    assert rows[0]["from_number"] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet
    assert (rows[2]["to_number"], rows[2]["charge"], rows[2]["billable_s"]) == (
        "+447700900123",
        "0.060000",
        "30",
    )

    status, body, reply = await api("exportCallsXlsx", query=[("user_id", "alice")])
    assert reply.content_type.endswith("spreadsheetml.sheet")
    sheet = load_workbook(io.BytesIO(body)).active
    assert sheet is not None
    cells = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert cells[0][:3] == ["call_id", "started_at", "answered_at"]
    assert [r[0] for r in cells[1:]] == ["h4", "h3", "h1"]
    assert cells[1][5] == "'=HYPERLINK(1)"  # text, not a formula
    assert cells[3][1] == datetime(2026, 3, 2, 9, 1)  # a real date cell (UTC)
    assert (cells[3][10], cells[3][11]) == (30, 0.02)  # numeric cells

    bob = api_pb2.Principal(subject_id="bob", tenant_id="acme", role=api_pb2.ROLE_USER)
    status, own, _ = await api("listUserCalls", bob, user_id="bob")
    assert (status, [c["call_id"] for c in own["items"]]) == (200, ["h2"])
    assert (await api("listUserCalls", bob, user_id="alice"))[0] == 404
    status, alices, _ = await api("listUserCalls", ADMIN, user_id="alice")
    assert [c["call_id"] for c in alices["items"]] == ["h4", "h3", "h1"]

    status, stats, _ = await api("getCallStatistics", query=[("from", "2026-03-02")])
    assert status == 200
    assert stats["totals"] == {
        "calls": 4,
        "answered": 3,
        "missed": 0,
        "average_duration_s": 30.0,
        "busiest_hours": [{"hour": 9, "calls": 4}],
    }
    assert [(u["user_id"], u["calls"], u["answered"]) for u in stats["by_user"]] == [
        ("alice", 3, 2),
        ("bob", 1, 1),
    ]
