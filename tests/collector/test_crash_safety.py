"""Crash safety: the collector is killed with SIGKILL at random moments during ingest, many times.

Twenty kills run with the other tests; the soak (marker ``soak``, run by ``make bench``) kills it
``SOAK_KILLS`` times.

Probes keep sending batches and re-send whatever was not acknowledged to the next collector
process, as an agent's uploader does. At the end every acknowledged result is stored, no result is
stored twice, every result sent is stored after the last retries, the derived state
(``probe_state``, ``latest_results``, the 5-minute, hourly and daily rollups) agrees with the
rows, and SQLite's integrity check passes.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from lomsong.collector.auth import create_token
from lomsong.collector.registry import Uplink, register_probe
from lomsong.storage.database import open_engine
from tests.conftest import free_port, ready_engine
from tests.factories import body, iso, result
from tests.rollup_checks import check_against_raw, marked
from tests.waiting import wait_until

KILLS = 20
#: about 5 minutes on a 2-core machine: too long for ``make test``
SOAK_KILLS = 100
SEED = 20_251_123
#: Probes that have one batch in flight at a time, as the agent does: "same" re-sends the very
#: same batch, "spool" folds what is pending and new results into one bigger batch and names the
#: lowest seq it still holds (``spool_floor_seq``), as a spool drained in one go does.
SEQUENTIAL = {
    "crash-a": "same",
    "crash-b": "same",
    "crash-c": "spool",
    "crash-d": "spool",
    "crash-e": "spool",
}
#: A probe that sends from two threads at once, so that its batches commit out of seq order.
CONCURRENT = "crash-f"
CONCURRENT_SENDERS = 2
UPLINKS = (Uplink("viettel-4g", "viettel"), Uplink("fibre-1", "fibre"))
#: Result ``seq`` was measured at ``BASE + seq * 10 ms``: well in the past for any run.
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
MAX_SPOOL_BATCH = 1_000


# -- what a probe sends ------------------------------------------------------------------------


def measured_at(seq: int) -> datetime:
    return BASE + timedelta(milliseconds=10 * seq)


def expected_row(seq: int) -> tuple[str, str | None, bool]:
    """The (kind, uplink, ok) every probe sends for ``seq``, to check the rows stored."""
    if seq % 10 == 0:
        return "heartbeat", None, True
    return "icmp", UPLINKS[seq % 2].name, seq % 7 != 0


def make_result(seq: int) -> dict[str, Any]:
    kind, uplink, ok = expected_row(seq)
    extra: dict[str, Any] = {"uptime_seconds": float(seq)} if kind == "heartbeat" else {}
    return result(seq, at=measured_at(seq), kind=kind, uplink=uplink, ok=ok, **extra)


# -- the collector process ---------------------------------------------------------------------


class CollectorProcess:
    """``lomsong serve`` as a child process, started again and again on one SQLite file."""

    def __init__(self, db: Path, workdir: Path) -> None:
        self.exe = Path(sys.executable).with_name("lomsong")
        self.workdir = workdir
        self.log = workdir / "collector.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOMSONG_")}
        env.update(
            LOMSONG_DATABASE_URL=f"sqlite:///{db}",
            LOMSONG_ADMIN_TOKEN=secrets.token_hex(16),
            # The probes here send far faster than real ones: the rate limit is not under test.
            LOMSONG_INGEST__RATE_PER_PROBE="10000",
            LOMSONG_INGEST__RATE_BURST="100000",
            # the leader derives hourly and daily rollups every second: kills land in it too
            LOMSONG_ROLLUPS__DERIVE_EVERY_SECONDS="1",
        )
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.start_seconds = 0.0
        self._url: str | None = None
        self._closed = False
        self._cond = threading.Condition()

    def start(self) -> None:
        assert self.proc is None
        began = time.monotonic()
        for _ in range(3):  # another test may take the free port before the child binds it
            port = free_port()
            with self.log.open("ab") as log:
                proc = subprocess.Popen(
                    [str(self.exe), "serve", "--host", "127.0.0.1", "--port", str(port)],
                    env=self.env,
                    cwd=self.workdir,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            url = f"http://127.0.0.1:{port}"
            if self._wait_healthy(proc, url):
                self.proc = proc
                self.starts += 1
                self.start_seconds += time.monotonic() - began
                with self._cond:
                    self._url = url
                    self._cond.notify_all()
                return
            proc.kill()
            proc.wait()
        pytest.fail(f"the collector did not start; its log ends with:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the collector: no shutdown code runs, as in a crash or an OOM kill."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait(timeout=10)
        assert code == -signal.SIGKILL, f"collector exited with {code}, not by the kill"
        self.proc = None
        with self._cond:
            self._url = None

    def url(self) -> str | None:
        """The running collector's address; waits while there is none. ``None`` once closed."""
        with self._cond:
            while self._url is None and not self._closed:
                self._cond.wait(0.5)
            return self._url

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._url = None
            self._cond.notify_all()
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def _wait_healthy(self, proc: subprocess.Popen[bytes], url: str) -> bool:
        """Until ``/healthz`` answers (True) or the child exits, its port taken (False)."""

        def settled() -> str | None:
            if proc.poll() is not None:
                return "exited"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return "healthy"
            except httpx.TransportError:
                pass
            return None

        outcome = wait_until(
            settled,
            timeout=30,
            what=lambda: f"the collector at {url} healthy; its log ends with:\n{self.log_tail()}",
        )
        return outcome == "healthy"


# -- the probes --------------------------------------------------------------------------------


@dataclass
class Traffic:
    """What every sender did, shared between the sender threads and the test."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    acks: int = 0
    batches: int = 0
    retries: int = 0
    timeouts: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)
    sent: dict[str, set[int]] = field(default_factory=dict)
    acked: dict[str, set[int]] = field(default_factory=dict)

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def acked_since(self, acks_before: int) -> bool:
        """Whether a batch was acknowledged since ``acks`` was ``acks_before``; a problem fails."""
        assert not self.problems, self.problems
        return self.acks != acks_before


class Probe:
    """One probe's uploader: sends batches, re-sends each until a 200 answer acknowledges it."""

    def __init__(
        self,
        probe_id: str,
        token: str,
        collector: CollectorProcess,
        traffic: Traffic,
        stop: threading.Event,
    ) -> None:
        self.probe_id = probe_id
        self.token = token
        self.collector = collector
        self.traffic = traffic
        self.stop = stop
        self._next_seq = 1
        self._seq_lock = threading.Lock()
        traffic.sent[probe_id] = set()
        traffic.acked[probe_id] = set()

    def new_seqs(self, n: int) -> list[int]:
        with self._seq_lock:
            seqs = list(range(self._next_seq, self._next_seq + n))
            self._next_seq += n
        with self.traffic.lock:
            self.traffic.sent[self.probe_id].update(seqs)
        return seqs

    def run(self, mode: str, seed: str) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(10, connect=2)) as client:
                self._loop(client, mode, random.Random(seed))
        except Exception as exc:  # a bug in the test itself must fail it, not vanish in a thread
            self.traffic.problem(f"{self.probe_id}: sender crashed: {exc!r}")

    def _loop(self, client: httpx.Client, mode: str, rng: random.Random) -> None:
        pending: list[int] = []
        failed = False
        while True:
            grow = mode == "spool" and failed and len(pending) < MAX_SPOOL_BATCH
            if not self.stop.is_set() and (not pending or grow):
                pending.extend(self.new_seqs(rng.randint(1, 60)))
            if not pending:
                return
            if failed:
                with self.traffic.lock:
                    self.traffic.retries += 1
            floor = pending[0] if mode == "spool" else None
            ack = self._post(client, pending, floor)
            if ack is None:
                if self.collector.url() is None:
                    return  # the test is over (it failed elsewhere)
                failed = True
                continue
            failed = False
            self._check_ack(ack, pending, sequential=mode != "concurrent")
            pending = []

    def _post(
        self, client: httpx.Client, seqs: list[int], floor: int | None
    ) -> dict[str, Any] | None:
        """One attempt; ``None`` when no answer acknowledged the batch (it must be sent again)."""
        url = self.collector.url()
        if url is None:
            return None
        doc: dict[str, Any] = {
            "probe_id": self.probe_id,
            "boot_id": "boot-1",
            "agent_version": "0.1.0",
            "sent_at": iso(datetime.now(UTC)),
            "results": [make_result(s) for s in seqs],
        }
        if floor is not None:
            doc["spool_floor_seq"] = floor
        raw, headers = body(doc, gz=True)
        headers["Authorization"] = f"Bearer {self.token}"
        t = self.traffic
        with t.lock:
            t.batches += 1
            t.in_flight += 1
        try:
            answer = client.post(f"{url}/api/v1/reports", content=raw, headers=headers)
        except httpx.TransportError as exc:
            # Refused, reset or cut short by the kill: the probe keeps the batch and retries.
            if isinstance(exc, httpx.TimeoutException):
                with t.lock:
                    t.timeouts += 1
            time.sleep(0.02)  # the probe's back-off: paces its retries while no collector runs
            return None
        finally:
            with t.lock:
                t.in_flight -= 1
        if answer.status_code == 200:
            ack: dict[str, Any] = answer.json()
            return ack
        if answer.status_code == 429:
            # the probe's back-off: it honours Retry-After, as the agent's uploader does
            time.sleep(float(answer.headers.get("retry-after", "1")))
            return None
        # A 5xx is retried like a probe would, but it is a collector bug: the test fails on it.
        t.problem(f"{self.probe_id}: HTTP {answer.status_code}: {answer.text[:300]}")
        if answer.status_code < 500:
            raise AssertionError(f"batch refused: HTTP {answer.status_code} {answer.text[:300]}")
        time.sleep(0.1)  # the probe's back-off after a 5xx (already a failure, recorded above)
        return None

    def _check_ack(self, ack: dict[str, Any], seqs: list[int], *, sequential: bool) -> None:
        t = self.traffic
        if ack["accepted"] + ack["duplicates"] != len(seqs):
            t.problem(f"{self.probe_id}: ack {ack} does not add up to {len(seqs)} results")
        # One batch in flight at a time: everything before it was acknowledged already.
        if sequential and ack["stored_through_seq"] < seqs[-1]:
            t.problem(f"{self.probe_id}: ack {ack} is behind the batch's last seq {seqs[-1]}")
        with t.lock:
            t.acks += 1
            t.duplicates += ack["duplicates"]
            t.acked[self.probe_id].update(seqs)


# -- the test ----------------------------------------------------------------------------------


def _prepare(db: Path) -> dict[str, str]:
    """Migrate a fresh file, load the places, register the probes; return their tokens."""
    engine = ready_engine(f"sqlite:///{db}")
    try:
        tokens = {}
        for probe_id in [*SEQUENTIAL, CONCURRENT]:
            register_probe(engine, probe_id, "01273", UPLINKS)
            tokens[probe_id] = create_token(engine, role="probe", probe_id=probe_id).token
    finally:
        engine.dispose()
    return tokens


@pytest.mark.slow
def test_acknowledged_results_survive_sigkill_during_ingest(tmp_path: Path) -> None:
    _kill_during_ingest(tmp_path, KILLS)


@pytest.mark.soak
def test_soak_acknowledged_results_survive_a_hundred_sigkills(tmp_path: Path) -> None:
    _kill_during_ingest(tmp_path, SOAK_KILLS)


def _kill_during_ingest(tmp_path: Path, kills: int) -> None:
    """Kill a collector ``kills`` times under the probes' load, then check every result."""
    db = tmp_path / "lomsong.db"
    tokens = _prepare(db)
    rng = random.Random(SEED)
    collector = CollectorProcess(db, tmp_path)
    traffic = Traffic()
    stop = threading.Event()
    threads: list[threading.Thread] = []
    for probe_id, mode in SEQUENTIAL.items():
        p = Probe(probe_id, tokens[probe_id], collector, traffic, stop)
        threads.append(threading.Thread(target=p.run, args=(mode, f"{SEED}-{probe_id}")))
    shared = Probe(CONCURRENT, tokens[CONCURRENT], collector, traffic, stop)
    threads += [
        threading.Thread(target=shared.run, args=("concurrent", f"{SEED}-{CONCURRENT}-{i}"))
        for i in range(CONCURRENT_SENDERS)
    ]
    in_flight_at_kill: list[int] = []
    began = time.monotonic()
    try:
        for t in threads:
            t.start()
        for _ in range(kills):
            collector.start()
            with traffic.lock:
                acks_before = traffic.acks
            wait_until(  # this collector stores batches
                partial(traffic.acked_since, acks_before),
                timeout=30,
                what="a batch acknowledged",
                interval=0.01,
            )
            # The test's input: a seeded random moment in ingest to kill the collector at.
            time.sleep(rng.uniform(0.1, 1.5))
            in_flight_at_kill.append(traffic.in_flight)
            collector.kill()
            assert not traffic.problems, traffic.problems
        # A last, clean run: no new results, every pending batch is re-sent until acknowledged.
        collector.start()
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "pending batches were not acknowledged"
        # the leader derives what the killed ones left marked (every second here)
        idle = open_engine(f"sqlite:///{db}")
        try:
            wait_until(lambda: not marked(idle), timeout=30, what="the marks derived")
        finally:
            idle.dispose()
        # The last acknowledgements must survive a kill as well.
        collector.kill()
    finally:
        stop.set()
        collector.close()
        for t in threads:
            t.join(timeout=15)
    elapsed = time.monotonic() - began

    assert not traffic.problems, traffic.problems
    stored_total, lost, stored_twice = _check_database(db, traffic)
    # Rollups are folded in the transaction that stores the rows: after every kill they count
    # each stored result once, no more, no less; and the hourly and daily rows that the
    # leaders derived, killed or not, from the marks they left one another.
    engine = open_engine(f"sqlite:///{db}")
    try:
        check_against_raw(engine, [*SEQUENTIAL, CONCURRENT], derive=False)
    finally:
        engine.dispose()
    busy_kills = sum(1 for n in in_flight_at_kill if n > 0)
    acked = sum(len(s) for s in traffic.acked.values())
    print(
        f"\ncrash-safety: {len(in_flight_at_kill)} kills ({busy_kills} with requests in flight) "
        f"+ 1 after the last ack, {collector.starts} starts "
        f"({collector.start_seconds / collector.starts:.1f} s each), {traffic.batches} batches sent, "
        f"{traffic.retries} retries ({traffic.timeouts} timeouts), {traffic.duplicates} results "
        f"answered as duplicates, {acked} results acknowledged, {stored_total} stored, "
        f"{lost} acknowledged lost, {stored_twice} stored twice, {elapsed:.1f} s"
    )
    assert lost == 0 and stored_twice == 0
    assert len(in_flight_at_kill) == kills
    # Several senders keep requests going nearly all the time, so most kills land mid-request.
    assert busy_kills >= len(in_flight_at_kill) // 2, in_flight_at_kill


def _check_database(db: Path, traffic: Traffic) -> tuple[int, int, int]:
    """Check the file with plain sqlite3, apart from any code of the collector; return the rows
    stored, the acknowledged results lost and the results stored twice (both asserted 0)."""
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        total = lost_total = twice_total = 0
        for probe_id, sent in traffic.sent.items():
            rows = con.execute(
                "SELECT seq, measured_at, kind, uplink, ok FROM results WHERE probe_id = ?"
                " ORDER BY seq",
                (probe_id,),
            ).fetchall()
            seqs = [r[0] for r in rows]
            stored = set(seqs)
            lost = traffic.acked[probe_id] - stored
            count, distinct = con.execute(
                "SELECT COUNT(*), COUNT(DISTINCT seq) FROM results WHERE probe_id = ?", (probe_id,)
            ).fetchone()
            lost_total += len(lost)
            twice_total += count - distinct
            assert not lost, (
                f"{probe_id}: {len(lost)} acknowledged results lost: {sorted(lost)[:20]}"
            )
            assert count == distinct == len(seqs), f"{probe_id}: duplicates stored"
            assert stored == sent, (
                f"{probe_id}: {len(sent - stored)} sent results missing, "
                f"{len(stored - sent)} stored that were never sent"
            )
            assert sent == set(range(1, len(sent) + 1)), f"{probe_id}: the test skipped a seq"
            for seq, at, kind, uplink, ok in rows:
                assert (kind, uplink, bool(ok)) == expected_row(seq), (probe_id, seq)
                assert abs(at - measured_at(seq).timestamp()) < 1e-3, (probe_id, seq, at)
            through, max_seq, results_total = con.execute(
                "SELECT stored_through_seq, max_seq, results_total FROM probe_state"
                " WHERE probe_id = ?",
                (probe_id,),
            ).fetchone()
            contiguous = 0
            while contiguous + 1 in stored:
                contiguous += 1
            assert through == contiguous == max(sent), (probe_id, through, contiguous)
            assert max_seq == max(sent), (probe_id, max_seq)
            # results_total counts accepted rows: a re-sent batch must not count twice.
            assert results_total == count, (probe_id, results_total, count)
            total += count
        newest = {
            (p, u, k, t): (m, bool(ok))
            for p, u, k, t, m, ok in con.execute(
                "SELECT r.probe_id, COALESCE(r.uplink, ''), r.kind, r.target, r.seq, r.ok"
                " FROM results r JOIN (SELECT probe_id, COALESCE(uplink, '') AS u, kind, target,"
                " MAX(seq) AS m FROM results GROUP BY 1, 2, 3, 4) g"
                " ON g.probe_id = r.probe_id AND g.u = COALESCE(r.uplink, '')"
                " AND g.kind = r.kind AND g.target = r.target AND g.m = r.seq"
            )
        }
        latest = {
            (p, u, k, t): (s, bool(ok))
            for p, u, k, t, s, ok in con.execute(
                "SELECT probe_id, uplink, kind, target, seq, ok FROM latest_results"
            )
        }
        assert latest == newest, "latest_results disagrees with the newest stored results"
        return total, lost_total, twice_total
    finally:
        con.close()
