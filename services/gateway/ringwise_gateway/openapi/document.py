"""The gateway's OpenAPI 3.1 document, turned into a table of operations it can enforce.

Every operation says which service owns it (x-ringwise-service, added by dev/gen-openapi),
which roles may call it (x-ringwise-roles; operator_admin always may) and whether role `user`
may call it on themselves (x-ringwise-self: the path parameter holding their user id).
Request bodies and parameters are validated with JSON Schema 2020-12, the dialect of
OpenAPI 3.1, before anything is forwarded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from ringwise_kit.api import ROLES_BY_NAME

HTTP_METHODS = ("get", "put", "post", "patch", "delete")
JSON = "application/json"


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass(frozen=True)
class Parameter:
    name: str
    location: str  # "path" | "query" | "header"
    required: bool
    schema: dict[str, Any]
    validator: Draft202012Validator

    def coerce(self, raw: list[str]) -> Any:
        """Query strings are text; turn them into the schema's type before validating."""
        kind = self.schema.get("type")
        if kind == "array":
            item_kind = self.schema.get("items", {}).get("type")
            return [_coerce_one(value, item_kind) for value in raw]
        return _coerce_one(raw[-1], kind)


def _coerce_one(value: str, kind: Any) -> Any:
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value  # left as text: the schema reports the type error
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return value


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    service: str
    roles: frozenset[int]
    self_param: str
    public: bool
    parameters: tuple[Parameter, ...]
    body_required: bool
    body_media: frozenset[str]
    body_validator: Draft202012Validator | None
    # x-ringwise-timeout-s: how long the owning service may take (e.g. a bulk import);
    # None = the gateway's forward_timeout_s.
    timeout_s: float | None = None

    @property
    def tenant_scoped(self) -> bool:
        return "{tenant_id}" in self.path

    def validate_body(self, body: Any) -> list[FieldError]:
        if self.body_validator is None:
            return []
        return _errors(self.body_validator, body, "body")

    def validate_parameters(
        self, path: dict[str, str], query: list[tuple[str, str]]
    ) -> tuple[dict[str, Any], list[FieldError]]:
        """The typed parameter values, and every error found (all of them, not the first)."""
        values: dict[str, Any] = {}
        errors: list[FieldError] = []
        known = {p.name for p in self.parameters if p.location == "query"}
        for name, _ in query:
            if name not in known:
                errors.append(FieldError(f"query.{name}", "unknown query parameter"))
        for param in self.parameters:
            if param.location == "path":
                raw = [path[param.name]] if param.name in path else []
            elif param.location == "query":
                raw = [value for key, value in query if key == param.name]
            else:
                continue
            if not raw:
                if param.required:
                    errors.append(FieldError(f"{param.location}.{param.name}", "is required"))
                continue
            value = param.coerce(raw)
            found = _errors(param.validator, value, f"{param.location}.{param.name}")
            errors.extend(found)
            if not found:
                values[param.name] = value
        return values, errors


def _errors(validator: Draft202012Validator, value: Any, prefix: str) -> list[FieldError]:
    found: list[ValidationError] = sorted(
        validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path))
    )
    return [
        FieldError(prefix + "".join(f"/{part}" for part in error.absolute_path), _message(error))
        for error in found[:50]
    ]


def _message(error: ValidationError) -> str:
    # jsonschema's messages quote the whole offending value; keep them short.
    message = error.message
    return message if len(message) <= 300 else message[:297] + "..."


def _validator(schema: dict[str, Any], components: dict[str, Any]) -> Draft202012Validator:
    # "#/components/..." references resolve against the root of the schema resource, so the
    # document's components ride along in the root.
    root = {**copy.deepcopy(schema), "components": components}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _resolve(obj: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    ref = obj.get("$ref")
    if not isinstance(ref, str):
        return obj
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return _resolve(node, doc)


class OpenApiDocument:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.operations = list(self._operations())
        self.by_id = {op.operation_id: op for op in self.operations}

    @classmethod
    def load(cls, path: Path) -> OpenApiDocument:
        return cls(yaml.safe_load(path.read_text()))

    def _operations(self) -> Any:
        components = self.doc.get("components", {})
        for path, item in self.doc.get("paths", {}).items():
            shared = item.get("parameters", [])
            for method in HTTP_METHODS:
                spec = item.get(method)
                if spec is None:
                    continue
                params = {}
                for raw in [*shared, *spec.get("parameters", [])]:
                    p = _resolve(raw, self.doc)
                    params[(p["name"], p["in"])] = Parameter(
                        name=p["name"],
                        location=p["in"],
                        required=bool(p.get("required", p["in"] == "path")),
                        schema=p.get("schema", {}),
                        validator=_validator(p.get("schema", {}), components),
                    )
                body = _resolve(spec.get("requestBody", {}), self.doc)
                content = body.get("content", {})
                json_schema = content.get(JSON, {}).get("schema")
                roles = frozenset(ROLES_BY_NAME[name] for name in spec.get("x-ringwise-roles", []))
                yield Operation(
                    operation_id=spec["operationId"],
                    method=method.upper(),
                    path=path,
                    service=spec["x-ringwise-service"],
                    roles=roles,
                    self_param=spec.get("x-ringwise-self", ""),
                    public=spec.get("security") == [],
                    parameters=tuple(params.values()),
                    body_required=bool(body.get("required", False)),
                    body_media=frozenset(content),
                    body_validator=_validator(json_schema, components) if json_schema else None,
                    timeout_s=float(spec["x-ringwise-timeout-s"])
                    if "x-ringwise-timeout-s" in spec
                    else None,
                )
