"""Replies match the documented response schemas (what schemathesis checks at the gateway)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from directory_harness import BODIES, Harness, Reply, populate
from jsonschema import Draft202012Validator
from ringwise.api.v1 import api_pb2
from ringwise_directory.common.access import HTTP_METHODS, load_rules

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


# The gateway's document: every fragment merged with the gateway's base (shared parameters,
# ETag, NextCursor). dev/gen-openapi keeps it in step with the fragments.
OPENAPI = Path(__file__).resolve().parents[3] / "services" / "gateway" / "openapi.yaml"


def merged_fragments() -> tuple[dict[str, Any], dict[str, Any]]:
    document = yaml.safe_load(OPENAPI.read_text())
    directory_ops = set(load_rules())
    operations: dict[str, Any] = {}
    for route, item in document["paths"].items():
        for method in HTTP_METHODS:
            if method in item and item[method]["operationId"] in directory_ops:
                operations[item[method]["operationId"]] = {**item[method], "route": route}
    assert set(operations) == directory_ops, "run dev/gen-openapi"
    return operations, document["components"]


def resolve_ref(node: Any, components: dict[str, Any]) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        _, _, kind, name = node["$ref"].split("/")
        node = components[kind][name]
    return node


def check(operation: dict[str, Any], components: dict[str, Any], reply: Reply) -> str:
    responses = operation["responses"]
    documented = resolve_ref(responses.get(str(reply.status)) or responses["default"], components)
    content = documented.get("content")
    if not content:
        assert not reply.raw, (operation["operationId"], reply.status, "undocumented body")
        return "empty"
    media = reply.content_type.split(";")[0]
    assert media in content, (operation["operationId"], reply.status, media, list(content))
    if reply.body is None:  # a file (xlsx/csv)
        return media
    schema = {**content[media]["schema"], "components": components}
    errors = sorted(Draft202012Validator(schema).iter_errors(reply.body), key=str)
    assert errors == [], (operation["operationId"], reply.status, [e.message for e in errors][:3])
    return media


async def test_every_reply_matches_its_documented_schema(harness: Harness) -> None:
    operations, components = merged_fragments()
    tenant = await harness.new_tenant("schemas")
    ids = await populate(harness, tenant, "schemas")
    operator = harness.operator
    admin = harness.client(api_pb2.ROLE_TENANT_ADMIN, tenant, subject_id=ids["user_id"])
    ok: set[str] = set()
    # Reads and writes first, deletions last, so most operations find their resource.
    ordered = sorted(
        operations, key=lambda op_id: (op_id.startswith(("delete", "revoke", "release")), op_id)
    )
    for op_id in ordered:
        operation = operations[op_id]
        names = re.findall(r"{(\w+)}", operation["route"])
        caller = operator if not operation["x-ringwise-roles"] else admin
        query = {"q": "schemas"} if op_id == "searchDirectory" else None
        reply = await caller.at(op_id, BODIES.get(op_id), {n: ids[n] for n in names}, query=query)
        check(operation, components, reply)
        if reply.status < 300:
            ok.add(op_id)
        # A refused call is a documented problem too.
        bad = await caller.at(
            op_id,
            {"no": "such field"} if op_id in BODIES else None,
            {n: "zz-missing" for n in names},
        )
        check(operation, components, bad)
    # Nearly every operation was exercised successfully, not just refused.
    missing = set(operations) - ok
    # Only the state changes that the number's state at that moment forbids (409).
    assert missing == {"cancelNumberDeletion", "releaseNumber"}, missing
