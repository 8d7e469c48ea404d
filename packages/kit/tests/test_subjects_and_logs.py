"""The subject grammar and the call-bound, secret-free JSON logs."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest
import structlog
from ringwise_kit import subjects
from ringwise_kit.logs import bind_call, configure_logging, get_logger


def test_call_event_subjects_follow_the_grammar() -> None:
    assert subjects.call_event("acme", "ended") == "ringwise.v1.call.acme.ended"
    assert subjects.call_event("", "started") == "ringwise.v1.call._.started"
    assert subjects.call_events_of_kind("ended") == "ringwise.v1.call.*.ended"
    assert subjects.dead_letter("billing") == "ringwise.v1.dlq.billing"
    assert subjects.profile_changed("acme") == "ringwise.v1.routing.acme.profile_changed"


@pytest.mark.parametrize("bad", ["a.b", "a b", "*", ">", "a>"])
def test_tenant_ids_that_would_break_subjects_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a valid subject token"):
        subjects.call_event(bad, "ended")


@pytest.fixture
def service_logging() -> Iterator[None]:
    """configure_logging is process-wide: undo it so later tests log as before."""
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    logging.getLogger().handlers.clear()


@pytest.mark.usefixtures("service_logging")
def test_log_lines_are_json_with_call_context_and_no_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("routing", "info")
    log = get_logger("test")
    with bind_call("call-1", tenant_id="acme"):
        log.info("pin_checked", pin="1234", user="alice")
    log.info("outside")
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["event"] == "pin_checked"
    assert first["call_id"] == "call-1"
    assert first["tenant_id"] == "acme"
    assert first["service"] == "routing"
    assert first["pin"] == "***"
    assert "call_id" not in second


@pytest.mark.usefixtures("service_logging")
def test_a_nested_call_binding_restores_the_outer_one_even_after_an_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("routing", "info")
    log = get_logger("test")
    with bind_call("call-1", tenant_id="acme"):
        with pytest.raises(RuntimeError), bind_call("call-1", tenant_id="globex", leg="l2"):
            log.info("inner")
            raise RuntimeError("boom")
        log.info("outer")
    log.info("outside")
    inner, outer, outside = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (inner["tenant_id"], inner["leg"]) == ("globex", "l2")
    assert outer["tenant_id"] == "acme"
    assert outer["call_id"] == "call-1"
    assert "leg" not in outer
    assert outside["service"] == "routing"
    assert "call_id" not in outside
    assert "tenant_id" not in outside


class _RecordedWrites(io.StringIO):
    """An unbuffered stdout that remembers what each write() call was given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.mark.usefixtures("service_logging")
def test_every_log_line_reaches_stdout_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """One write per line: one system call each with unbuffered stdout (as in the images),
    and a line from another thread's stdlib logger cannot split a structlog line in two."""
    stdout = _RecordedWrites()
    monkeypatch.setattr("sys.stdout", stdout)
    configure_logging("routing", "info")
    with bind_call("call-1", tenant_id="acme"):
        get_logger("test").info("routed", user="alice")
    worker = threading.Thread(target=lambda: logging.getLogger("pymongo").warning("slow"))
    worker.start()
    worker.join()
    structured, stdlib = stdout.writes
    assert structured.endswith("\n")
    assert structured.count("\n") == 1
    assert json.loads(structured)["event"] == "routed"
    assert stdlib.endswith("\n")
    assert stdlib.count("\n") == 1
    assert json.loads(stdlib)["event"] == "slow"
