"""What a failing platform test's report shows of the logs written while it ran."""

from __future__ import annotations

import json
from pathlib import Path

from ringwise_dev.pytest_plugin import log_excerpt


def line(**entry: str) -> str:
    return json.dumps(entry) + "\n"


def test_the_excerpt_has_what_was_written_during_the_test_that_matters(tmp_path: Path) -> None:
    routing, billing, asterisk = (
        tmp_path / "routing.log",
        tmp_path / "billing.log",
        tmp_path / "messages",
    )
    routing.write_text(line(event="call_routed", call_id="before", level="info"))
    billing.write_text(line(event="old_warning", level="warning"))
    asterisk.write_text("[2026-12-07 22:00:00.000] WARNING[1]: old\n")
    offsets = {path: path.stat().st_size for path in (routing, billing, asterisk)}
    with routing.open("a") as log:
        log.write(line(event="call_routed", call_id="c1", level="info"))
        log.write(line(event="ari_connected", level="info"))  # not a call's line
        log.write("\n=== 22:00:01 start python -m ringwise_routing.main\n")
        log.write(line(event="orphan_channel_hung_up", level="warning"))
    with billing.open("a") as log:
        log.write(line(event="cdr_stored", level="info"))
        log.write(line(event="cdr_store_failed", level="error"))
        log.write("Traceback (most recent call last):\n")
    with asterisk.open("a") as log:
        log.write("[2026-12-07 22:00:01.000] VERBOSE[2]: chatter\n")
        log.write("[2026-12-07 22:00:02.000] WARNING[3]: res_pjsip: timer B\n")
    shown = log_excerpt(offsets).splitlines()
    assert [entry.split(": ", 1)[0] for entry in shown] == [
        "routing",
        "routing",
        "billing",
        "billing",
        "asterisk",
    ]
    assert shown[0] == "routing:  info call_routed call_id=c1"
    assert "orphan_channel_hung_up" in shown[1]
    assert "cdr_store_failed" in shown[2] and "Traceback" in shown[3]
    assert shown[4].endswith("timer B")


def test_a_log_that_does_not_exist_yet_is_passed_over(tmp_path: Path) -> None:
    assert log_excerpt({tmp_path / "voicemail.log": 0}) == ""
