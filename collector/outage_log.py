"""The collector's journal of outages and notifications: one line per event people care about.

An outage opened, classified or resolved, a notification sent or failed, and at start a warning
when nobody would be told of an outage at all. Each line carries its facts as structured fields
too (``probe``, ``commune``, ``uplink``, ``operator``, ``condition``, ``cause``, ``outage`` …),
which ``--log-format json`` writes out for journald and Loki.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lomsong.collector.alerts.dispatcher import Attempt
from lomsong.collector.detector import Change, Outage
from lomsong.collector.registry import ProbeInfo
from lomsong.config.alerts import AlertsConfig
from lomsong.logs import duration_text
from lomsong.timefmt import iso

log = logging.getLogger("lomsong.collector.outages")


def log_changes(changes: Sequence[Change], probes: Mapping[str, ProbeInfo]) -> None:
    """A line for each outage opened, classified (a silent probe is back) or resolved."""
    for change in changes:
        o = change.outage
        where = _where(o, probes.get(o.probe_id))
        fields = _fields(o, probes.get(o.probe_id))
        if change.action == "open":
            log.warning(
                "outage opened: %s, %s since %s",
                where,
                _condition(o),
                iso(o.started_at),
                extra=fields,
            )
        elif change.action == "update":
            log.info(
                "outage classifying: %s is back; its results from the gap decide the cause",
                where,
                extra=fields,
            )
        else:
            lasted = (o.ended_at or o.started_at) - o.started_at
            fields["duration_seconds"] = round(lasted, 3)
            if change.reason == "checks_removed":
                fields["reason"] = change.reason
                log.info(
                    "outage ended: %s, %s, lasted %s: the checks that failed were removed "
                    "from the probe's config, no recovery was seen",
                    where,
                    _condition(o),
                    duration_text(lasted),
                    extra=fields,
                )
                continue
            log.info(
                "outage resolved: %s, %s, lasted %s",
                where,
                _condition(o),
                duration_text(lasted),
                extra=fields,
            )


def log_attempt(a: Attempt) -> None:
    """A line per delivery attempt: sent at INFO, failed at WARNING."""
    fields = {
        "receiver": a.receiver,
        "route": a.route,
        "status": a.status,
        "outages": list(a.fingerprints),
        "attempt": a.attempt,
    }
    what = f"{a.status} notification of {len(a.fingerprints)} outage(s) to {a.receiver}"
    if a.ok:
        log.info("notification sent: %s (%s)", what, ", ".join(a.fingerprints), extra=fields)
    else:
        log.warning(
            "notification failed: %s, attempt %d: %s",
            what,
            a.attempt,
            a.error,
            extra=fields | {"error": a.error},
        )


def warn_if_nobody_notified(alerts_file: Path | None, alerts: AlertsConfig | None) -> bool:
    """Warn at start when no outage can reach anyone; True if it warned."""
    if alerts is None:
        log.warning(
            "no alerts_file is set: outages are recorded and served, but nobody is notified"
        )
        return True
    names = {r.name for r in alerts.receivers}
    routed = [r for r in alerts.routes if r.receiver in names]
    if not routed:
        log.warning(
            "alerts_file %s routes no outage to any receiver (%d receivers, %d routes): "
            "nobody is notified",
            alerts_file or "(given)",
            len(alerts.receivers),
            len(alerts.routes),
        )
        return True
    return False


def _where(o: Outage, info: ProbeInfo | None) -> str:
    commune = f"{info.commune_name} ({o.commune_code})" if info else o.commune_code
    text = f"probe {o.probe_id} at {commune}"
    if o.uplink:
        text += f", uplink {o.uplink} ({o.operator or 'unknown operator'})"
    return text


def _condition(o: Outage) -> str:
    cause = f", cause {o.cause}" if o.cause else ""
    return f"{o.condition}{cause}"


def _fields(o: Outage, info: ProbeInfo | None) -> dict[str, Any]:
    return {
        "outage": o.id,
        "probe": o.probe_id,
        "commune": o.commune_code,
        "commune_name": info.commune_name if info else None,
        "province": o.province_code,
        "uplink": o.uplink,
        "operator": o.operator,
        "condition": o.condition,
        "cause": o.cause,
    }
