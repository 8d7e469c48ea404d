"""Helpers of the deployment checks: the chart, its CI values files, rendered manifests and
the external tools (helm from npm, kamailio from Debian) that ./ringwise's setup caches.

Everything runs offline: no cluster, no Docker daemon, no network. (On sys.path through the
pytest `pythonpath` setting, so test modules import it by name.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "ringwise"
CI_VALUES = {
    path.name.removesuffix("-values.yaml"): path for path in sorted((CHART / "ci").glob("*.yaml"))
}
RELEASE = "rw"
NAMESPACE = "telephony"
CACHE = Path(os.environ.get("RINGWISE_CACHE", "/var/cache/ringwise"))

Manifest = dict[str, Any]
Render = Callable[[dict[str, Any]], list[Manifest]]


def load_values(path: Path) -> dict[str, Any]:
    values = yaml.safe_load(path.read_text())
    assert isinstance(values, dict), f"{path} is not a YAML mapping"
    return values


def parse_manifests(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_chart(values: dict[str, Any]) -> list[Manifest]:
    """Every object the chart renders for values, as helm-python-sdk renders it."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[Manifest] = []
    for path in sorted(rendered):
        if path.endswith(".yaml"):
            objects += parse_manifests(rendered[path])
    return objects


def cached_tool(env_var: str, pattern: str, what: str) -> Path:
    """A tool ./ringwise's setup put in the cache. Missing: CI fails, a developer skips."""
    explicit = os.environ.get(env_var)
    candidates = [Path(explicit)] if explicit else sorted(CACHE.glob(pattern), reverse=True)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    message = f"{what} not found (${env_var} or {CACHE}/{pattern}); `./ringwise test` installs it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# Fixtures (conftest.py re-exports them).
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
    return cached_tool("RINGWISE_HELM", "tools/helm-*/helm", "helm")


@pytest.fixture(scope="session")
def kamailio_root() -> Path:
    root = cached_tool("RINGWISE_KAMAILIO_ROOT", "tools/kamailio-*", "kamailio")
    if not (root / "usr" / "sbin" / "kamailio").exists():
        pytest.fail(f"{root} holds no usr/sbin/kamailio")
    return root
