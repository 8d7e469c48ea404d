"""All of voicemail's REST operations (one ApiRouter; each feature folder adds its own)."""

from __future__ import annotations

from ringwise_kit.api import ApiRouter

from ringwise_voicemail.mailbox import http as mailbox_http
from ringwise_voicemail.messages import http as messages_http
from ringwise_voicemail.messages.deposits import Voicemail


def build_router(voicemail: Voicemail) -> ApiRouter:
    router = ApiRouter()
    router.include(mailbox_http.routes(voicemail))
    router.include(messages_http.routes(voicemail))
    return router
