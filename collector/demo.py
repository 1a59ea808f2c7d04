"""``lomsong demo``: the collector on the embedded default, with Cao Bằng's 56 communes' probes.

It prepares a SQLite file under ``var/demo/``, registers one probe per Cao Bằng commune with the
uplinks a commune centre typically has, writes each probe's token to ``var/demo/tokens.json``
and serves the collector in development mode until Ctrl-C (or for ``--minutes``).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from rich.console import Console
from sqlalchemy import select

from lomsong.collector.app import create_app
from lomsong.collector.auth import create_token
from lomsong.collector.database import migrate, open_engine
from lomsong.collector.places import load_places
from lomsong.collector.registry import Uplink, load_probes, register_probe
from lomsong.collector.schema import communes
from lomsong.config.collector import CollectorSettings

PROVINCE = "04"  # Cao Bằng
#: The uplinks a commune centre in the demo has: a fibre line and two operators' 4G routers.
UPLINKS = (
    Uplink("fibre", "fibre"),
    Uplink("viettel-4g", "viettel"),
    Uplink("vnpt-4g", "vinaphone"),
)


@dataclass(frozen=True)
class DemoSummary:
    url: str
    probes: int
    database: Path
    admin_token: str


def slug(name: str) -> str:
    """``"Phường Thục Phán"`` → ``"thuc-phan"`` (without the unit type, ASCII, for probe ids)."""
    name = re.sub(r"^(Phường|Xã|Đặc khu)\s+", "", name)
    ascii_ = unicodedata.normalize("NFKD", name.replace("đ", "d").replace("Đ", "D"))
    ascii_ = "".join(c for c in ascii_ if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")


def prepare(workdir: Path) -> tuple[str, dict[str, str]]:
    """Migrate the demo database and register Cao Bằng's probes; return the URL and tokens."""
    workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{workdir / 'lomsong.db'}"
    engine = open_engine(url)
    try:
        migrate(engine)
        load_places(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                select(communes.c.code, communes.c.name)
                .where(communes.c.province_code == PROVINCE)
                .order_by(communes.c.code)
            ).all()
            known = load_probes(conn)
        tokens_file = workdir / "tokens.json"
        tokens: dict[str, str] = json.loads(tokens_file.read_text()) if tokens_file.exists() else {}
        for code, name in rows:
            probe_id = f"cb-{slug(name)}"
            if probe_id not in known:
                register_probe(engine, probe_id, code, UPLINKS, label=f"Trung tâm PVHCC {name}")
            if probe_id not in tokens:
                tokens[probe_id] = create_token(engine, role="probe", probe_id=probe_id).token
        tokens_file.write_text(json.dumps(tokens, indent=1, ensure_ascii=False))
        tokens_file.chmod(0o600)
    finally:
        engine.dispose()
    return url, tokens


def run_demo(workdir: Path, *, port: int = 8080, minutes: float | None = None) -> DemoSummary:
    """Serve the demo collector until Ctrl-C, or for ``minutes``; return a summary."""
    console = Console()
    url, tokens = prepare(workdir)
    admin = secrets.token_urlsafe(24)
    settings = CollectorSettings(database_url=url, port=port, dev=True, admin_token=admin)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    base = f"http://127.0.0.1:{port}"
    if minutes is not None:
        threading.Timer(minutes * 60, lambda: setattr(server, "should_exit", True)).start()
    console.print(
        f"[bold]lomsong demo[/bold]: {len(tokens)} probes of Cao Bằng registered in {workdir}"
    )
    console.print(f"  API docs   {base}/docs")
    console.print(f"  probes     {base}/api/v1/probes   (Authorization: Bearer {admin})")
    console.print(f"  metrics    {base}/metrics")
    console.print(f"  tokens     {workdir / 'tokens.json'}")
    console.print("Ctrl-C stops the demo." if minutes is None else f"Runs for {minutes:g} minutes.")
    started = time.monotonic()
    server.run()
    console.print(f"demo stopped after {time.monotonic() - started:.0f} s")
    return DemoSummary(
        url=base, probes=len(tokens), database=workdir / "lomsong.db", admin_token=admin
    )
