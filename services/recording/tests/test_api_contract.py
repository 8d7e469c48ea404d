"""The OpenAPI fragment and the router agree: every operationId has a handler and back."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ringwise_recording import recordings
from ringwise_recording.recordings.http import RecordingsContext, build_router


def test_every_operation_of_the_fragment_has_a_handler_and_every_handler_is_documented() -> None:
    fragment = (Path(recordings.__file__).parent / "api.yaml").read_text()
    documented = set(re.findall(r"^\s+operationId: (\w+)$", fragment, re.MULTILINE))
    stub: Any = None
    router = build_router(RecordingsContext(store=stub, audit=stub, bucket=stub))
    assert documented == set(router.handlers)
    # Every operation names its roles, and tenant resources live under /v1/tenants/{tenant_id}.
    assert fragment.count("x-ringwise-roles:") == len(documented)
    paths = re.findall(r"^  (/\S+):$", fragment, re.MULTILINE)
    assert paths and all(p.startswith("/v1/tenants/{tenant_id}/") for p in paths)
