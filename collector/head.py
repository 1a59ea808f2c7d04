"""``HEAD`` wherever ``GET`` is: the request is served as a ``GET`` and its body is dropped.

FastAPI routes answer only the methods they declare, so a ``GET`` route answered ``HEAD`` with
405. Declaring ``HEAD`` on every route would be easy to forget on the next one; here no route
can forget it, and the status and headers (``Content-Length``, ``ETag``, ``Set-Cookie``) are
``GET``'s by construction. A ``HEAD`` costs what a ``GET`` costs: monitors and link checkers send
few, and the maps are served from memory.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: set in the scope of a HEAD served as GET
HEAD_MARK = "lomsong.head"


class HeadAsGet:
    """Pure ASGI middleware: runs a ``HEAD`` request as ``GET`` and sends no body.

    Mounted outermost, so that the timing middleware and the routes see a ``GET``: the
    latency histogram counts a ``HEAD`` under ``GET``, the route it went to.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # a copy: the server keeps its own scope saying HEAD, and so sends no body either; a
        # route whose GET hands something out once (an enrolment's token) reads HEAD_MARK
        await self.app({**scope, "method": "GET", HEAD_MARK: True}, receive, headers_only)
