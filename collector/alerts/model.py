"""What the alerting side passes around: alerts, notifications, and the receiver interface.

An :class:`Alert` is one outage (or one regional group of outages) in the shape Alertmanager
gives its alerts: labels that identify it, annotations that describe it, start and end. The
dispatcher groups alerts per route into a :class:`Notification` and hands it to a
:class:`Receiver`, one file each in this package (``webhook.py``, ``email.py``,
``alertmanager.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from lomsong.errors import LomsongError
from lomsong.words import Language

Status = Literal["firing", "resolved"]


@dataclass(frozen=True)
class Alert:
    """One alert: labels identify it, annotations describe it (already in the route's language)."""

    #: Stable identity across re-sends: the outage id, or the regional group's key.
    fingerprint: str
    status: Status
    labels: dict[str, str]
    annotations: dict[str, str]
    #: epoch seconds
    starts_at: float
    ends_at: float | None = None
    #: link to the map or status page of the affected place
    url: str = ""


@dataclass(frozen=True)
class Notification:
    """One message to one receiver about one group of alerts."""

    receiver: str
    #: identifies the group (route and group_by values), stable across the group's messages
    group_key: str
    group_labels: dict[str, str]
    status: Status
    alerts: tuple[Alert, ...]
    language: Language
    #: the message, rendered for people: a one-line title and a body
    title: str
    text: str
    #: labels and annotations shared by every alert of the group
    common_labels: dict[str, str] = field(default_factory=dict)
    common_annotations: dict[str, str] = field(default_factory=dict)
    external_url: str = ""


class Receiver(Protocol):
    """Delivers notifications somewhere; raises :class:`DeliveryError` when it could not."""

    name: str

    async def send(self, notification: Notification) -> None: ...

    async def close(self) -> None: ...


class DeliveryError(LomsongError):
    """A receiver could not deliver; the dispatcher retries with backoff and records it."""

    def __init__(self, receiver: str, reason: str, *, retryable: bool = True) -> None:
        super().__init__(f"receiver {receiver!r}: {reason}")
        self.receiver = receiver
        self.reason = reason
        self.retryable = retryable
