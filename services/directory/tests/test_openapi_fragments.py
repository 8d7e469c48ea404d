"""The feature fragments merge into one OpenAPI document: no clashes, every $ref resolves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from ringwise_directory.common.access import HTTP_METHODS, fragment_paths


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for item in node for r in refs(item)]
    return []


def test_fragments_merge_without_clashes_and_every_ref_resolves() -> None:
    paths: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = {}
    fragments: list[Path] = fragment_paths()
    assert {p.parent.name for p in fragments} >= {
        "common",
        "tenants",
        "users",
        "auth",
        "numbers",
        "devices",
        "teams",
        "contacts",
        "schedules",
        "history",
    }
    for path in fragments:
        document = yaml.safe_load(path.read_text())
        assert document["openapi"].startswith("3.1"), path
        for route, item in (document.get("paths") or {}).items():
            assert route not in paths, f"{route} in two fragments"
            paths[route] = item
        for kind, entries in (document.get("components") or {}).items():
            for name, value in entries.items():
                assert name not in components.setdefault(kind, {}), f"{kind}/{name} twice"
                components[kind][name] = value
    merged = {"paths": paths, "components": components}
    for ref in refs(merged):
        _, _, kind, name = ref.split("/")
        assert name in components.get(kind, {}), f"unresolved {ref}"
    operations = [item[m] for item in paths.values() for m in HTTP_METHODS if m in item]
    for operation in operations:
        assert operation["operationId"] and "x-ringwise-roles" in operation
        assert "default" in operation["responses"], operation["operationId"]
        assert any(code.startswith("2") for code in operation["responses"]), operation[
            "operationId"
        ]
    ids = [o["operationId"] for o in operations]
    assert len(ids) == len(set(ids))
