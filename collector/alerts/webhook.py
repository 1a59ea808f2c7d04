"""The webhook receiver: POSTs Alertmanager's webhook payload (version 4) as JSON.

Chat bridges written for Alertmanager (Telegram, Zalo, Slack, Matrix relays …) read this shape,
so they work unchanged when pointed at lomsong. The helpers that turn epoch seconds into
Alertmanager's RFC 3339 times and that POST JSON with one attempt and a classified failure are
shared with the Alertmanager receiver (``alertmanager.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from lomsong import __version__
from lomsong.collector.alerts.model import Alert, DeliveryError, Notification

#: What Go's zero ``time.Time`` marshals to: Alertmanager sends it as ``endsAt`` while firing.
ZERO_TIME = "0001-01-01T00:00:00Z"
USER_AGENT = f"lomsong/{__version__}"
#: How much of an error response's body goes into the recorded reason.
_BODY_EXCERPT = 200


def rfc3339(epoch: float) -> str:
    """Epoch seconds as RFC 3339 in UTC, like Go's RFC3339Nano: ``2025-03-01T22:05:07.25Z``."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def alertmanager_webhook_payload(notification: Notification) -> dict[str, Any]:
    """Alertmanager's webhook body (version 4) for one notification.

    ``commonAnnotations`` also carries the rendered title and text as ``summary`` and
    ``description`` when the alerts do not share those already, because that is what chat
    bridges print.

    Raises
    ------
    ValueError
        When a resolved alert has no ``ends_at``: the receiver cannot say when it ended.

    Examples
    --------
    >>> payload = alertmanager_webhook_payload(notification)  # doctest: +SKIP
    >>> payload["version"], payload["alerts"][0]["endsAt"]  # doctest: +SKIP
    ('4', '0001-01-01T00:00:00Z')
    """
    annotations = dict(notification.common_annotations)
    annotations.setdefault("summary", notification.title)
    annotations.setdefault("description", notification.text)
    return {
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": 0,
        "status": notification.status,
        "receiver": notification.receiver,
        "groupLabels": dict(notification.group_labels),
        "commonLabels": dict(notification.common_labels),
        "commonAnnotations": annotations,
        "externalURL": notification.external_url,
        "alerts": [_alert(a) for a in notification.alerts],
    }


def _alert(alert: Alert) -> dict[str, Any]:
    return {
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": rfc3339(alert.starts_at),
        # Alertmanager hides the end of an alert that has not ended yet behind the zero time.
        "endsAt": ZERO_TIME if alert.status == "firing" else rfc3339(resolved_at(alert)),
        "generatorURL": alert.url,
        "fingerprint": alert.fingerprint,
    }


def resolved_at(alert: Alert) -> float:
    """When a resolved alert ended; a resolved alert without an end is the caller's bug."""
    if alert.ends_at is None:
        raise ValueError(
            f"alert {alert.fingerprint!r} has status 'resolved' but ends_at is None; "
            "a resolved alert must say when it ended"
        )
    return alert.ends_at


async def post_json(
    http: httpx.AsyncClient,
    receiver: str,
    url: str,
    body: object,
    *,
    request_timeout: float,
    headers: Mapping[str, str] | None = None,
) -> None:
    """POST ``body`` as JSON once; raise :class:`DeliveryError` unless the answer is 2xx.

    Retryable: timeouts, connection failures, 5xx, 408 and 429. Not retryable: other 4xx and a
    URL that cannot work (bad scheme or syntax), since sending again cannot change them.
    """
    sent_headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    sent_headers.update(headers or {})
    try:
        # orjson keeps Vietnamese text as UTF-8 rather than \u escapes, as Alertmanager does.
        response = await http.post(
            url, content=orjson.dumps(body), headers=sent_headers, timeout=request_timeout
        )
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        # UnsupportedProtocol is a TransportError too: it must be caught before those.
        raise DeliveryError(receiver, f"bad URL {url!r}: {exc}", retryable=False) from exc
    except httpx.TimeoutException as exc:
        raise DeliveryError(
            receiver, f"timed out after {request_timeout:g} s posting to {url}"
        ) from exc
    except httpx.TransportError as exc:
        raise DeliveryError(
            receiver, f"could not reach {url}: {type(exc).__name__}: {exc}"
        ) from exc
    status = response.status_code
    if 200 <= status < 300:
        return
    excerpt = response.text[:_BODY_EXCERPT].strip()
    # A 4xx says the request itself is wrong; only a timeout or a rate limit may pass later.
    retryable = not (400 <= status < 500) or status in (408, 429)
    raise DeliveryError(
        receiver,
        f"{url} answered HTTP {status}" + (f": {excerpt}" if excerpt else ""),
        retryable=retryable,
    )


class WebhookReceiver:
    """Delivers each notification as one POST of Alertmanager's webhook JSON to ``url``.

    ``http`` lets several receivers share one connection pool; a client passed in belongs to
    the caller and is not closed by :meth:`close`.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout: float = 10,
        headers: Mapping[str, str] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook receiver {name!r}: url {url!r} must start with http(s)://")
        if timeout <= 0:
            raise ValueError(f"webhook receiver {name!r}: timeout {timeout!r} must be > 0")
        self.name = name
        self.url = url
        self.timeout = timeout
        self.headers = dict(headers or {})
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient()

    async def send(self, notification: Notification) -> None:
        try:
            payload = alertmanager_webhook_payload(notification)
        except ValueError as exc:
            raise DeliveryError(self.name, str(exc), retryable=False) from exc
        await post_json(
            self._http,
            self.name,
            self.url,
            payload,
            request_timeout=self.timeout,
            headers=self.headers,
        )

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()
