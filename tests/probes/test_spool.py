"""The spool keeps what it recorded through kills, torn writes, full disks and corruption."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lomsong.probes.spool import Spool, inspect_wal

# A writer in its own process: appends results one transaction at a time and prints each seq
# after append() returned (that is, once it was recorded).
WRITER = """
import os, resource, signal, sys, time
from lomsong.errors import SpoolError
from lomsong.probes.spool import Spool
path, count, size, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, not kills
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
spool = Spool(path)
body = b'{"kind":"icmp","pad":"' + b"x" * size + b'"}'
for i in range(count):
    try:
        seq = spool.append([(time.time(), "icmp", body)])[0]
    except SpoolError as exc:
        print("ERR", exc, flush=True)
        os._exit(3)
    print(seq, flush=True)
os._exit(0)  # no close: leave the WAL as a crash would
"""


#: Results in these tests were measured now: the age bound (30 days by default) keeps them.
NOW = time.time()


def writer(path: Path, count: int, *, size: int = 50, limit: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(count), str(size), str(limit)],
        stdout=subprocess.PIPE,
        text=True,
    )


def rows(path: Path) -> list[int]:
    spool = Spool(path)
    try:
        return [r.seq for r in spool.pending(10**6)]
    finally:
        spool.close()


def test_seq_is_monotonic_across_restarts_and_frees(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path, clock=lambda: 1_800_000_000.0, max_age_seconds=1e12)
    first = spool.append([(NOW, "icmp", b'{"a":1}'), (NOW, "tcp", b'{"a":2}')])
    # A new spool starts at the clock in milliseconds, so a lost spool never reuses old seqs.
    assert first == [1_800_000_000_000, 1_800_000_000_001]
    assert spool.acknowledge(first[-1], first) == 2
    assert spool.pending(10) == [] and spool.floor_seq() is None
    spool.close()
    spool = Spool(path, clock=lambda: 1.0, max_age_seconds=1e12)  # a clock thrown back at boot
    assert spool.append([(NOW, "icmp", b'{"a":3}')]) == [1_800_000_000_002]
    spool.close()


def test_acknowledged_rows_wait_for_the_contiguous_mark(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db")
    seqs = spool.append([(NOW + i, "heartbeat" if i == 4 else "icmp", b"{}") for i in range(5)])
    # The newest heartbeat was sent first and stored out of order: marked, not freed.
    assert spool.newest("heartbeat") is not None
    spool.acknowledge(seqs[0] - 1, [seqs[4]])
    assert spool.newest("heartbeat") is None
    assert [r.seq for r in spool.pending(10)] == seqs[:4]
    assert spool.floor_seq() == seqs[0]
    spool.acknowledge(seqs[0] - 1, seqs[:2])  # stored, but the mark has not reached them
    assert spool.floor_seq() == seqs[2]
    stats = spool.stats()
    assert (stats.depth, stats.sent_waiting) == (2, 3)
    spool.acknowledge(seqs[4], seqs[:4])
    assert spool.stats().depth == 0 and spool.floor_seq() is None
    spool.close()


def test_size_bound_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_bytes=256 * 1024)
    body = b'{"pad":"' + b"x" * 1000 + b'"}'
    seqs = [spool.append([(NOW + i, "icmp", body)])[0] for i in range(600)]
    stats = spool.stats()
    assert stats.bytes_used <= 256 * 1024
    kept = [r.seq for r in spool.pending(10_000)]
    # What is left is the newest, without a hole; everything older was dropped and counted.
    assert kept == seqs[-len(kept) :]
    assert stats.dropped == 600 - len(kept) > 0
    spool.close()


def test_age_bound_drops_old_results(tmp_path: Path) -> None:
    now = [1_000_000.0]
    spool = Spool(tmp_path / "spool.db", max_age_seconds=3600, clock=lambda: now[0])
    spool.append([(now[0] - 7200, "icmp", b"{}"), (now[0] - 10, "icmp", b"{}")])
    assert spool.stats().depth == 1 and spool.stats().dropped == 1
    now[0] += 3600
    assert spool.trim() == 1
    assert spool.stats().dropped == 2
    spool.close()


def test_sigkill_mid_writes_loses_nothing_recorded(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    for round_ in range(3):
        proc = writer(path, 100_000)
        assert proc.stdout is not None
        printed = [int(proc.stdout.readline()) for _ in range(50 + 40 * round_)]
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate()
        printed += [int(line) for line in rest.split()]
        held = set(rows(path))
        assert set(printed) <= held, f"round {round_}: recorded results were lost"
        assert max(held) - min(printed) + 1 >= len(printed)
    # The file passes SQLite's own check, and numbering goes on above everything given out.
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    spool = Spool(path)
    assert spool.append([(NOW, "icmp", b"{}")])[0] > max(printed)
    spool.close()


def test_torn_wal_tail_is_discarded_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    proc = writer(path, 40)
    out, _ = proc.communicate(timeout=60)
    printed = [int(x) for x in out.split()]
    wal = Path(f"{path}-wal")
    data = wal.read_bytes()
    assert inspect_wal(wal) == (0, 0)
    # A power cut tore the last write: cut the file in the middle of its last frame.
    wal.write_bytes(data[:-700])
    frames, torn = inspect_wal(wal)
    assert frames >= 1 and 700 < torn < 3 * 4120
    spool = Spool(path)
    assert (spool.report.torn_frames, spool.report.torn_bytes) == (frames, torn)
    held = [r.seq for r in spool.pending(1000)]
    # Everything but the torn last transaction is there, in order.
    assert held == printed[:-1]
    assert spool.append([(NOW, "icmp", b"{}")]) == [printed[-1]]
    spool.close()


def test_garbage_after_the_wal_is_torn_too(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    out, _ = writer(path, 10).communicate(timeout=60)
    wal = Path(f"{path}-wal")
    with wal.open("ab") as fh:
        fh.write(os.urandom(5000))
    frames, torn = inspect_wal(wal)
    assert (frames, torn) == (2, 5000)  # a frame-sized run of garbage, and a partial frame
    assert rows(path) == [int(x) for x in out.split()]


def test_full_disk_is_a_loud_error_and_never_corrupts(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    proc = writer(path, 10_000, size=2000, limit=400_000)
    out, _ = proc.communicate(timeout=120)
    lines = out.splitlines()
    assert proc.returncode == 3, lines[-3:]
    assert lines[-1].startswith(f"ERR spool {path}: cannot write: ")
    assert lines[-1].endswith("is the disk full or read-only?")
    printed = [int(x) for x in lines[:-1]]
    assert len(printed) > 10
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert rows(path) == printed


def test_read_only_spool_is_a_loud_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "spool.db"
    spool = Spool(path)
    spool.append([(NOW, "icmp", b"{}")])
    spool.close()
    path.chmod(0o444)
    folder.chmod(0o555)
    code = (
        "import sys, time\n"
        "from lomsong.errors import SpoolError\n"
        "from lomsong.probes.spool import Spool\n"
        "try:\n"
        "    Spool(sys.argv[1]).append([(2.0, 'icmp', b'{}')])\n"
        "except SpoolError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(3)\n"
    )
    # Without CAP_DAC_OVERRIDE even root obeys the file's mode, as the agent's user would.
    argv = [sys.executable, "-c", code, str(path)]
    if os.geteuid() == 0:
        argv = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *argv]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith(f"spool {path}: cannot ")
    assert len(rows(path)) == 1


def test_corrupt_spool_is_moved_aside_and_salvaged(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool(path)
    body = b'{"pad":"' + b"y" * 900 + b'"}'
    seqs = spool.append([(NOW + i, "icmp", body) for i in range(200)])
    spool.close()  # checkpoints: everything is in the main file now
    with path.open("r+b") as fh:  # wreck one page in the middle of the table
        fh.seek(4096 * 20)
        fh.write(b"\xff" * 4096)
    spool = Spool(path)
    report = spool.report
    assert report.quarantined_to is not None and report.quarantined_to.exists()
    kept = [r.seq for r in spool.pending(1000)]
    assert 0 < report.salvaged == len(kept) < 200
    assert set(kept) <= set(seqs)
    assert spool.append([(NOW, "icmp", b"{}")])[0] > max(seqs)
    spool.close()


@pytest.mark.parametrize("size", [0, 20])
def test_a_missing_or_tiny_wal_is_not_torn(tmp_path: Path, size: int) -> None:
    wal = tmp_path / "x-wal"
    if size:
        wal.write_bytes(b"\0" * size)
        assert inspect_wal(wal) == (0, size)
    else:
        assert inspect_wal(wal) == (0, 0)


def test_time_is_not_slept(tmp_path: Path) -> None:
    start = time.monotonic()
    spool = Spool(tmp_path / "s.db")
    spool.append([(NOW, "icmp", b"{}")] * 100)
    spool.close()
    assert time.monotonic() - start < 10
