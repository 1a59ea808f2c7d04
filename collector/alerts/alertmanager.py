"""The Alertmanager receiver: pushes alerts to an Alertmanager's ``/api/v2/alerts``.

Alertmanager keeps an alert active until its ``endsAt`` passes, then resolves it by itself.
Prometheus copes with that by re-sending firing alerts with ``endsAt`` a few intervals ahead;
this receiver does the same: a firing alert goes out with ``endsAt`` = now + ``resend_ttl``,
and the dispatcher's repeats refresh it before it lapses. If lomsong stops, the alert then
resolves on its own rather than hanging forever. A resolved alert goes out with its real end
(in the past), which makes Alertmanager resolve it at once.

Alertmanager knows an alert by its labels alone, so a label whose value changes during the
alert's life would make the resolved alert a different one, and the firing one would linger
until its ``endsAt``. The cause of a silent centre is such a value: known only once the centre
is back. It travels as an annotation here (see ``VOLATILE_LABELS``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from lomsong.collector.alerts.model import Alert, DeliveryError, Notification
from lomsong.collector.alerts.webhook import post_json, resolved_at, rfc3339

#: How long Alertmanager keeps a firing alert that is not re-sent (Prometheus uses 4 × its
#: resend delay); the dispatcher must re-send more often than this.
DEFAULT_RESEND_TTL = 15 * 60.0
#: Labels that may change while an alert is open; sent to Alertmanager as annotations.
VOLATILE_LABELS = frozenset({"cause"})


def alertmanager_alerts(
    notification: Notification, *, now: float, resend_ttl: float = DEFAULT_RESEND_TTL
) -> list[dict[str, Any]]:
    """The body of ``POST /api/v2/alerts`` (a list of postable alerts) for one notification."""
    return [_postable(a, now=now, resend_ttl=resend_ttl) for a in notification.alerts]


def _postable(alert: Alert, *, now: float, resend_ttl: float) -> dict[str, Any]:
    if alert.status == "firing":
        ends = now + resend_ttl
    else:
        # Alertmanager refuses an alert that ends before it starts (HTTP 400), so an outage
        # whose start was corrected later than its recorded end still resolves.
        ends = max(resolved_at(alert), alert.starts_at)
    labels = {k: v for k, v in alert.labels.items() if k not in VOLATILE_LABELS}
    annotations = dict(alert.annotations)
    annotations.update({k: v for k, v in alert.labels.items() if k in VOLATILE_LABELS})
    body: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": rfc3339(ends),
    }
    # The API types generatorURL as a URI; an absent one is valid, a malformed one is a 422.
    if alert.url:
        body["generatorURL"] = alert.url
    return body


class AlertmanagerReceiver:
    """Delivers a notification's alerts to the Alertmanager at ``url`` (its base URL).

    ``clock`` gives the epoch seconds that firing alerts' ``endsAt`` counts from; ``http`` lets
    receivers share one connection pool (a client passed in is not closed by :meth:`close`).
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout: float = 10,
        resend_ttl: float = DEFAULT_RESEND_TTL,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                f"alertmanager receiver {name!r}: url {url!r} must start with http(s)://"
            )
        if timeout <= 0:
            raise ValueError(f"alertmanager receiver {name!r}: timeout {timeout!r} must be > 0")
        if resend_ttl <= 0:
            raise ValueError(
                f"alertmanager receiver {name!r}: resend_ttl {resend_ttl!r} must be > 0"
            )
        self.name = name
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.timeout = timeout
        self.resend_ttl = resend_ttl
        self._clock = clock
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()

    async def send(self, notification: Notification) -> None:
        try:
            body = alertmanager_alerts(notification, now=self._clock(), resend_ttl=self.resend_ttl)
        except ValueError as exc:
            raise DeliveryError(self.name, str(exc), retryable=False) from exc
        await post_json(self._http, self.name, self.url, body, request_timeout=self.timeout)

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()
