"""Routing, grouping, inhibition, maintenance and delivery of alerts.

Timing follows Alertmanager's meaning: a new group waits ``group_wait`` before its first
message, so alerts that start together go out together; after that a group sends at most once
per ``group_interval``, and only when something changed; a group that keeps firing unchanged is
re-sent every ``repeat_interval``. When at least ``regional.min_communes`` communes of one
province lose the same operator within ``regional.window``, one regional alert names them and
their per-commune alerts are inhibited. Maintenance windows mute notifications; the outages are
still recorded by the detector.

Planning (:meth:`Dispatcher.due`) is pure and takes the time as an argument; delivery
(:meth:`Dispatcher.deliver`) retries each notification on its own task, so a failing receiver
never holds the others up, and reports every attempt to a callback.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lomsong.collector.alerts.messages import NAMED_HAMLETS, Facts, render, summary
from lomsong.collector.alerts.model import (
    Alert,
    DeliveryError,
    Notification,
    Receiver,
    Status,
)
from lomsong.config.alerts import AlertsConfig, RouteConfig
from lomsong.words import Language

log = logging.getLogger(__name__)

ALERT_NAMES = {
    "probe_silent": "LomsongProbeSilent",
    "uplink_down": "LomsongUplinkDown",
    "degraded": "LomsongUplinkDegraded",
    "regional": "LomsongRegionalOperatorLoss",
}
SEVERITY = {
    "probe_silent": "critical",
    "uplink_down": "warning",
    "degraded": "info",
    "regional": "critical",
}


@dataclass(frozen=True)
class AlertSource:
    """An outage as the dispatcher takes it: identity, labels and the facts for messages."""

    fingerprint: str
    status: Status
    facts: Facts

    @property
    def labels(self) -> dict[str, str]:
        f = self.facts
        labels = {
            "alertname": ALERT_NAMES.get(f.condition, f.condition),
            "condition": f.condition,
            "severity": SEVERITY.get(f.condition, "warning"),
            "province": f.province_code,
        }
        optional = {
            "commune": f.commune_code,
            "probe": f.probe_id,
            "uplink": f.uplink,
            "operator": f.operator,
            "cause": f.cause,
        }
        labels.update({k: v for k, v in optional.items() if v})
        return labels


@dataclass(frozen=True)
class Attempt:
    """One try at delivering one notification, as recorded and shown in the API."""

    receiver: str
    route: str
    group_key: str
    status: Status
    fingerprints: tuple[str, ...]
    attempt: int
    ok: bool
    error: str | None
    at: float


@dataclass
class _Group:
    route: RouteConfig
    key: str
    labels: dict[str, str]
    created: float
    alerts: dict[str, AlertSource] = field(default_factory=dict)
    notified: set[str] = field(default_factory=set)
    last_flush: float | None = None


class Dispatcher:
    """Turns the current alerts into notifications at the right times, and delivers them."""

    def __init__(
        self,
        config: AlertsConfig,
        receivers: Mapping[str, Receiver],
        *,
        record: Callable[[Attempt], None] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.receivers = dict(receivers)
        self._record = record
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._alerts: dict[str, AlertSource] = {}
        self._groups: dict[str, _Group] = {}
        self._restored: dict[str, tuple[set[str], float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- input ---------------------------------------------------------------------------------

    def restore(self, group_key: str, notified: Iterable[str], last_flush: float) -> None:
        """Remember what an earlier leader already sent, so a takeover sends nothing twice."""
        self._restored[group_key] = (set(notified), last_flush)

    def update(self, sources: Iterable[AlertSource], now: float) -> None:
        """Take new or changed alerts (firing or resolved) and route them into groups."""
        for s in sources:
            self._alerts[s.fingerprint] = s
        routable, inhibited = self._with_regional(now)
        for s in routable:
            for route in self._routes_for(s):
                self._group_for(route, s, now).alerts[s.fingerprint] = s
        for g in self._groups.values():
            # Covered by a regional alert before anyone was told: never told on its own.
            for fp in inhibited & set(g.alerts) - g.notified:
                del g.alerts[fp]
        # Resolved alerts live on only in the groups that still have to tell of them.
        for fp in [fp for fp, s in self._alerts.items() if s.status == "resolved"]:
            del self._alerts[fp]

    # -- planning ------------------------------------------------------------------------------

    def due(self, now: float) -> list[Notification]:
        """Notifications to send now; the groups are updated as if they were sent."""
        out: list[Notification] = []
        for key in list(self._groups):
            g = self._groups[key]
            if g.last_flush is None:
                ready = now >= g.created + g.route.group_wait
            else:
                ready = (
                    self._changed(g, now) and now >= g.last_flush + g.route.group_interval
                ) or (bool(self._firing(g, now)) and now >= g.last_flush + g.route.repeat_interval)
            if ready:
                note = self._flush(g, now)
                if note is not None:
                    out.append(note)
            # An empty group is kept for one group_interval after its last message, so an alert
            # that flaps back at once waits its turn instead of opening a new group.
            if not g.alerts and (
                g.last_flush is None or now >= g.last_flush + g.route.group_interval
            ):
                del self._groups[key]
        return out

    def _visible(self, s: AlertSource, now: float) -> bool:
        return not any(m.active(now) and m.match.matches(s.labels) for m in self.config.maintenance)

    def _firing(self, g: _Group, now: float) -> set[str]:
        return {fp for fp, s in g.alerts.items() if s.status == "firing" and self._visible(s, now)}

    def _changed(self, g: _Group, now: float) -> bool:
        firing = self._firing(g, now)
        resolved = {fp for fp, s in g.alerts.items() if s.status == "resolved"}
        return bool(firing - g.notified) or bool(resolved & g.notified)

    def _flush(self, g: _Group, now: float) -> Notification | None:
        firing = self._firing(g, now)
        resolved = {fp for fp, s in g.alerts.items() if s.status == "resolved"} & g.notified
        include = sorted(firing | (resolved if g.route.send_resolved else set()))
        sources = [g.alerts[fp] for fp in include]
        for fp in [fp for fp, s in g.alerts.items() if s.status == "resolved"]:
            del g.alerts[fp]
        g.notified = firing
        g.last_flush = now
        if not sources:
            return None
        status: Status = "firing" if firing else "resolved"
        return self._notification(g, sources, status, now)

    def _notification(
        self, g: _Group, sources: list[AlertSource], status: Status, now: float
    ) -> Notification:
        lang: Language = g.route.language
        alerts = tuple(
            Alert(
                fingerprint=s.fingerprint,
                status=s.status,
                labels=s.labels,
                annotations={
                    "summary": summary(s.facts, s.status, lang),
                    "description": render([(s.facts, s.status)], s.status, lang, now)[1],
                    **({"map_url": s.facts.map_url} if s.facts.map_url else {}),
                },
                starts_at=s.facts.started_at,
                ends_at=s.facts.ended_at if s.status == "resolved" else None,
                url=s.facts.map_url,
            )
            for s in sources
        )
        title, text = render([(s.facts, s.status) for s in sources], status, lang, now)
        common = dict(alerts[0].labels)
        for a in alerts[1:]:
            common = {k: v for k, v in common.items() if a.labels.get(k) == v}
        return Notification(
            receiver=g.route.receiver,
            group_key=g.key,
            group_labels=dict(g.labels),
            status=status,
            alerts=alerts,
            language=lang,
            title=title,
            text=text,
            common_labels=common,
            external_url=self.config.external_url,
        )

    # -- routing and regional grouping ----------------------------------------------------------

    def _routes_for(self, s: AlertSource) -> list[RouteConfig]:
        out = []
        for route in self.config.routes:
            if route.match.matches(s.labels):
                out.append(route)
                if not route.continue_:
                    break
        return out

    def _group_for(self, route: RouteConfig, s: AlertSource, now: float) -> _Group:
        labels = {k: s.labels.get(k, "") for k in route.group_by}
        key = route.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"
        g = self._groups.get(key)
        if g is None:
            g = self._groups[key] = _Group(route=route, key=key, labels=labels, created=now)
            restored = self._restored.pop(key, None)
            if restored is not None:
                g.notified, g.last_flush = restored
        return g

    def _with_regional(self, now: float) -> tuple[list[AlertSource], set[str]]:
        """The alerts to route (regional ones added) and the per-commune ones they inhibit."""
        cfg = self.config.regional
        alerts = [s for s in self._alerts.values() if not s.fingerprint.startswith("regional:")]
        if not cfg.enabled:
            return alerts, set()
        down: dict[tuple[str, str], list[AlertSource]] = {}
        for s in alerts:
            f = s.facts
            if f.condition == "uplink_down" and f.operator and s.status == "firing":
                down.setdefault((f.province_code, f.operator), []).append(s)
        inhibited: set[str] = set()
        regional: list[AlertSource] = []
        for (province, operator), members in down.items():
            fp = f"regional:{province}:{operator}"
            active = self._alerts.get(fp)
            chosen = members if active is not None else _cluster(members, cfg.window)
            communes = {m.facts.commune_code for m in chosen}
            if active is None and len(communes) < cfg.min_communes:
                continue
            first = min(chosen, key=lambda m: m.facts.started_at).facts
            facts = Facts(
                condition="regional",
                province_code=province,
                province_name=first.province_name,
                operator=operator,
                cause="network",
                started_at=first.started_at,
                communes=tuple(
                    sorted({(m.facts.commune_code, m.facts.commune_name) for m in chosen})
                ),
                map_url=first.map_url.rsplit("#", 1)[0],
                **_hamlets_of(m.facts for m in chosen),
            )
            source = AlertSource(fingerprint=fp, status="firing", facts=facts)
            self._alerts[fp] = source
            regional.append(source)
            inhibited |= {m.fingerprint for m in chosen}
        # A regional alert whose communes have all recovered resolves.
        for fp, s in list(self._alerts.items()):
            if fp.startswith("regional:") and s.status == "firing" and s not in regional:
                key = tuple(fp.split(":")[1:3])
                if key not in down:
                    ended = replace(s.facts, ended_at=now)
                    self._alerts[fp] = AlertSource(fp, "resolved", ended)
                    regional.append(self._alerts[fp])
        return [s for s in alerts if s.fingerprint not in inhibited] + regional, inhibited

    # -- delivery ------------------------------------------------------------------------------

    def deliver(
        self, notes: Iterable[Notification], now: Callable[[], float]
    ) -> list[asyncio.Task[None]]:
        """Start one delivery task per notification; each retries on its own."""
        started = []
        for note in notes:
            task = asyncio.get_running_loop().create_task(self._deliver(note, now))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started.append(task)
        return started

    async def _deliver(self, note: Notification, now: Callable[[], float]) -> None:
        receiver = self.receivers.get(note.receiver)
        fingerprints = tuple(a.fingerprint for a in note.alerts)
        route = note.group_key.split("{", 1)[0]
        for attempt in range(1, self.config.max_attempts + 1):
            error: str | None = None
            retryable = True
            try:
                if receiver is None:
                    raise DeliveryError(note.receiver, "no such receiver", retryable=False)
                await receiver.send(note)
            except DeliveryError as exc:
                error, retryable = exc.reason, exc.retryable
            except Exception as exc:  # a receiver bug must not stop the others
                log.exception("receiver %s failed", note.receiver)
                error = f"{type(exc).__name__}: {exc}"
            if self._record is not None:
                self._record(
                    Attempt(
                        note.receiver,
                        route,
                        note.group_key,
                        note.status,
                        fingerprints,
                        attempt,
                        error is None,
                        error,
                        now(),
                    )
                )
            if error is None or not retryable:
                return
            if attempt < self.config.max_attempts:
                # Full jitter: spread the retries of many groups over the backoff window.
                backoff = self.config.retry_base * 2 ** (attempt - 1)
                await self._sleep(self._rng.uniform(0, backoff))

    async def drain(self) -> None:
        """Wait for every delivery under way (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _cluster(members: list[AlertSource], window: float) -> list[AlertSource]:
    """The largest set of outages that started within ``window`` of each other."""
    ordered = sorted(members, key=lambda m: m.facts.started_at)
    best: list[AlertSource] = []
    lo = 0
    for hi in range(len(ordered)):
        while ordered[hi].facts.started_at - ordered[lo].facts.started_at > window:
            lo += 1
        if len({m.facts.commune_code for m in ordered[lo : hi + 1]}) > len(
            {m.facts.commune_code for m in best}
        ):
            best = ordered[lo : hi + 1]
    return best


def _hamlets_of(members: Iterable[Facts]) -> dict[str, Any]:
    """A regional alert's hamlets: the sum over its communes, when every one of them is known."""
    facts = list({f.commune_code: f for f in members}.values())  # a commune counts once
    if not facts or any(f.hamlets is None for f in facts):
        return {}
    names = sorted((n for f in facts for n in f.hamlet_names), key=lambda n: -n[1])
    return {
        "hamlets": sum(f.hamlets or 0 for f in facts),
        "population": sum(f.population or 0 for f in facts),
        "hamlets_without_power": sum(f.hamlets_without_power or 0 for f in facts),
        "hamlet_names": tuple(names[:NAMED_HAMLETS]),
    }
