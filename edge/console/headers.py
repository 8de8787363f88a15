"""Security headers on every console response, as a pure ASGI middleware.

Pure ASGI rather than Starlette's BaseHTTPMiddleware: that one runs the app in a second task and is known to
get in the way of streaming responses, and the live event stream never ends.

- Content-Security-Policy: scripts, styles, fetches and images only from the gateway itself (images may also
  be data: URLs, for the QR pass of a walk-in visitor); no framing (clickjacking the "open door" button).
  The one exception is FastAPI's interactive API page (/docs), which loads Swagger UI from its CDN with an
  inline bootstrap script; it shows nothing but the public schema.
- X-Content-Type-Options: nosniff; Referrer-Policy: no-referrer.
- Cache-Control: no-store on the API: door states, events and faces must not linger in a browser cache.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})

_FIXED = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        added = [*_FIXED, (b"content-security-policy", (DOCS_CSP if path in DOCS_PATHS else CSP).encode())]
        if path.startswith("/api/"):
            added.append((b"cache-control", b"no-store"))
        replaced = {name for name, _ in added}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in replaced]
                message["headers"] = [*kept, *added]
            await send(message)

        await self.app(scope, receive, send_with_headers)
