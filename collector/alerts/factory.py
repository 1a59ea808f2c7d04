"""Receivers built from ``alerts.toml``: one class per receiver type."""

from __future__ import annotations

from lomsong.collector.alerts.alertmanager import AlertmanagerReceiver
from lomsong.collector.alerts.email import EmailReceiver
from lomsong.collector.alerts.model import Receiver
from lomsong.collector.alerts.webhook import WebhookReceiver
from lomsong.config.alerts import AlertmanagerConfig, AlertsConfig, EmailConfig, WebhookConfig


def build_receivers(config: AlertsConfig) -> dict[str, Receiver]:
    """Every configured receiver, by name."""
    out: dict[str, Receiver] = {}
    for rc in config.receivers:
        if isinstance(rc, WebhookConfig):
            out[rc.name] = WebhookReceiver(rc.name, rc.url, timeout=rc.timeout)
        elif isinstance(rc, EmailConfig):
            out[rc.name] = EmailReceiver(
                rc.name,
                rc.host,
                rc.port,
                sender=rc.sender,
                to=list(rc.to),
                username=rc.username,
                password=rc.password,
                starttls=rc.starttls,
                timeout=rc.timeout,
                ca_file=rc.ca_file,
            )
        elif isinstance(rc, AlertmanagerConfig):
            out[rc.name] = AlertmanagerReceiver(
                rc.name, rc.url, timeout=rc.timeout, resend_ttl=rc.resend_ttl
            )
    return out
