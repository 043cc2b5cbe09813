"""What keeps the dashboard read-only and private: where it may listen, who may ask, what a browser may run.

- It listens on a loopback address unless a token is given; with a token every request must carry it
  (`Authorization: Bearer T`, `X-Accord-Token: T` or `?token=T`), compared in constant time.
- Every response carries a Content-Security-Policy that allows no script at all, images and style sheets
  from the dashboard only, no framing; `nosniff`, `no-referrer` and `no-store` besides.
- A request whose Host header names another site (DNS rebinding) is refused on a loopback bind, and a
  POST from another origin is refused everywhere.

This module must never relax a rule for one route: the guard wraps the whole application.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp

from federated.errors import ConfigError

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
TOKEN_HEADER = "X-Accord-Token"
MIN_TOKEN_LENGTH = 16
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse (`ConfigError`) to listen beyond this machine without a token, or with a guessable one."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"--token: at least {MIN_TOKEN_LENGTH} characters (e.g. `python -c 'import secrets; "
                          "print(secrets.token_urlsafe())'`)")
    if not is_loopback(host) and token is None:
        raise ConfigError(f"--host {host}: not a loopback address; the dashboard listens there only with --token "
                          "(every request must then carry it)")


def _host_name(header: str) -> str:
    """The host of a Host header, without the port ("[::1]:8050" -> "[::1]")."""
    if header.startswith("["):
        return header[: header.find("]") + 1]
    return header.rsplit(":", 1)[0]


def _same_origin(request: Request) -> bool:
    """Whether a POST comes from this dashboard's own pages. Browsers say so in Sec-Fetch-Site (with
    `Referrer-Policy: no-referrer` their Origin is "null"); without it, Origin must name this site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


def request_token(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return request.headers.get(TOKEN_HEADER) or request.query_params.get("token")


class Guard(BaseHTTPMiddleware):
    """The token, Host and Origin checks, and the security headers on every response (refusals included)."""

    def __init__(self, app: ASGIApp, *, token: str | None, allowed_hosts: tuple[str, ...] | None) -> None:
        super().__init__(app)
        self.token = token
        self.allowed_hosts = allowed_hosts

    def _refusal(self, request: Request) -> Response | None:
        host = _host_name(request.headers.get("host", ""))
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            return PlainTextResponse(f"host {host!r} is not served here", status_code=400)
        if self.token is not None:
            given = request_token(request)
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                return PlainTextResponse("a valid token is required (Authorization: Bearer, X-Accord-Token or ?token=)",
                                         status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if request.method not in ("GET", "HEAD", "POST"):
            return PlainTextResponse("read-only", status_code=405)
        if request.method == "POST" and not _same_origin(request):
            return PlainTextResponse("cross-origin POST refused", status_code=403)
        return None

    async def dispatch(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = self._refusal(request) or await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response


def allowed_hosts(host: str, token: str | None) -> tuple[str, ...] | None:
    """Host headers a loopback bind answers (None: any, for a bind beyond loopback, which the token guards)."""
    if token is not None and not is_loopback(host):
        return None
    return tuple(dict.fromkeys((host, *LOOPBACK_NAMES)))
