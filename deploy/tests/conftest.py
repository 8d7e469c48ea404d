"""Fixtures of the deployment checks (helpers in deploykit.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deploykit import (
    CI_VALUES,
    Manifest,
    Render,
    cached_tool,
    load_values,
    render_chart,
)


@pytest.fixture(scope="session")
def render() -> Render:
    return render_chart


@pytest.fixture(scope="session")
def ci_values() -> dict[str, dict[str, Any]]:
    return {name: load_values(path) for name, path in CI_VALUES.items()}


@pytest.fixture(scope="session")
def rendered(ci_values: dict[str, dict[str, Any]]) -> dict[str, list[Manifest]]:
    """The chart rendered with each CI values file (minimal, production, tls)."""
    return {name: render_chart(values) for name, values in ci_values.items()}


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    return cached_tool("RINGWISE_HELM", "tools/helm-npm-*/helm", "helm")


@pytest.fixture(scope="session")
def kamailio_root() -> Path:
    root = cached_tool("RINGWISE_KAMAILIO_ROOT", "tools/kamailio-*", "kamailio")
    if not (root / "usr" / "sbin" / "kamailio").exists():
        pytest.fail(f"{root} holds no usr/sbin/kamailio")
    return root
