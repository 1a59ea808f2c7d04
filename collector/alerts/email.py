"""The email receiver: one UTF-8 message per notification over SMTP with STARTTLS and AUTH.

The standard library's blocking ``smtplib`` runs in a worker thread (``asyncio.to_thread``), so
a slow mail server never stalls the collector's event loop and no new dependency is needed.

With ``starttls`` on (the default) the receiver refuses to go on when the server does not offer
STARTTLS: an attacker on the path can strip that offer to read the password, so a plain
connection must be asked for explicitly (``starttls=False``), never fallen back to.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import smtplib
import ssl
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from lomsong.collector.alerts.model import DeliveryError, Notification


def email_message(notification: Notification, *, sender: str, to: Sequence[str]) -> EmailMessage:
    """The message for one notification: subject = title, plain-text body = text, UTF-8."""
    msg = EmailMessage()
    domain = sender.rpartition("@")[2] or "lomsong.invalid"
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    # A header cannot hold a line break; a title that has one is folded onto one line.
    msg["Subject"] = " ".join(notification.title.split())
    msg["Date"] = format_datetime(datetime.now(UTC), usegmt=True)
    # The domain is given so make_msgid does not look up this host's name on the network.
    msg["Message-ID"] = make_msgid(domain=domain)
    # Every message of one alert group refers to the same id, so a mail client threads the
    # firing message with its repeats and its resolution.
    group = hashlib.sha256(notification.group_key.encode()).hexdigest()[:32]
    msg["References"] = f"<{group}@{domain}>"
    # quoted-printable keeps the body 7-bit, so even a relay without 8BITMIME passes the
    # diacritics through intact.
    msg.set_content(notification.text, charset="utf-8", cte="quoted-printable")
    # After set_content, which clears every Content-* header.
    msg["Content-Language"] = notification.language
    return msg


class EmailReceiver:
    """Mails each notification to ``to`` through the SMTP server at ``host:port``.

    ``ca_file`` names a PEM bundle to trust instead of the system's, for a relay with a private
    or self-signed certificate; the host name is always checked.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        sender: str,
        to: list[str],
        username: str | None = None,
        password: str | None = None,
        starttls: bool = True,
        timeout: float = 10,
        ca_file: str | Path | None = None,
    ) -> None:
        where = f"email receiver {name!r}"
        if not 0 < port < 65536:
            raise ValueError(f"{where}: port {port!r} must be between 1 and 65535")
        if "@" not in sender:
            raise ValueError(f"{where}: sender {sender!r} is not an email address")
        if not to:
            raise ValueError(f"{where}: to is empty; give at least one address")
        for address in to:
            if "@" not in address:
                raise ValueError(f"{where}: to address {address!r} is not an email address")
        if username is not None and password is None:
            raise ValueError(f"{where}: username {username!r} is set but password is not")
        if timeout <= 0:
            raise ValueError(f"{where}: timeout {timeout!r} must be > 0")
        self.name = name
        self.host = host
        self.port = port
        self.sender = sender
        self.to = list(to)
        self.username = username
        self._password = password
        self.starttls = starttls
        self.timeout = timeout
        try:
            self._tls = ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"{where}: ca_file {str(ca_file)!r} cannot be loaded: {exc}") from exc

    async def send(self, notification: Notification) -> None:
        msg = email_message(notification, sender=self.sender, to=self.to)
        await asyncio.to_thread(self._deliver, msg)

    async def close(self) -> None:
        """Nothing to release: every send opens and closes its own SMTP connection."""

    def _deliver(self, msg: EmailMessage) -> None:
        """One SMTP session, in a worker thread; every failure becomes a DeliveryError."""
        server = f"{self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.starttls:
                    if not smtp.has_extn("starttls"):
                        raise DeliveryError(self.name, self._no_starttls(server), retryable=False)
                    smtp.starttls(context=self._tls)
                    smtp.ehlo()
                if self.username is not None:
                    _login(smtp, self.username, self._password or "")
                refused = smtp.send_message(msg)
        except DeliveryError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                self.name,
                f"{server} refused the login of {self.username!r}: {_said(exc)}",
                retryable=False,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            # Raised when AUTH is not offered: nothing changes by trying again.
            raise DeliveryError(self.name, f"{server}: {exc}", retryable=False) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                self.name,
                f"{server} refused every recipient: {_refusals(exc.recipients)}",
                retryable=all(400 <= code < 500 for code in codes),
            ) from exc
        except smtplib.SMTPResponseException as exc:
            # 4xx is "try again later" in SMTP, 5xx is final.
            raise DeliveryError(
                self.name, f"{server}: {_said(exc)}", retryable=400 <= exc.smtp_code < 500
            ) from exc
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(
                self.name,
                f"certificate of {server} not trusted: {exc.verify_message} "
                "(set ca_file to the relay's CA if it uses a private one)",
                retryable=False,
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            # Refused or reset connections, timeouts, a server that hung up: all may pass.
            raise DeliveryError(
                self.name, f"could not deliver via {server}: {type(exc).__name__}: {exc}"
            ) from exc
        if refused:
            # The others got the message; sending again would mail them twice.
            raise DeliveryError(
                self.name,
                f"{server} refused some recipients: {_refusals(refused)}",
                retryable=False,
            )

    def _no_starttls(self, server: str) -> str:
        what = "the password" if self.username is not None else "the message"
        return (
            f"{server} does not offer STARTTLS; refusing to send {what} over a plain "
            "connection (set starttls = false to allow one explicitly)"
        )


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH with smtplib's login, or by hand for credentials beyond ASCII."""
    if username.isascii() and password.isascii():
        smtp.login(username, password)
        return
    # smtplib encodes credentials as ASCII and fails on "mật-khẩu"; PLAIN carries UTF-8
    # (RFC 4616) and servers read LOGIN's base64 as UTF-8 too, so those two are sent by hand.
    offered = str(smtp.esmtp_features.get("auth", "")).upper().split()
    if "PLAIN" in offered:
        token = _b64(b"\0" + username.encode() + b"\0" + password.encode())
        code, reply = smtp.docmd("AUTH", f"PLAIN {token}")
    elif "LOGIN" in offered:
        code, reply = smtp.docmd("AUTH", f"LOGIN {_b64(username.encode())}")
        if code == 334:
            code, reply = smtp.docmd(_b64(password.encode()))
    else:
        raise smtplib.SMTPNotSupportedError(
            "the server offers neither AUTH PLAIN nor AUTH LOGIN, which non-ASCII "
            f"credentials need (it offers {offered or 'no AUTH'})"
        )
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _said(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error
    text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
    return f"{exc.smtp_code} {text}".strip()


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(
        f"{address} ({code} {reply.decode(errors='replace')})"
        for address, (code, reply) in refused.items()
    )
