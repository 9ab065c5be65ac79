"""Browser security headers on every response, as a pure ASGI middleware.

Not `BaseHTTPMiddleware`: that one runs the response through a memory stream, which holds
back and can break a long-lived event stream. This one only adds headers to the
`http.response.start` message and passes every body chunk on as it comes.

The dashboard (api/static/) has no inline script or style, so `default-src 'self'` holds for
it; its favicon is a `data:` image. FastAPI's /docs and /redoc pages load their scripts from
a CDN and run an inline one: they get every header but the CSP's resource rules. Only
those pages (and what lies under them, such as /docs/oauth2-redirect): `/docsX` is not one.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
DOCS_CONTENT_SECURITY_POLICY = "frame-ancestors 'none'"
_DOCS_PATHS = ("/docs", "/redoc")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def is_docs_path(path: str) -> bool:
    """True for /docs, /redoc and the paths below them; not for /docsX or /redocs."""
    return any(path == docs or path.startswith(f"{docs}/") for docs in _DOCS_PATHS)


class SecurityHeadersMiddleware:
    """Adds CSP, nosniff, Referrer-Policy and X-Frame-Options unless a route set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = is_docs_path(str(scope.get("path", "")))
        policy = DOCS_CONTENT_SECURITY_POLICY if docs else CONTENT_SECURITY_POLICY

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(raw=list(message.get("headers", [])))
                headers.setdefault("Content-Security-Policy", policy)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                message["headers"] = headers.raw
            await send(message)

        await self.app(scope, receive, send_with_headers)
