"""api/headers.py: only the API documentation pages get the relaxed Content-Security-Policy."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message, Receive, Scope, Send

from api.headers import (
    CONTENT_SECURITY_POLICY,
    DOCS_CONTENT_SECURITY_POLICY,
    SecurityHeadersMiddleware,
)


async def _empty_response(_scope: Scope, _receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _policy_for(path: str) -> str:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "GET", "path": path, "headers": []}
    asyncio.run(SecurityHeadersMiddleware(_empty_response)(scope, receive, send))
    headers = dict(sent[0]["headers"])
    return headers[b"content-security-policy"].decode()


@pytest.mark.parametrize("path", ["/docs", "/docs/oauth2-redirect", "/redoc"])
def test_the_documentation_pages_get_the_relaxed_policy(path: str) -> None:
    assert _policy_for(path) == DOCS_CONTENT_SECURITY_POLICY


@pytest.mark.parametrize("path", ["/docsX", "/docs-evil", "/redocs", "/api/docs", "/"])
def test_a_path_that_merely_starts_like_the_docs_gets_the_strict_policy(path: str) -> None:
    assert _policy_for(path) == CONTENT_SECURITY_POLICY
