"""Loads demo/test directory data from a JSON file through the same stores as the API.

Format: {"tenants": [{tenant_id, name, ...}], "users": [{tenant_id, user_id, name,
ring_timeout_s, devices: [{device_id, kind, label, dial_string}]}], "numbers": [{number,
tenant_id, user_id}]}. Fixture numbers are active and assigned to their user; fixture devices
keep their fixed dial strings (static desk phones, nothing provisioned into Asterisk).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ringwise_kit.logs import get_logger

from ringwise_directory.stores import Stores

log = get_logger(__name__)


class FixtureError(ValueError):
    pass


def read_fixture(path: Path) -> dict[str, list[dict[str, Any]]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FixtureError(f"cannot read directory fixture {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise FixtureError("directory fixture must be a JSON object")
    result: dict[str, list[dict[str, Any]]] = {}
    required = {
        "tenants": ("tenant_id",),
        "users": ("tenant_id", "user_id"),
        "numbers": ("number", "tenant_id", "user_id"),
    }
    for section, keys in required.items():
        rows = data.get(section, [])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise FixtureError(f"{section} must be a list of objects")
        for row in rows:
            missing = [k for k in keys if not row.get(k)]
            if missing:
                raise FixtureError(f"{section} entry {row!r} lacks {', '.join(missing)}")
        result[section] = rows
    return result


async def load_fixture(stores: Stores, path: Path) -> list[tuple[str, str, int]]:
    """Upsert the fixture; returns (tenant_id, number, version) of numbers whose routing
    changed (the caller publishes NumberChanged for them)."""
    data = read_fixture(path)
    version = await stores.numbers.next_version()
    for tenant in data["tenants"]:
        await stores.tenants.upsert_fixture(tenant)
    for user in data["users"]:
        await stores.users.upsert_fixture(user)
        await stores.devices.replace_fixture_devices(
            user["tenant_id"], user["user_id"], user.get("devices", [])
        )
    changed = []
    for number in data["numbers"]:
        if await stores.numbers.upsert_fixture(number, version):
            changed.append((number["tenant_id"], number["number"], version))
    log.info(
        "directory_fixture_loaded",
        tenants=len(data["tenants"]),
        users=len(data["users"]),
        numbers=len(data["numbers"]),
        changed=len(changed),
    )
    return changed
