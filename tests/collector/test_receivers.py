"""Alert receivers against real servers on loopback: an HTTP sink, aiosmtpd, Alertmanager."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from lomsong.collector.alerts.alertmanager import AlertmanagerReceiver
from lomsong.collector.alerts.email import EmailReceiver
from lomsong.collector.alerts.model import Alert, DeliveryError, Notification, Status
from lomsong.collector.alerts.webhook import WebhookReceiver, rfc3339
from tests import servers
from tests.conftest import free_port
from tests.tls import write_self_signed

# 2025-03-01 22:05:07.250 in Asia/Ho_Chi_Minh (UTC+7): a night-time power cut.
STARTED = dt.datetime(2025, 3, 1, 15, 5, 7, 250000, tzinfo=dt.UTC).timestamp()
ENDED = STARTED + 2 * 3600 + 30
TITLE = "[ĐANG XẢY RA] Xã Hà Quảng (Cao Bằng): mất điện"
TEXT = (
    "Xã Hà Quảng (04264), tỉnh Cao Bằng\n"
    "Nhà mạng Viettel, đường truyền viettel-4g: mất điện từ 22:05 01/03/2025\n"
    "12 thôn, 8.450 người không có sóng\n"
    "Bản đồ: https://lomsong.example.vn/map/04264"
)
LABELS = {
    "alertname": "LomsongOutage",
    "province": "Cao Bằng",
    "commune": "04264",
    "commune_name": "Xã Hà Quảng",
    "operator": "viettel",
    "kind": "power",
}


def alert(status: Status = "firing", **labels: str) -> Alert:
    return Alert(
        fingerprint="outage-4711",
        status=status,
        labels={**LABELS, **labels},
        annotations={"summary": "Xã Hà Quảng mất điện", "cause": "mất điện"},
        starts_at=STARTED,
        ends_at=ENDED if status == "resolved" else None,
        url="https://lomsong.example.vn/map/04264",
    )


def notification(status: Status = "firing", *alerts: Alert) -> Notification:
    return Notification(
        receiver="so-khcn-cao-bang",
        group_key='{}:{province="Cao Bằng"}',
        group_labels={"province": "Cao Bằng"},
        status=status,
        alerts=alerts or (alert(status),),
        language="vi",
        title=TITLE,
        text=TEXT,
        common_labels=dict(LABELS),
        common_annotations={"cause": "mất điện"},
        external_url="https://lomsong.example.vn",
    )


# ---------------------------------------------------------------- webhook


@dataclass
class Sink:
    """An HTTP server on loopback that records every request and answers ``status``."""

    url: str
    status: int = 200
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def sink() -> Iterator[Sink]:
    record = Sink(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            record.requests.append((self.path, dict(self.headers.items()), body))
            reply = b'{"error": "bad payload"}' if record.status >= 400 else b"{}"
            self.send_response(record.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    record.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/zalo"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield record
    server.shutdown()
    server.server_close()
    thread.join(5)


async def _send_webhook(url: str, note: Notification, **kwargs: Any) -> None:
    kwargs.setdefault("timeout", 5)
    receiver = WebhookReceiver("zalo-bridge", url, **kwargs)
    try:
        await receiver.send(note)
    finally:
        await receiver.close()


def test_rfc3339_matches_go_time_format() -> None:
    assert rfc3339(STARTED) == "2025-03-01T15:05:07.25Z"
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1.000001) == "1970-01-01T00:00:01.000001Z"


def test_webhook_posts_alertmanager_payload_v4(sink: Sink) -> None:
    asyncio.run(_send_webhook(sink.url, notification("firing"), headers={"X-Token": "t0ps3cret"}))

    assert len(sink.requests) == 1
    path, headers, body = sink.requests[0]
    assert path == "/hooks/zalo"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Token"] == "t0ps3cret"
    # Vietnamese travels as UTF-8, not as \u escapes, as Alertmanager sends it.
    assert "Xã Hà Quảng".encode() in body
    payload = json.loads(body)
    assert payload == {
        "version": "4",
        "groupKey": '{}:{province="Cao Bằng"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "so-khcn-cao-bang",
        "groupLabels": {"province": "Cao Bằng"},
        "commonLabels": LABELS,
        "commonAnnotations": {"cause": "mất điện", "summary": TITLE, "description": TEXT},
        "externalURL": "https://lomsong.example.vn",
        "alerts": [
            {
                "status": "firing",
                "labels": LABELS,
                "annotations": {"summary": "Xã Hà Quảng mất điện", "cause": "mất điện"},
                "startsAt": "2025-03-01T15:05:07.25Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "https://lomsong.example.vn/map/04264",
                "fingerprint": "outage-4711",
            }
        ],
    }


def test_webhook_resolved_carries_end_and_keeps_given_summary(sink: Sink) -> None:
    note = replace(notification("resolved"), common_annotations={"summary": "đã có điện lại"})
    asyncio.run(_send_webhook(sink.url, note))

    payload = json.loads(sink.requests[0][2])
    assert payload["status"] == "resolved"
    assert payload["alerts"][0]["status"] == "resolved"
    assert payload["alerts"][0]["endsAt"] == "2025-03-01T17:05:37.25Z"
    # A summary the alerts share wins over the rendered title; the body fills description.
    assert payload["commonAnnotations"] == {"summary": "đã có điện lại", "description": TEXT}


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (408, True), (400, False)]
)
def test_webhook_http_errors_are_classified(sink: Sink, status: int, retryable: bool) -> None:
    sink.status = status
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(_send_webhook(sink.url, notification()))
    assert caught.value.retryable is retryable
    assert caught.value.receiver == "zalo-bridge"
    assert f"HTTP {status}" in caught.value.reason
    assert "bad payload" in caught.value.reason
    assert len(sink.requests) == 1, "a receiver makes one attempt per send"


def test_webhook_connection_refused_is_retryable() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(_send_webhook(url, notification()))
    assert caught.value.retryable is True
    assert "could not reach" in caught.value.reason


def test_webhook_silent_server_times_out_retryable() -> None:
    # A listening socket that never accepts: the connection opens, no answer ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        with pytest.raises(DeliveryError) as caught:  # not the outer deadline's TimeoutError
            asyncio.run(asyncio.wait_for(_send_webhook(url, notification(), timeout=0.5), 30))
    assert caught.value.retryable is True
    assert "timed out after 0.5 s" in caught.value.reason


def test_webhook_resolved_alert_without_end_is_not_retried(sink: Sink) -> None:
    broken = Alert("outage-1", "resolved", dict(LABELS), {}, starts_at=STARTED)
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(_send_webhook(sink.url, notification("resolved", broken)))
    assert caught.value.retryable is False
    assert "'outage-1'" in caught.value.reason and "ends_at" in caught.value.reason
    assert sink.requests == []


def test_webhook_rejects_bad_url() -> None:
    with pytest.raises(ValueError, match="url 'ftp://x' must start with http"):
        WebhookReceiver("w", "ftp://x")


# ---------------------------------------------------------------- email

PASSWORD = "mật-khẩu-đúng"


@dataclass
class Mailbox:
    port: int
    ca_file: Path
    password: str = PASSWORD
    messages: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    #: (mechanism, login, whether the connection was already TLS) for each AUTH attempt
    logins: list[tuple[str, str, bool]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.original_content, bytes)
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = data.login.decode()
        self.logins.append((mechanism, login, session.ssl is not None))
        ok = login == "truc-ban@caobang.gov.vn" and data.password.decode() == self.password
        # handled=False: aiosmtpd then answers the failure (535) itself.
        return AuthResult(success=ok, handled=False)


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    cert_file, key_file, _ = write_self_signed(
        directory, days=1, name="lomsong test SMTP", prefix="smtp-"
    )
    return cert_file, key_file


def start_smtp(mailbox: Mailbox, tls: ssl.SSLContext | None, **smtp_args: Any) -> Controller:
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=mailbox.port,
        server_hostname="mail.test",
        tls_context=tls,
        require_starttls=tls is not None,
        auth_require_tls=True,
        authenticator=mailbox.authenticate,
        **smtp_args,
    )
    controller.start()
    return controller


@pytest.fixture
def mailbox(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Mailbox]:
    """aiosmtpd with STARTTLS required and AUTH (only after TLS) on a loopback port."""
    cert_file, key_file = self_signed_cert(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_file, key_file)
    box = Mailbox(port=free_port(), ca_file=cert_file)
    exclude = getattr(request, "param", ())
    controller = start_smtp(box, tls, auth_exclude_mechanism=exclude)
    yield box
    controller.stop()


def email_receiver(box: Mailbox, **overrides: Any) -> EmailReceiver:
    args: dict[str, Any] = {
        "sender": "lomsong@caobang.gov.vn",
        "to": ["truc-ban@caobang.gov.vn", "so-khcn@caobang.gov.vn"],
        "username": "truc-ban@caobang.gov.vn",
        "password": PASSWORD,
        "ca_file": box.ca_file,
        "timeout": 5,
    }
    args.update(overrides)
    return EmailReceiver("mail-truc-ban", "127.0.0.1", box.port, **args)


# smtplib logs in with ASCII credentials; UTF-8 ones go by a path of our own.
@pytest.mark.parametrize("password", ["ascii-Pa55word", PASSWORD])
@pytest.mark.parametrize(
    ("mailbox", "mechanism"), [(["LOGIN"], "PLAIN"), (["PLAIN"], "LOGIN")], indirect=["mailbox"]
)
def test_email_arrives_with_diacritics_after_starttls_and_auth(
    mailbox: Mailbox, mechanism: str, password: str
) -> None:
    mailbox.password = password
    asyncio.run(email_receiver(mailbox, password=password).send(notification()))

    assert mailbox.logins == [(mechanism, "truc-ban@caobang.gov.vn", True)]
    assert len(mailbox.messages) == 1
    envelope, msg = mailbox.messages[0]
    assert envelope.mail_from == "lomsong@caobang.gov.vn"
    assert envelope.rcpt_tos == ["truc-ban@caobang.gov.vn", "so-khcn@caobang.gov.vn"]
    assert msg["From"] == "lomsong@caobang.gov.vn"
    assert msg["To"] == "truc-ban@caobang.gov.vn, so-khcn@caobang.gov.vn"
    assert msg["Subject"] == TITLE
    assert msg["Content-Language"] == "vi"
    # On the wire the message is 7-bit (quoted-printable, CRLF lines), decoded it is the text.
    assert isinstance(envelope.original_content, bytes) and envelope.original_content.isascii()
    body = msg.get_content().replace("\r\n", "\n")
    assert body.rstrip("\n") == TEXT
    for phrase in ("Xã Hà Quảng", "Cao Bằng", "mất điện"):
        assert phrase in msg["Subject"] and phrase in body
    assert msg.get_content_charset() == "utf-8"


def test_email_messages_of_one_group_share_a_thread(mailbox: Mailbox) -> None:
    async def firing_then_resolved() -> None:
        receiver = email_receiver(mailbox)
        await receiver.send(notification("firing"))
        await receiver.send(notification("resolved"))
        await receiver.close()

    asyncio.run(firing_then_resolved())
    first, second = (msg for _, msg in mailbox.messages)
    assert first["References"] == second["References"]
    assert first["Message-ID"] != second["Message-ID"]


def test_email_wrong_password_is_not_retryable(mailbox: Mailbox) -> None:
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(email_receiver(mailbox, password="sai-mật-khẩu").send(notification()))
    assert caught.value.retryable is False
    assert "refused the login of 'truc-ban@caobang.gov.vn'" in caught.value.reason
    assert "535" in caught.value.reason
    assert mailbox.logins[0][2] is True, "the password only went over TLS"
    assert mailbox.messages == []


def test_email_untrusted_certificate_is_not_retryable(mailbox: Mailbox) -> None:
    # Without ca_file the system's CAs are used, and they do not know the test certificate.
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(email_receiver(mailbox, ca_file=None).send(notification()))
    assert caught.value.retryable is False
    assert "not trusted" in caught.value.reason
    assert mailbox.logins == [] and mailbox.messages == []


def test_email_refuses_credentials_without_starttls(tmp_path: Path) -> None:
    box = Mailbox(port=free_port(), ca_file=tmp_path / "none.pem")
    controller = start_smtp(box, tls=None)
    try:
        with pytest.raises(DeliveryError) as caught:
            asyncio.run(email_receiver(box, ca_file=None).send(notification()))
        assert caught.value.retryable is False
        assert "does not offer STARTTLS" in caught.value.reason
        assert "starttls = false" in caught.value.reason
        assert box.logins == [] and box.messages == []

        # Asked for explicitly, a plain connection without credentials delivers.
        plain = email_receiver(box, ca_file=None, username=None, password=None, starttls=False)
        asyncio.run(plain.send(notification()))
        assert [msg["Subject"] for _, msg in box.messages] == [TITLE]
    finally:
        controller.stop()


def test_email_connection_refused_is_retryable() -> None:
    receiver = EmailReceiver(
        "mail", "127.0.0.1", free_port(), sender="a@b.vn", to=["c@d.vn"], timeout=5
    )
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(receiver.send(notification()))
    assert caught.value.retryable is True
    assert "ConnectionRefusedError" in caught.value.reason


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"to": []}, "to is empty"),
        ({"to": ["truc-ban"]}, "to address 'truc-ban' is not an email address"),
        ({"password": None}, "password is not"),
        ({"port": 0}, "port 0 must be between 1 and 65535"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file '/nonexistent/ca.pem' cannot be loaded"),
    ],
)
def test_email_bad_configuration_names_the_field(overrides: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "sender": "a@b.vn",
        "to": ["c@d.vn"],
        "username": "u",
        "password": "p",
        "port": 587,
    }
    args.update(overrides)
    port = args.pop("port")
    with pytest.raises(ValueError, match=message):
        EmailReceiver("mail", "127.0.0.1", port, **args)


# ---------------------------------------------------------------- alertmanager

ALERTMANAGER_CONFIG = """\
route:
  receiver: "null"
receivers:
  - name: "null"
"""


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    """The real Alertmanager from Debian, alone (no cluster), on a loopback port."""
    with servers.alertmanager(tmp_path, ALERTMANAGER_CONFIG) as url:
        yield url


def active_alerts(url: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v2/alerts", params={"active": "true"}, timeout=5)
    response.raise_for_status()
    alerts: list[dict[str, Any]] = response.json()
    return alerts


async def _send_alertmanager(url: str, note: Notification, **kwargs: Any) -> None:
    receiver = AlertmanagerReceiver("am", url, timeout=5, **kwargs)
    try:
        await receiver.send(note)
    finally:
        await receiver.close()


def test_alertmanager_shows_firing_alert_then_resolves_it(alertmanager: str) -> None:
    started = time.time() - 600
    firing = Alert(
        "outage-4711",
        "firing",
        dict(LABELS),
        {"summary": "Xã Hà Quảng mất điện"},
        started,
        url="https://lomsong.example.vn/map/04264",
    )
    before = time.time()
    asyncio.run(_send_alertmanager(alertmanager, notification("firing", firing), resend_ttl=900))
    after = time.time()

    shown = [a for a in active_alerts(alertmanager) if a["labels"] == LABELS]
    assert len(shown) == 1
    am_alert = shown[0]
    assert am_alert["status"]["state"] == "active"
    assert am_alert["annotations"] == {"summary": "Xã Hà Quảng mất điện"}
    assert am_alert["generatorURL"] == "https://lomsong.example.vn/map/04264"
    assert _epoch(am_alert["startsAt"]) == pytest.approx(started, abs=0.001)
    # Kept while we keep re-sending: it lapses resend_ttl after the last send.
    assert before + 900 - 0.001 <= _epoch(am_alert["endsAt"]) <= after + 900 + 0.001

    resolved = Alert("outage-4711", "resolved", dict(LABELS), {}, started, ends_at=time.time() - 60)
    asyncio.run(_send_alertmanager(alertmanager, notification("resolved", resolved)))
    assert [a for a in active_alerts(alertmanager) if a["labels"] == LABELS] == []


def test_alertmanager_rejection_is_not_retryable(alertmanager: str) -> None:
    bad = Alert("x", "firing", {"bad-label": "x"}, {}, time.time())
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(_send_alertmanager(alertmanager, notification("firing", bad)))
    assert caught.value.retryable is False
    assert "HTTP 400" in caught.value.reason and "bad-label" in caught.value.reason
    assert active_alerts(alertmanager) == []


def test_alertmanager_unreachable_is_retryable() -> None:
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(_send_alertmanager(f"http://127.0.0.1:{free_port()}", notification()))
    assert caught.value.retryable is True


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_alertmanager_resolves_an_alert_whose_cause_became_known(alertmanager: str) -> None:
    """A silent centre fires without a cause and resolves as a power cut: Alertmanager, which
    knows alerts by their labels, must see one alert that resolves, not two."""
    started = time.time() - 300
    firing = Alert("outage-4712", "firing", dict(LABELS), {"summary": "đang xác định"}, started)
    asyncio.run(_send_alertmanager(alertmanager, notification("firing", firing)))
    assert len([a for a in active_alerts(alertmanager) if a["labels"] == LABELS]) == 1
    resolved = Alert(
        "outage-4712",
        "resolved",
        {**LABELS, "cause": "power"},
        {"summary": "mất điện"},
        started,
        ends_at=time.time() - 30,
    )
    asyncio.run(_send_alertmanager(alertmanager, notification("resolved", resolved)))
    assert active_alerts(alertmanager) == []
    shown = httpx.get(f"{alertmanager}/api/v2/alerts", params={"active": "false"}, timeout=5)
    assert all("cause" not in a["labels"] for a in shown.json())
