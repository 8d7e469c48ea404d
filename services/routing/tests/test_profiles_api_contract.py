"""The routing OpenAPI fragment and the router agree: every operationId has a handler and
back; every operation names its roles and lets a user reach only their own routing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import yaml
from ringwise_routing import profiles
from ringwise_routing.profiles.http import routes
from ringwise_routing.profiles.service import StoredProfiles


def test_every_operation_of_the_fragment_has_a_handler_and_every_handler_is_documented() -> None:
    fragment = yaml.safe_load((Path(profiles.__file__).parent / "api.yaml").read_text())
    operations = {
        op["operationId"]: (path, op)
        for path, item in fragment["paths"].items()
        for method, op in item.items()
        if method in ("get", "put", "post", "patch", "delete")
    }
    stub: Any = type("Stub", (), {"trunk_dial": staticmethod(lambda number: "")})()
    router = routes(cast(StoredProfiles, stub))
    assert set(operations) == set(router.handlers)
    for path, op in operations.values():
        assert path.startswith("/v1/tenants/{tenant_id}/")
        assert "user" not in op["x-ringwise-roles"]  # users: their own only, by x-ringwise-self
        if "{user_id}" in path:
            assert op["x-ringwise-self"] == "user_id"
            assert set(op["x-ringwise-roles"]) == {"tenant_admin", "supervisor"}
