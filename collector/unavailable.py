"""The answer to a request the database cannot serve just now: 503 with ``Retry-After``.

``lomsong.storage.database.unavailable`` tells the database being away, locked or full from a
bug; this module says how long to wait and how to put it: JSON for the API, a short page for a
browser. Every route gets it through the app's error handlers; ``POST /api/v1/reports`` also
counts it as a refusal (reason ``unavailable``).

The waits are per cause. A lock is over in seconds, and the request already waited the busy
timeout. A server restarting or failing over is back in tens of seconds. A full or failing disk
needs someone to act, so asking often only adds load; the agents keep their results in the
spool meanwhile. The agent waits at least ``Retry-After`` (and its own jittered backoff, which
spreads a returning fleet), at most its ``backoff_max_seconds``.
"""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from lomsong.errors import StorageUnavailable
from lomsong.maps import pages

#: Seconds a client should wait before asking again, by ``StorageUnavailable.kind``.
RETRY_AFTER_SECONDS: dict[str, int] = {
    "locked": 5,
    "unreachable": 10,
    "read_only": 10,
    "overloaded": 10,
    "disk_full": 30,
    "io_error": 30,
}
#: For a cause not in the table, and for a schema behind the code (``/readyz``).
DEFAULT_RETRY_AFTER_SECONDS = 30

#: Route tags whose answers are pages for a browser.
_PAGE_TAGS = frozenset({"pages", "maps"})


def retry_after(kind: str) -> int:
    return RETRY_AFTER_SECONDS.get(kind, DEFAULT_RETRY_AFTER_SECONDS)


def describe(exc: StorageUnavailable) -> tuple[str, dict[str, str]]:
    """The one line an answer says, and its headers."""
    wait = retry_after(exc.kind)
    return f"{exc}; try again in {wait} s", {"Retry-After": str(wait)}


def unavailable_response(request: Request, exc: StorageUnavailable) -> Response:
    """503 with Retry-After: JSON ``{"detail", "cause"}``, or a short page on page routes."""
    detail, headers = describe(exc)
    headers["Cache-Control"] = "no-store"
    route = request.scope.get("route")
    if _PAGE_TAGS.intersection(getattr(route, "tags", None) or ()):
        html = pages.message(
            ("Cơ sở dữ liệu tạm thời không dùng được", "Database unavailable"), detail
        )
        return HTMLResponse(html, status_code=503, headers=headers)
    return JSONResponse({"detail": detail, "cause": exc.kind}, status_code=503, headers=headers)
