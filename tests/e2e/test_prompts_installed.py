"""Every prompt the routing policy plays is a sound the running Asterisk knows."""

from __future__ import annotations

import aiohttp
import pytest
from ringwise_dev.platform import LocalPlatform
from ringwise_routing.calls import policy
from ringwise_routing.plans import model

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


PROMPTS = sorted(
    {m for p in (*policy.ALL_PROMPTS, *policy.PLAN_PROMPTS) for m in p}
    | {model.PROMPT_CALL_REJECTED, model.PROMPT_NOT_AVAILABLE, policy.playable("greeting:x")}
)


@pytest.mark.parametrize("prompt", PROMPTS)
async def test_prompt_is_an_installed_sound(platform: LocalPlatform, prompt: str) -> None:
    kind, name = prompt.split(":", 1)
    assert kind == "sound"
    asterisk = platform.asterisk
    async with (
        aiohttp.ClientSession(headers=asterisk.ari_auth_headers()) as session,
        session.get(f"{asterisk.ari_url}/ari/sounds", params={"lang": "en"}) as resp,
    ):
        assert resp.status == 200
        sounds = {sound["id"] for sound in await resp.json()}
    assert name in sounds, f"Asterisk has no English sound {name}"
