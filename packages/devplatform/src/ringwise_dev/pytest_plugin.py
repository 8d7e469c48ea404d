"""Pytest fixtures for Ringwise's real-component tests.

- `infra`: NATS, Redis, Mongo-wire, S3 and SMTP as real local processes (TEST_PORTS).
- `platform`: the whole platform on top of `infra`: Asterisk in its chroot + every service.
Both are started once per test session; data and logs go to .run/test in the clone (kept
after the run, so a CI failure can be read). Tests that kill or restart a component must
leave it running again.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from ringwise_dev.asterisk import repo_root
from ringwise_dev.infra import Infra
from ringwise_dev.platform import LocalPlatform
from ringwise_dev.ports import TEST_PORTS


def _test_data_dir() -> Path:
    path = repo_root() / ".run" / "test"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="session")
def test_data_dir() -> Path:
    return _test_data_dir()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def infra(test_data_dir: Path) -> AsyncIterator[Infra]:
    components = Infra(TEST_PORTS, test_data_dir / "infra")
    await components.start()
    yield components
    await components.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def platform(infra: Infra, test_data_dir: Path) -> AsyncIterator[LocalPlatform]:
    # The instance name names Asterisk's folder in the shared chroot: one per port base.
    name = "test" if TEST_PORTS.base == 22000 else f"test{TEST_PORTS.base}"
    local = LocalPlatform(TEST_PORTS, test_data_dir / "platform", name, infra=infra)
    await local.start()
    yield local
    await local.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the whole platform run after the others, whatever order they were given in.

    Some integration tests serve a service in-process, or a stand-in for one, on the real
    subjects of the shared NATS (e.g. a directory answering resolve_number). Once the platform
    is up, its own services share those queue groups and would answer some of their requests.
    """
    items.sort(key=lambda item: "platform" in getattr(item, "fixturenames", ()))
