"""Pytest fixtures for Ringwise's real-component tests.

- `infra`: NATS, Redis, Mongo-wire, S3 and SMTP as real local processes (TEST_PORTS).
- `platform`: the whole platform on top of `infra`: Asterisk in its chroot + every service.
Both are started once per test session; data and logs go to .run/test in the clone (kept
after the run, so a CI failure can be read). Tests that kill or restart a component must
leave it running again.

A failing test on the platform gets the log lines written while it ran (the services'
warnings and errors, routing's call lines, Asterisk's warnings) in its report: CI prints
only pytest's output.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

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


# Where each platform log ended when a test's call phase began.
_LOG_OFFSETS = pytest.StashKey[dict[Path, int]]()
EXCERPT_LINES = 60
EXCERPT_LINE_CHARS = 400


def _platform_logs(platform: LocalPlatform) -> list[Path]:
    logs = sorted((platform.data_dir / "logs").glob("*.log"))
    return [*logs, platform.asterisk.messages_log_path]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _shown(path: Path, line: str) -> str | None:
    """How a log line appears in the excerpt, or None if it is not worth showing: Asterisk's
    warnings and errors; the services' warnings and errors and routing's call lines (JSON, as
    `time level event key=value ...`); a service's other output (a traceback, say)."""
    if path.suffix != ".log":  # Asterisk's messages
        return line if "WARNING[" in line or "ERROR[" in line else None
    try:
        entry = json.loads(line)
    except ValueError:
        return line if line.strip() and not line.startswith("===") else None
    if not isinstance(entry, dict):
        return None
    level = entry.pop("level", "")
    if level not in ("warning", "error", "critical") and not (
        path.stem == "routing" and "call_id" in entry
    ):
        return None
    time = str(entry.pop("timestamp", ""))[11:23]
    entry.pop("service", None)
    head = f"{time} {level} {entry.pop('event', '')}"
    return " ".join([head, *(f"{key}={value}" for key, value in entry.items())])


def log_excerpt(offsets: dict[Path, int]) -> str:
    """The lines worth showing that each log got since `offsets`, the newest last."""
    shown: list[str] = []
    for path, offset in offsets.items():
        try:
            with path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except OSError:
            continue
        lines = [out for line in text.splitlines() if (out := _shown(path, line)) is not None]
        name = "asterisk" if path.suffix != ".log" else path.stem
        shown += [f"{name}: {line[:EXCERPT_LINE_CHARS]}" for line in lines[-EXCERPT_LINES:]]
    return "\n".join(shown[-EXCERPT_LINES:])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    platform = getattr(item, "funcargs", {}).get("platform")
    if isinstance(platform, LocalPlatform):
        item.stash[_LOG_OFFSETS] = {path: _size(path) for path in _platform_logs(platform)}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "call" or not report.failed or _LOG_OFFSETS not in item.stash:
        return
    excerpt = log_excerpt(item.stash[_LOG_OFFSETS])
    if excerpt:
        report.sections.append(("platform logs during the test", excerpt))
