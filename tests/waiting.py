"""Waiting for something observable, by polling it with a deadline: never a bare sleep.

A test that must wait for a real process (a server started, a row stored, an alert delivered)
polls a condition until it holds. The deadline only catches a hang: it is generous, it is never a
lower bound, and a slow machine only makes the wait longer, never the test fail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: How often a condition is polled: small, so a wait ends soon after the condition holds.
INTERVAL = 0.02


def _message(what: str | Callable[[], str], timeout: float) -> str:
    said = what() if callable(what) else what
    return f"{said}: not true after {timeout} s"


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    what: str | Callable[[], str],
    interval: float = INTERVAL,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raises ``AssertionError(f"{what}: not true after {timeout} s")`` at the deadline; ``what``
    may be a callable, called only then (to add a log's tail or what was seen instead).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_message(what, timeout))
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    timeout: float,  # noqa: ASYNC109 - a deadline whose failure names the condition
    what: str | Callable[[], str],
    interval: float = INTERVAL,
) -> T:
    """``wait_until`` inside an event loop: the loop keeps running while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(_message(what, timeout))
        await asyncio.sleep(interval)
