"""The HTTP transport's guards: a bearer token on every request, and loopback unless told otherwise."""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from memagent.errors import InputError

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_UNAUTHORIZED = b'{"error":"unauthorized","error_description":"send Authorization: Bearer <token>"}'


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe), for a server started without one."""
    return secrets.token_urlsafe(32)


MIN_TOKEN = 16  # characters of a token given by the operator


def check_token(token: str) -> None:
    """Refuse a given token too short to guard the server, or one a client could not send in a header
    (never quoting it: it is a secret)."""
    if len(token) < MIN_TOKEN or not all(33 <= ord(c) <= 126 for c in token):
        raise InputError(
            f"the MCP token (--token or MEMAGENT_MCP_TOKEN) must be at least {MIN_TOKEN} printable ASCII "
            "characters without spaces; leave it unset and memagent makes one."
        )


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only: localhost, 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it could resolve to any interface


def check_host(host: str, *, allow_remote: bool) -> None:
    """Refuse an interface other machines can reach, unless the operator said so (--allow-remote)."""
    if allow_remote or is_loopback(host):
        return
    raise InputError(
        f"--host {host} is not a loopback address: other machines could reach the server, and the token "
        "travels in plain HTTP; pass --allow-remote to serve there anyway (put TLS in front of it)."
    )


class BearerAuth:
    """ASGI middleware: HTTP requests without `Authorization: Bearer <token>` get 401, before the MCP app."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        """token: the one accepted; compared in constant time."""
        self.app = app
        self._expected = token.encode()

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                scheme, _, given = bytes(value).partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._expected)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass lifespan events through; answer 401 to a request without the right token."""
        if scope["type"] == "lifespan" or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # a websocket: the MCP app has none, and no token either
            await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="memagent"'),
                    (b"content-length", str(len(_UNAUTHORIZED)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _UNAUTHORIZED})
