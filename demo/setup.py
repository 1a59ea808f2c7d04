"""Setting up ``lomsong demo``: its database, its work directory, the collector's settings.

The demo's collector is the real one with settings tuned for a story told in minutes: probes
report every 10 s and are silent after 30 s, an uplink is down after two failed runs of its
checks and up again after two good ones, and alerts wait 15 s for companions (so a regional
loss is told once) and go to the demo's webhook sink in Vietnamese.
"""

from __future__ import annotations

import json
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from lomsong.collector.auth import create_token
from lomsong.collector.registry import Uplink, register_probe
from lomsong.config.alerts import AlertsConfig
from lomsong.config.collector import CollectorSettings
from lomsong.demo.scenario import Place
from lomsong.demo.world import CHECK_INTERVAL_SECONDS
from lomsong.errors import ValidationError
from lomsong.storage.database import migrate, open_engine
from lomsong.storage.places import load_places
from lomsong.storage.schema import communes

PROVINCE = "04"  # Cao Bằng
#: seed of the demo's synthetic hamlets and sites, so every run shows the same map
SYNTH_SEED = 2026
#: The uplinks a commune centre in the demo has: a fibre line and two operators' 4G routers.
UPLINKS = (
    Uplink("fibre", "fibre"),
    Uplink("viettel-4g", "viettel"),
    Uplink("vnpt-4g", "vinaphone"),
)
#: The demo's files in its work directory: its database, the agents' homes, and a marker that
#: says the directory is the demo's to empty.
DEMO_DB = "lomsong-demo.db"
AGENTS_DIR = "agents"
DEMO_MARKER = ".lomsong-demo"
_LEGACY_DEMO_FILES = frozenset({"lomsong.db", "lomsong.db-wal", "lomsong.db-shm", "tokens.json"})
#: Alert grouping for the demo: a new group waits for companions (a regional loss needs its
#: three communes' outages together), then tells changes at most this often.
GROUP_WAIT = "15s"
GROUP_INTERVAL = "10s"
REGIONAL_MIN_COMMUNES = 3


def slug(name: str) -> str:
    """``"Phường Thục Phán"`` → ``"thuc-phan"`` (without the unit type, ASCII, for probe ids)."""
    name = re.sub(r"^(Phường|Xã|Đặc khu)\s+", "", name)
    ascii_ = unicodedata.normalize("NFKD", name.replace("đ", "d").replace("Đ", "D"))
    ascii_ = "".join(c for c in ascii_ if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")


@dataclass(frozen=True)
class Prepared:
    """The demo's database, ready: its URL, the communes with their probes, the probes' tokens."""

    url: str
    places: list[Place]
    tokens: dict[str, str]
    #: the map's path under the collector, once the coverage data can be loaded
    map_path: str | None


def prepare(workdir: Path) -> Prepared:
    """A fresh demo database with Cao Bằng's probes registered, in ``workdir``.

    Every run starts afresh: probes left silent by an earlier run would otherwise all open
    outages at once. Only the demo's own files are removed, and only from a directory that
    holds nothing else, so a mistyped ``--workdir`` cannot cost anyone their files.
    """
    claim_workdir(workdir)
    db = workdir / DEMO_DB
    for suffix in ("", "-wal", "-shm"):
        db.with_name(DEMO_DB + suffix).unlink(missing_ok=True)
    shutil.rmtree(workdir / AGENTS_DIR, ignore_errors=True)
    url = f"sqlite:///{db}"
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
        places: list[Place] = []
        tokens: dict[str, str] = {}
        for code, name in rows:
            place = Place(code, name, f"cb-{slug(name)}")
            register_probe(engine, place.probe_id, code, UPLINKS, label=f"Trung tâm PVHCC {name}")
            tokens[place.probe_id] = create_token(
                engine, role="probe", probe_id=place.probe_id
            ).token
            places.append(place)
        map_path = load_coverage_data(engine, workdir)
    finally:
        engine.dispose()
    tokens_file = workdir / "tokens.json"
    tokens_file.write_text(json.dumps(tokens, indent=1, ensure_ascii=False))
    tokens_file.chmod(0o600)
    return Prepared(url, places, tokens, map_path)


def claim_workdir(workdir: Path) -> None:
    """Make ``workdir`` the demo's, or refuse one that holds other files."""
    if workdir.exists() and not workdir.is_dir():
        raise ValidationError("--workdir", str(workdir), "is not a directory")
    workdir.mkdir(parents=True, exist_ok=True)
    marker = workdir / DEMO_MARKER
    if not marker.exists():
        # An earlier version of the demo left these; anything else belongs to someone.
        others = sorted(p.name for p in workdir.iterdir() if p.name not in _LEGACY_DEMO_FILES)
        if others:
            raise ValidationError(
                "--workdir",
                str(workdir),
                f"holds files that are not the demo's ({', '.join(others[:3])}); "
                "give an empty or new directory",
            )
        marker.write_text("This directory belongs to `lomsong demo`, which empties it.\n")


def load_coverage_data(engine: Engine, workdir: Path) -> str | None:
    """Store Cao Bằng's synthetic hamlets and sites (seeded, labelled synthetic) in the demo's
    database, as ``lomsong geodata synth --province 04 --seed 2026`` would; the province map's
    path under the collector, so the demo prints its URL.

    ``workdir`` is the demo's directory (the data goes into its database, nothing else).
    """
    from lomsong.coverage.compute import generate_and_store

    generate_and_store(engine, province=PROVINCE, seed=SYNTH_SEED)
    return f"/maps/province/{PROVINCE}"


def demo_settings(url: str, port: int, admin: str) -> CollectorSettings:
    """The collector's settings for the demo: quick detection, so the story fits in minutes."""
    return CollectorSettings(
        database_url=url,
        port=port,
        dev=True,
        admin_token=admin,
        public_url=f"http://127.0.0.1:{port}",
        report_interval_seconds=CHECK_INTERVAL_SECONDS,
        detector={
            "tick_seconds": 1.0,
            "grace_intervals": 3,
            "down_after_failures": 2,
            "up_after_successes": 2,
        },
    )


def demo_alerts(base: str, sink_url: str, alertmanager: str | None) -> AlertsConfig:
    """Every alert to the demo's webhook sink in Vietnamese; also to ``alertmanager`` if given."""
    grouping = {
        "language": "vi",
        # One message per outage: clear lines at the sink, one per commune and link.
        "group_by": ["province", "commune", "condition", "uplink"],
        "group_wait": GROUP_WAIT,
        "group_interval": GROUP_INTERVAL,
    }
    receivers: list[dict[str, object]] = [{"type": "webhook", "name": "demo-sink", "url": sink_url}]
    routes: list[dict[str, object]] = [
        {
            "name": "cao-bang",
            "receiver": "demo-sink",
            "repeat_interval": "1h",
            "continue": True,
            **grouping,
        }
    ]
    if alertmanager is not None:
        receivers.append(
            {"type": "alertmanager", "name": "alertmanager", "url": alertmanager, "timeout": "5s"}
        )
        # Re-sent well within resend_ttl (15 min by default), so Alertmanager keeps it firing.
        routes.append(
            {
                "name": "alertmanager",
                "receiver": "alertmanager",
                "repeat_interval": "5m",
                **grouping,
            }
        )
    return AlertsConfig.model_validate(
        {
            "external_url": base,
            "receivers": receivers,
            "routes": routes,
            "regional": {"min_communes": REGIONAL_MIN_COMMUNES, "window": "2m"},
            "max_attempts": 3,
            "retry_base": "1s",
        }
    )
