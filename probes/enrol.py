"""``lomsong probe enrol``: a freshly installed box asks the collector to be enrolled, waits for
a person to approve it, then writes its own token and settings.

The box sends its self-description (``selfdesc.py``) with the provincial enrolment key, and gets
an enrolment id and a poll secret, which it keeps in ``enrolment.json`` beside its settings so
that a restart goes on waiting instead of asking again. It polls with a growing pause until the
enrolment is approved (it receives its probe token, once), rejected, or refused. Then it writes
the token file (mode 0600) and a ``probe.toml`` with what is the box's own: the collector URL,
the token file, the spool and the approved uplink bindings, with the example checks.
"""

from __future__ import annotations

import json
import logging
import os
import random
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lomsong.config.probe import load_probe_settings
from lomsong.enrolwire import EnrolAnswer, EnrolRequest, PollAnswer, ProbeDescription
from lomsong.errors import LomsongError

log = logging.getLogger(__name__)

STATE_FILE = "enrolment.json"
CONFIG_FILE = "probe.toml"
TOKEN_FILE = "probe.token"
#: statuses worth asking again (the collector restarting, its database away, a rate limit)
_AGAIN = frozenset({429, 500, 502, 503, 504})
#: where the example checks measure (config/probe.toml): the national public service portal
PORTAL = "dichvucong.gov.vn"


class EnrolmentError(LomsongError):
    """The collector refused the enrolment (key, commune, rejection) or the box cannot write
    what it received; the message is one line, as the collector said it."""


@dataclass
class EnrolOptions:
    collector_url: str
    key: str
    commune: str
    out_dir: Path
    spool_path: Path = Path("/var/lib/lomsong/spool.db")
    #: checks for the new ``probe.toml`` (as TOML tables); None: the example checks
    checks: list[dict[str, Any]] | None = None
    ca_file: Path | None = None
    poll_initial_seconds: float = 5.0
    poll_max_seconds: float = 300.0
    timeout_seconds: float = 30.0
    force: bool = False
    extra_headers: Mapping[str, str] = field(default_factory=dict)


def enrol(
    opts: EnrolOptions,
    description: ProbeDescription,
    *,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] = log.info,
) -> Path:
    """Enrol (or resume waiting), then write the token and settings; return ``probe.toml``."""
    config_path = opts.out_dir / CONFIG_FILE
    if config_path.exists() and not opts.force:
        raise EnrolmentError(
            f"{config_path} exists: this box is set up already (--force replaces it)"
        )
    base = opts.collector_url.rstrip("/")
    verify: ssl.SSLContext | bool = True
    if opts.ca_file is not None:
        verify = ssl.create_default_context(cafile=str(opts.ca_file))
    with httpx.Client(base_url=base, timeout=opts.timeout_seconds, verify=verify) as http:
        state = _resume(opts.out_dir, base)
        if state is None:
            request = EnrolRequest(commune=opts.commune, description=description)
            answer = EnrolAnswer.model_validate(
                _call(http, "POST", "/api/v1/enrolments", opts, opts.key, request, sleep, say)
            )
            state = {"collector_url": base, "id": answer.id, "poll_secret": answer.poll_secret}
            _write_private(opts.out_dir / STATE_FILE, json.dumps(state) + "\n")
            flagged = f" (machine id seen before: {'; '.join(answer.reused_machine)})"
            say(
                f"enrolment {answer.id} is pending at {base}"
                f"{flagged if answer.reused_machine else ''}; approve it there: "
                f"lomsong probe approve {answer.id} --id PROBE_ID"
            )
        else:
            say(f"enrolment {state['id']}: waiting for its approval at {base} again")
        poll = _wait(http, opts, int(state["id"]), str(state["poll_secret"]), sleep, say)
    assert poll.token is not None and poll.probe_id is not None
    token_path = opts.out_dir / TOKEN_FILE
    _write_private(token_path, poll.token + "\n")
    config_path.write_text(probe_toml(opts, base, poll, token_path, description), encoding="utf-8")
    load_probe_settings(config_path)  # what was written must load, or say why now
    (opts.out_dir / STATE_FILE).unlink(missing_ok=True)
    say(f"approved as probe {poll.probe_id}: wrote {config_path} and {token_path}")
    return config_path


def _resume(out_dir: Path, base: str) -> dict[str, Any] | None:
    try:
        state = json.loads((out_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("collector_url") != base:
        return None
    return state


def _wait(
    http: httpx.Client,
    opts: EnrolOptions,
    enrolment_id: int,
    secret: str,
    sleep: Callable[[float], None],
    say: Callable[[str], None],
) -> PollAnswer:
    """Poll until approved or rejected: pauses grow from ``poll_initial_seconds`` to
    ``poll_max_seconds`` with jitter, so boxes installed together do not ask together."""
    pause = opts.poll_initial_seconds
    path = f"/api/v1/enrolments/{enrolment_id}"
    while True:
        answer = PollAnswer.model_validate(_call(http, "GET", path, opts, secret, None, sleep, say))
        if answer.status == "approved" and answer.token:
            return answer
        if answer.status == "rejected":
            raise EnrolmentError(
                f"enrolment {enrolment_id} was rejected: {answer.reason or 'no reason given'}"
            )
        sleep(pause * random.uniform(0.5, 1.0))
        pause = min(opts.poll_max_seconds, pause * 2)


def _call(
    http: httpx.Client,
    method: str,
    path: str,
    opts: EnrolOptions,
    bearer: str,
    body: EnrolRequest | None,
    sleep: Callable[[float], None],
    say: Callable[[str], None],
) -> Any:
    """One request, asked again after a network error or a passing refusal (5xx, 429); any
    other refusal is the collector's last word, raised as one line."""
    pause = opts.poll_initial_seconds
    headers = {"Authorization": f"Bearer {bearer}", **opts.extra_headers}
    content = body.model_dump_json().encode() if body is not None else None
    if content is not None:
        headers["Content-Type"] = "application/json"
    while True:
        try:
            r = http.request(method, path, headers=headers, content=content)
        except httpx.HTTPError as exc:
            say(f"collector {opts.collector_url}: {type(exc).__name__}: {exc}; trying again")
        else:
            if r.status_code < 300:
                return r.json()
            detail = _detail(r)
            if r.status_code not in _AGAIN:
                raise EnrolmentError(f"collector said {r.status_code}: {detail}")
            say(f"collector said {r.status_code}: {detail}; trying again")
        sleep(pause * random.uniform(0.5, 1.0))
        pause = min(opts.poll_max_seconds, pause * 2)


def _detail(r: httpx.Response) -> str:
    try:
        detail = r.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    text = str(detail) if detail else r.text[:200] or r.reason_phrase
    return " ".join(text.split())


def _write_private(path: Path, text: str) -> None:
    """Write a secret readable by its owner only, from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def default_checks(poll: PollAnswer, modems: Mapping[str, str]) -> list[dict[str, Any]]:
    """The example's checks (config/probe.toml), with a modem check for each uplink carried
    by a modem (``modems``: interface → ModemManager index)."""
    checks: list[dict[str, Any]] = [
        {"kind": "icmp", "target": PORTAL},
        {"kind": "tcp", "target": f"{PORTAL}:443"},
        {
            "kind": "http",
            "target": f"https://{PORTAL}/",
            "method": "HEAD",
            "interval_seconds": 60.0,
            "timeout_seconds": 15.0,
        },
        {"kind": "dns", "target": PORTAL, "server": "8.8.8.8"},
    ]
    for up in poll.uplinks:
        index = modems.get(up.interface or "")
        if index is not None:
            checks.append(
                {"kind": "modem", "uplink": up.name, "modem": index, "interval_seconds": 60.0}
            )
    checks.append({"kind": "heartbeat", "target": "self"})
    return checks


def probe_toml(
    opts: EnrolOptions, base: str, poll: PollAnswer, token_path: Path, desc: ProbeDescription
) -> str:
    """The box's own settings after its enrolment, as TOML."""
    modems = {m.interface: m.index for m in desc.modems if m.interface}
    checks = opts.checks if opts.checks is not None else default_checks(poll, modems)
    lines = [
        f"# Written by `lomsong probe enrol` (enrolment {poll.id}): what is this box's own.",
        "# Check it with `lomsong probe check-config` after any edit.",
        f"probe_id = {_toml(poll.probe_id)}",
        f"collector_url = {_toml(base)}",
        f"token_file = {_toml(str(token_path))}",
        f"spool_path = {_toml(str(opts.spool_path))}",
    ]
    if opts.ca_file is not None:
        lines += ["", "[upload]", f"ca_file = {_toml(str(opts.ca_file))}"]
    for up in poll.uplinks:
        lines += ["", "[[uplinks]]", f"name = {_toml(up.name)}", f"operator = {_toml(up.operator)}"]
        if up.interface:
            lines.append(f"interface = {_toml(up.interface)}")
    for check in checks:
        lines += ["", "[[checks]]"] + [f"{k} = {_toml(v)}" for k, v in check.items()]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    """A TOML value: strings, numbers, booleans, lists and inline tables of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + "}"
    raise EnrolmentError(f"checks: cannot write {value!r} ({type(value).__name__}) as TOML")
