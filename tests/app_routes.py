"""Every route an app serves, as (method, path template, in the OpenAPI schema).

The fuzz test and the authorization matrix both fail when the app grows a route their tables do
not list, so both read the routes from the app itself rather than from a list of their own.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Mount


def _flat_routes(app: Any) -> list[Any]:
    # Newer FastAPI keeps an included router as one entry of app.routes and resolves its
    # routes lazily; iter_route_contexts walks them. Older ones list every route flat.
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def routes_of(app: Any) -> set[tuple[str, str, bool]]:
    """``(method, path, include_in_schema)`` of every route; ``HEAD`` is left out where the
    route also answers ``GET`` (Starlette adds it to every GET route), and a mount (static
    files, a sub-application) appears once with the method ``MOUNT``."""
    out: set[tuple[str, str, bool]] = set()
    for route in _flat_routes(app):
        original = getattr(route, "original_route", route)
        path = route.path
        if isinstance(original, Mount):
            out.add(("MOUNT", path, False))
            continue
        methods = set(route.methods or ())
        if "GET" in methods:
            methods.discard("HEAD")
        in_schema = bool(getattr(original, "include_in_schema", True))
        out |= {(m, path, in_schema) for m in methods}
    return out
