"""The fleet view for the whole country: 3,321 probes, each with its newest heartbeat.

A fresh SQLite file holds one probe per commune (3,321), each with ``probe_state`` (agent
version, last heard, clock skew, boot id) and a newest heartbeat (its ``latest_results`` row
and its stored result with uptime and spool figures in ``details``), plus a day of other
results per probe so that the heartbeat lookup works in a table of realistic size; some agents
are outdated (one in ten), some silent (one in 97), some dropping results. Then, median of 7:

1. ``fleet_status`` (the four queries, judging and sorting), beside the baseline of the same
   run: ``load_probes``, the registry read behind ``/api/v1/probes`` (one join, no state);
2. the page's HTML (``fleet_page``) and the API's JSON, their sizes;
3. the page loaded in headless Chromium at 390 px (navigation to the load event), when
   Chromium is installed; again as on the day after a collector upgrade, when every agent is
   outdated (the list on top is capped, ``fleet_page.ATTENTION_LIMIT``).

4. the token lookup every report pays on a cache miss, with the pending rotations (one probe
   in 50 has one) read at most once per ``token_cache_seconds``, beside the lookup as it was
   before rotations.

Targets: gathering ≤ 500 ms; page ≤ 4 MB; load in Chromium ≤ 3 s; lookup ≤ 1.25× the old.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from sqlalchemy import Engine, insert, select

from bench.report import Outcome, check, heading, line
from lomsong.collector.fleet import fleet_status
from lomsong.collector.registry import load_probes
from lomsong.maps.fleet_page import fleet_page
from lomsong.storage.database import migrate, open_engine
from lomsong.storage.places import load_places
from lomsong.storage.schema import (
    communes,
    latest_results,
    probe_state,
    probe_uplinks,
    probes,
    results,
    token_rotations,
    tokens,
)

RUNS = 7
#: other results stored per probe beside its heartbeat: a few rounds of four checks
OTHERS = 40
TARGET_GATHER_SECONDS = 0.5
TARGET_PAGE_BYTES = 4 * 2**20
TARGET_LOAD_SECONDS = 3.0
VERSIONS = ("0.1.0",) * 18 + ("0.0.9", "0.0.8")


def main() -> list[Outcome]:
    heading("fleet: the fleet view of 3,321 probes")
    line(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        return _run(Path(tmp))


def _run(tmp: Path) -> list[Outcome]:
    engine = open_engine(f"sqlite:///{tmp / 'fleet.db'}")
    migrate(engine)
    load_places(engine)
    now = time.time()
    count = _fill(engine, now)
    line(f"{count:,} probes, {count * (OTHERS + 1):,} results stored")
    silent_after = 90.0

    def baseline() -> object:
        with engine.connect() as conn:
            return load_probes(conn)

    base = _median(baseline)
    gather = _median(lambda: fleet_status(engine, None, now=now, silent_after=silent_after))
    fleet = fleet_status(engine, None, now=now, silent_after=silent_after)
    render = _median(lambda: fleet_page(fleet, who="bench"))
    html = fleet_page(fleet, who="bench")
    html_bytes = len(html.encode())
    encode = _median(lambda: orjson.dumps(fleet.as_json()))
    body = orjson.dumps(fleet.as_json())
    line(
        f"baseline load_probes {base * 1000:.1f} ms; fleet_status {gather * 1000:.1f} ms "
        f"({gather / base:.1f}× the baseline); {fleet.silent} silent, {fleet.outdated} outdated"
    )
    line(
        f"page HTML {html_bytes / 2**20:.2f} MB rendered in {render * 1000:.1f} ms; "
        f"JSON {len(body) / 2**20:.2f} MB encoded in {encode * 1000:.1f} ms"
    )
    out = [
        check(
            "fleet",
            "gather 3,321 probes",
            f"{gather * 1000:.0f} ms ({gather / base:.1f}× load_probes)",
            f"≤ {TARGET_GATHER_SECONDS * 1000:.0f} ms",
            gather <= TARGET_GATHER_SECONDS,
        ),
        check(
            "fleet",
            "page size",
            f"{html_bytes / 2**20:.2f} MB",
            f"≤ {TARGET_PAGE_BYTES / 2**20:.0f} MB",
            html_bytes <= TARGET_PAGE_BYTES,
        ),
    ]
    # the day after a collector upgrade: every agent older than the collector
    upgraded = fleet_status(engine, None, now=now, silent_after=silent_after, collector_version="9")
    line(f"after a collector upgrade: {upgraded.outdated} outdated")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        line("chromium is not installed: the page's load time is not measured")
    else:
        for name, shown in (("", fleet), (", all outdated", upgraded)):
            page_file = tmp / "fleet.html"
            page_file.write_text(fleet_page(shown, who="bench"), encoding="utf-8")
            load = _load_seconds(chromium, page_file.as_uri())
            line(f"Chromium at 390 px{name}: load event after {load * 1000:.0f} ms (median of 5)")
            out.append(
                check(
                    "fleet",
                    f"page load, Chromium 390 px{name}",
                    f"{load * 1000:.0f} ms",
                    f"≤ {TARGET_LOAD_SECONDS:.0f} s",
                    load <= TARGET_LOAD_SECONDS,
                )
            )
    out.append(_token_lookups(engine, now))
    engine.dispose()
    return out


def _token_lookups(engine: Engine, now: float) -> Outcome:
    """What rotations cost every report: the token lookup on a cache miss (nearly every report
    at the national rate), beside the lookup without them."""
    from lomsong.collector.auth import Authenticator, hash_token

    with engine.begin() as conn:
        ids = conn.execute(select(probes.c.id)).scalars().all()
        conn.execute(
            insert(tokens),
            [
                {
                    "token_hash": hash_token(f"lst_bench-{pid}"),
                    "prefix": "lst_bench",
                    "role": "probe",
                    "probe_id": pid,
                    "created_at": now,
                }
                for pid in ids
            ],
        )
        conn.execute(
            insert(token_rotations),
            [
                {"probe_id": pid, "requested_at": now, "requested_by": "bench", "offers": 0}
                for pid in ids[::50]
            ],
        )

    class Before(Authenticator):
        """The lookup as it was before rotations."""

        def _pending_rotations(self, now: float) -> dict[str, tuple[int, int | None]]:
            return {}

    # distinct tokens, and a fresh authenticator each round: every lookup misses the token
    # cache, as nearly every report does at the national rate; rotations are read at most
    # once per cache_seconds (2 s, the default)
    sample = [f"lst_bench-{pid}" for pid in random.Random(3).sample(ids, k=3000)]
    joined: list[float] = []
    bare: list[float] = []
    for kind, times in ((Authenticator, joined), (Before, bare)) * (RUNS + 1):
        auth = kind(engine, "", cache_seconds=2.0)
        began = time.perf_counter()
        for t in sample:
            auth.authenticate(t)
        times.append(time.perf_counter() - began)
    with_join, without = statistics.median(joined[1:]), statistics.median(bare[1:])
    per, base = with_join / len(sample) * 1e6, without / len(sample) * 1e6
    line(f"token lookup: {per:.1f} µs with pending rotations, {base:.1f} µs without")
    return check(
        "fleet",
        "token lookup with rotations",
        f"{per:.1f} µs ({per / base:.2f}× without)",
        "≤ 1.25×",
        per <= 1.25 * base,
    )


def _fill(engine: Engine, now: float) -> int:
    rng = random.Random(16)
    with engine.connect() as conn:
        codes = conn.execute(select(communes.c.code).order_by(communes.c.code)).scalars().all()
    probe_rows: list[dict[str, object]] = []
    state_rows: list[dict[str, object]] = []
    uplink_rows: list[dict[str, object]] = []
    result_rows: list[dict[str, object]] = []
    latest_rows: list[dict[str, object]] = []
    for i, code in enumerate(codes):
        pid = f"p-{code}"
        probe_rows.append({"id": pid, "commune_code": code, "label": None, "created_at": now})
        uplink_rows.append({"probe_id": pid, "name": "fibre", "operator": "fibre"})
        heard = now - (3600 if i % 97 == 0 else rng.uniform(0, 40))
        state_rows.append(
            {
                "probe_id": pid,
                "boot_id": f"boot-{i}",
                "agent_version": rng.choice(VERSIONS),
                "last_seen_at": heard,
                "last_sent_at": heard,
                "last_measured_at": heard,
                "clock_skew_seconds": rng.gauss(0, 5),
                "stored_through_seq": OTHERS + 1,
                "max_seq": OTHERS + 1,
                "results_total": OTHERS + 1,
            }
        )
        result_rows.extend(
            _result(pid, seq, heard - (OTHERS + 1 - seq) * 7.5, "tcp")
            for seq in range(1, OTHERS + 1)
        )
        beat_at = heard - 1
        details = {
            "uptime_seconds": rng.uniform(60, 40 * 86_400),
            "spool_depth": rng.randrange(0, 50),
            "spool_dropped": 5 if i % 211 == 0 else 0,
            "spool_refused": 0,
        }
        result_rows.append(
            _result(pid, OTHERS + 1, beat_at, "heartbeat", details=orjson.dumps(details).decode())
        )
        latest_rows.append(
            {
                "probe_id": pid,
                "uplink": "",
                "kind": "heartbeat",
                "target": "self",
                "seq": OTHERS + 1,
                "measured_at": beat_at,
                "ok": True,
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(probes), probe_rows)
        conn.execute(insert(probe_state), state_rows)
        conn.execute(insert(probe_uplinks), uplink_rows)
        conn.execute(insert(results), result_rows)
        conn.execute(insert(latest_results), latest_rows)
    return len(codes)


def _result(
    pid: str, seq: int, at: float, kind: str, details: str | None = None
) -> dict[str, object]:
    return {
        "probe_id": pid,
        "seq": seq,
        "measured_at": at,
        "received_at": at + 1,
        "kind": kind,
        "target": "self" if kind == "heartbeat" else "dichvucong.gov.vn:443",
        "uplink": None if kind == "heartbeat" else "fibre",
        "ok": True,
        "duration_seconds": 0.04,
        "boot_id": "b",
        "details": details,
    }


def _median(work: object) -> float:
    assert callable(work)
    work()  # warm: the first run pays for statement compilation and the page cache
    times = []
    for _ in range(RUNS):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _load_seconds(chromium: str, url: str) -> float:
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        try:
            for _ in range(5):
                context = browser.new_context(viewport={"width": 390, "height": 844})
                page = context.new_page()
                began = time.perf_counter()
                page.goto(url, wait_until="load", timeout=60_000)
                times.append(time.perf_counter() - began)
                context.close()
        finally:
            browser.close()
    return statistics.median(times)
