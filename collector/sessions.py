"""Browser sessions: where a request comes from, and the cookies that hold a token.

A page on another site can make a browser send requests here: submit a form (``POST /login``
with the attacker's token would sign the officer in as someone else), follow a link (``?token=``
would do the same), or load a page in a pop-up. The defences, each small:

- a request that changes the session (``POST /login``, ``POST /logout``) must name this
  collector as its origin, in ``Origin`` or else ``Referer``; a request with neither is refused,
  since every browser the pages support sends ``Origin`` on a POST;
- a ``?token=`` link followed from another site is not taken silently: the browser is asked
  first, on a page of this site (``Sec-Fetch-Site`` tells where a navigation started);
- the session cookie is SameSite=Strict, so no request started by another site carries it; an
  officer arriving from a webmail's link is sent round once through this site (``reopen``).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from fastapi import Request, Response

from lomsong.collector.deps import TOKEN_COOKIE

#: Holds a ``?token=`` from another site until the officer confirms it on ``GET /login``. Lax,
#: not Strict: it is set and read within a navigation that another site started. Only
#: ``/login`` sees it, and only a same-origin ``POST /login`` turns it into a session.
PENDING_COOKIE = "lomsong_pending"
PENDING_SECONDS = 600

#: The query parameter a page adds when it sends a browser round once to fetch its cookie
#: (``reopen``); seeing it again means the round is done, so there is never a second one.
REOPENED = "reopened"

#: For the pages that sign in or out: another site must not show them in a frame, where a
#: click could be stolen.
NO_FRAMES = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
}

SameSite = Literal["strict", "lax"]


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an absolute http(s) URL, lower case and without a default
    port, so that equal origins compare equal; None for anything else (``null``, a path)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == (443 if scheme == "https" else 80):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def own_origins(request: Request, public_url: str) -> set[str]:
    """This collector's origins: the one the request was addressed to, as the app sees it (the
    ``Host`` header, and the scheme uvicorn takes from a trusted proxy's
    ``X-Forwarded-Proto``), and ``public_url``'s, which is what browsers use behind a proxy
    that does not pass the host on."""
    found = {origin_of(public_url)}
    host = request.headers.get("host")
    if host:
        found.add(origin_of(f"{request.url.scheme}://{host}"))
    return {o for o in found if o is not None}


def claimed_origin(request: Request) -> str | None:
    """The origin a browser says the request comes from: ``Origin``, else ``Referer``'s."""
    origin = request.headers.get("origin")
    if origin is not None:
        # "null" (a sandboxed frame, a data: page, a no-referrer policy) names no origin
        return origin_of(origin)
    referer = request.headers.get("referer")
    return origin_of(referer) if referer else None


def from_this_site(request: Request, public_url: str) -> bool:
    """Whether a request that changes the session was sent by a page of this collector."""
    claimed = claimed_origin(request)
    return claimed is not None and claimed in own_origins(request, public_url)


def fetch_site(request: Request) -> str | None:
    """``Sec-Fetch-Site``: ``none`` (typed, a bookmark, opened by another application),
    ``same-origin``, ``same-site`` or ``cross-site``; None from a browser too old to say."""
    value = request.headers.get("sec-fetch-site")
    return value.strip().lower() if value else None


def started_here(request: Request) -> bool:
    """A navigation the officer started, or a page of this collector: not another site."""
    return fetch_site(request) in ("none", "same-origin")


def arrived_from_another_site(request: Request) -> bool:
    """A top-level navigation from another site: the one request a SameSite=Strict cookie
    misses though the browser holds it."""
    return (
        fetch_site(request) == "cross-site"
        and request.headers.get("sec-fetch-mode", "").lower() == "navigate"
    )


def _secure(request: Request, public_url: str) -> bool:
    return request.url.scheme == "https" or public_url.startswith("https://")


def set_session(response: Response, token: str, request: Request, public_url: str) -> None:
    """Keep ``token`` in the session cookie: HttpOnly, SameSite=Strict, for the whole site."""
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request, public_url),
        path="/",
    )


def end_session(response: Response, request: Request, public_url: str) -> None:
    response.delete_cookie(
        TOKEN_COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request, public_url),
    )


def set_pending(response: Response, token: str, request: Request, public_url: str) -> None:
    response.set_cookie(
        PENDING_COOKIE,
        token,
        max_age=PENDING_SECONDS,
        httponly=True,
        samesite="lax",
        secure=_secure(request, public_url),
        path="/login",
    )


def drop_pending(response: Response, request: Request, public_url: str) -> None:
    response.delete_cookie(
        PENDING_COOKIE,
        path="/login",
        httponly=True,
        samesite="lax",
        secure=_secure(request, public_url),
    )
