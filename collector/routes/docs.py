"""``/docs``, ``/redoc`` and their scripts under ``/static/docs/``: API docs without Internet.

FastAPI's own docs pages load Swagger UI and ReDoc from a CDN, so at a provincial office with no
way out they were a blank page. The same scripts come installed with the ``fastapi-offline``
package (the server extra); the collector serves them itself, from that package's folder, and
the pages name no outside address (ReDoc without Google's fonts).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)

PREFIX = "/static/docs"
#: the files a docs page loads, and the type each is served as
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
Asset = Literal["swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"]
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def asset_folder() -> Path:
    """Where the installed package keeps the scripts (found without importing it)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the fastapi-offline package is missing: pip install 'lomsong[server]'")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _title(request: Request) -> str:
    return str(request.app.title)


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=str(request.app.openapi_url),
        title=f"{_title(request)} — Swagger UI",
        swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{PREFIX}/favicon.png",
        oauth2_redirect_url=OAUTH2_REDIRECT,
    )


@router.get(OAUTH2_REDIRECT)
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=str(request.app.openapi_url),
        title=f"{_title(request)} — ReDoc",
        redoc_js_url=f"{PREFIX}/redoc.standalone.js",
        redoc_favicon_url=f"{PREFIX}/favicon.png",
        with_google_fonts=False,
    )


@router.get(PREFIX + "/{asset}")
def docs_asset(asset: Annotated[Asset, PathParam()]) -> FileResponse:
    """A script, style sheet or icon of the docs pages; a day in the browser's cache (they
    change only when the package is upgraded, and then the ETag does)."""
    return FileResponse(
        asset_folder() / asset,
        media_type=ASSETS[asset],
        headers={"Cache-Control": "public, max-age=86400"},
    )
