"""The gateway's whole OpenAPI document (every service's fragments merged): it is current,
every reference resolves, and every operation is one the gateway can enforce."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ringwise_gateway.openapi.document import HTTP_METHODS, OpenApiDocument
from ringwise_gateway.openapi.merge import FragmentError, merge, render
from ringwise_gateway.settings import DEFAULT_OPENAPI

REPO = Path(__file__).resolve().parents[3]


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def test_the_committed_document_is_the_merge_of_the_fragments() -> None:
    assert DEFAULT_OPENAPI.read_text() == render(REPO)


def test_every_reference_resolves() -> None:
    doc = yaml.safe_load(DEFAULT_OPENAPI.read_text())
    for ref in refs(doc):
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"unresolved {ref}"
            node = node[part]


def test_every_operation_is_enforceable_and_documents_its_outcomes() -> None:
    document = OpenApiDocument.load(DEFAULT_OPENAPI)
    assert len(document.operations) > 40
    raw = yaml.safe_load(DEFAULT_OPENAPI.read_text())
    for path, item in raw["paths"].items():
        for method in HTTP_METHODS:
            op = item.get(method)
            if op is None:
                continue
            name = f"{method.upper()} {path}"
            assert any(code.startswith("2") for code in op["responses"]), name
            if op.get("security") == []:
                continue
            assert "x-ringwise-roles" in op, name
            if "{tenant_id}" not in path:
                # Platform-level operations (tenants, sign-in) are not open to tenant roles
                # unless they say so explicitly.
                assert path.startswith(("/v1/tenants", "/v1/auth")), name


def test_no_yaml_slip_turned_text_into_keys() -> None:
    """An unquoted "a, b: c" in a YAML flow mapping silently becomes extra keys with null
    values (an unknown keyword JSON Schema ignores); none may be in the document."""
    doc = yaml.safe_load(DEFAULT_OPENAPI.read_text())
    slips: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if value is None and key not in ("default", "example", "const"):
                    slips.append(f"{where}/{key}")
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    walk(doc, "")
    assert slips == []


def _fragment(method: str, operation_id: str) -> dict[str, Any]:
    return {
        "paths": {
            "/v1/tenants/{tenant_id}/users/{user_id}/calls": {
                method: {"operationId": operation_id, "x-ringwise-roles": ["tenant_admin"]}
            }
        }
    }


def test_two_services_may_serve_different_methods_of_one_path() -> None:
    doc = merge(
        {"paths": {}},
        [
            ("billing", "billing.yaml", _fragment("get", "listUserCalls")),
            ("routing", "routing.yaml", _fragment("post", "placeCall")),
        ],
    )
    item = doc["paths"]["/v1/tenants/{tenant_id}/users/{user_id}/calls"]
    assert (item["get"]["x-ringwise-service"], item["post"]["x-ringwise-service"]) == (
        "billing",
        "routing",
    )


def test_a_method_defined_twice_is_refused() -> None:
    with pytest.raises(FragmentError, match="get is already defined"):
        merge(
            {"paths": {}},
            [
                ("billing", "billing.yaml", _fragment("get", "listUserCalls")),
                ("routing", "routing.yaml", _fragment("get", "listCallsAgain")),
            ],
        )
