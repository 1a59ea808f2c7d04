"""The durable spool: every result is written here before anything else happens to it.

A SQLite file in WAL mode with ``synchronous=FULL``: when :meth:`Spool.append` returns, the
results survive a kill or a power cut. Each result gets its ``seq`` here, from an AUTOINCREMENT
counter that never reuses a number, even after rows are freed or the agent restarts. A new spool
starts its counter at the current time in milliseconds, so a box whose spool was lost (a new disk,
a reinstall) never reuses seqs the collector already holds, which it would ignore as duplicates.

A row leaves the spool when the collector's ``stored_through_seq`` passes it. Rows the collector
acknowledged out of order (the newest heartbeat sent first on reconnect) are marked ``sent`` and
wait for the contiguous mark. The spool is bounded by size and by age; when it must shed, the
oldest rows go first and their number is kept in ``dropped`` (reported by heartbeats).

Failure modes, each loud and none corrupting: a full disk or a read-only file system raises
:class:`~lomsong.errors.SpoolError` and rolls the write back; a WAL whose tail was torn by a power
cut is opened (SQLite ignores the torn frames) and the torn part is measured and reported; a main
file that fails SQLite's check is moved aside and its readable rows are copied to a new spool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from lomsong.errors import SpoolError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    measured_at REAL NOT NULL,
    kind TEXT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS refused (
    seq INTEGER PRIMARY KEY,
    measured_at REAL NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    refused_at REAL NOT NULL
);
"""
#: Refused results kept for people to look at (``lomsong probe refused``); older ones are
#: deleted, and still counted.
REFUSED_KEPT = 1_000
#: Age trimming scans the table, so it runs at most this often.
_AGE_TRIM_EVERY = 60.0
#: When over the size bound, shed down to this fraction of it, so shedding is not per write.
_SHED_TO = 0.9
_WAL_MAGIC = (0x377F0682, 0x377F0683)

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SpooledResult:
    """One result as the spool holds it: its seq and its wire JSON without the seq."""

    seq: int
    kind: str
    body: bytes
    #: When it was measured (the probe's clock): the uploader's batch deadline counts from it.
    measured_at: float = 0.0


@dataclass(frozen=True, slots=True)
class SpoolStats:
    depth: int
    sent_waiting: int
    dropped: int
    refused: int
    bytes_used: int
    oldest_measured_at: float | None
    next_seq: int


@dataclass(frozen=True, slots=True)
class OpenReport:
    """What opening the spool found and repaired."""

    torn_frames: int = 0
    torn_bytes: int = 0
    quarantined_to: Path | None = None
    salvaged: int = 0


class Spool:
    """The SQLite spool; every method is one transaction. Not thread-safe: see AsyncSpool."""

    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int = 256 * 2**20,
        max_age_seconds: float = 30 * 86_400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._last_age_trim = float("-inf")
        self.report = OpenReport()
        self._conn = self._open()

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(
                f"spool {self.path}: cannot create its folder: {exc.strerror}"
            ) from exc
        torn_frames, torn_bytes = inspect_wal(Path(f"{self.path}-wal"))
        conn = self._connect()
        if not self._healthy(conn):
            conn.close()
            moved, salvaged_rows, last_seq = self._quarantine()
            conn = self._connect()
            self._create(conn, start_seq=max(last_seq + 1, self._clock_seq()))
            if salvaged_rows:
                self._write(conn, self._restore, salvaged_rows)
            self.report = OpenReport(torn_frames, torn_bytes, moved, len(salvaged_rows))
            log.error(
                "spool %s failed its integrity check: moved to %s, %d rows salvaged",
                self.path,
                moved,
                len(salvaged_rows),
            )
        else:
            self._create(conn, start_seq=self._clock_seq())
            self.report = OpenReport(torn_frames, torn_bytes)
        if torn_bytes:
            log.warning(
                "spool %s: discarded a torn WAL tail of %d bytes (%d frames) left by a crash; "
                "results whose write had not completed were never recorded",
                self.path,
                torn_bytes,
                torn_frames,
            )
            self._write(conn, self._bump_meta, "torn_bytes", torn_bytes)
        return conn

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # Keep the WAL file small after checkpoints: a commune box may have a tiny disk.
            conn.execute("PRAGMA journal_size_limit=4194304")
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self.path}: cannot open: {exc}") from exc
        return conn

    def _healthy(self, conn: sqlite3.Connection) -> bool:
        try:
            row = conn.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError:
            return False
        return bool(row) and row[0] == "ok"

    def _create(self, conn: sqlite3.Connection, *, start_seq: int) -> None:
        def create(c: sqlite3.Connection) -> None:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)  # executescript would commit our transaction
            known = c.execute("SELECT seq FROM sqlite_sequence WHERE name = 'results'").fetchone()
            if known is None:
                c.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('results', ?)",
                    (start_seq - 1,),
                )

        self._write(conn, create)

    def _clock_seq(self) -> int:
        return max(1, int(self._clock() * 1000))

    def _quarantine(self) -> tuple[Path, list[tuple[Any, ...]], int]:
        """Move a damaged spool aside; return where, its readable rows and its last seq."""
        rows: list[tuple[Any, ...]] = []
        last_seq = 0
        try:
            old = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            try:
                with_seq = old.execute("SELECT seq FROM sqlite_sequence WHERE name='results'")
                last_seq = int((with_seq.fetchone() or (0,))[0])
            except sqlite3.DatabaseError:
                pass
            rows = _salvage(old, last_seq)
            old.close()
        except sqlite3.DatabaseError:
            pass
        if rows:
            last_seq = max(last_seq, rows[-1][0])
        moved = self.path.with_name(f"{self.path.name}.corrupt-{int(self._clock())}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                os.replace(src, Path(f"{moved}{suffix}"))
        return moved, rows, last_seq

    # -- writing -----------------------------------------------------------------------------

    def append(self, results: Sequence[tuple[float, str, bytes]]) -> list[int]:
        """Store ``(measured_at, kind, body)`` results durably; return their seqs in order."""
        if not results:
            return []
        seqs = self._write(self._conn, self._insert, results)
        self._shed_if_needed()
        return seqs

    def _insert(
        self, c: sqlite3.Connection, results: Sequence[tuple[float, str, bytes]]
    ) -> list[int]:
        seqs = []
        for measured_at, kind, body in results:
            cur = c.execute(
                "INSERT INTO results (measured_at, kind, body) VALUES (?, ?, ?)",
                (measured_at, kind, body),
            )
            seqs.append(int(cur.lastrowid or 0))
        return seqs

    def acknowledge(self, stored_through_seq: int, sent: Iterable[int] = ()) -> int:
        """The collector stored ``sent`` and everything up to ``stored_through_seq``: free rows.

        Returns the number of rows freed.
        """
        sent_list = list(sent)

        def ack(c: sqlite3.Connection) -> int:
            for i in range(0, len(sent_list), 500):
                part = sent_list[i : i + 500]
                c.execute(
                    f"UPDATE results SET sent = 1 WHERE seq IN ({','.join('?' * len(part))})",
                    part,
                )
            freed = c.execute("DELETE FROM results WHERE seq <= ?", (stored_through_seq,))
            return int(freed.rowcount)

        return self._write(self._conn, ack)

    def set_aside(self, seqs: Iterable[int], reason: str) -> int:
        """Move results the collector refuses for good out of the queue, into ``refused``
        with the collector's reason, so the results behind them go on; return how many.

        They are counted for the heartbeat; the newest ``REFUSED_KEPT`` stay to be read.
        """
        wanted = [(self._clock(), reason, seq) for seq in seqs]

        def move(c: sqlite3.Connection) -> int:
            c.executemany(
                "INSERT OR REPLACE INTO refused (seq, measured_at, kind, body, reason, "
                "refused_at) SELECT seq, measured_at, kind, body, ?2, ?1 FROM results "
                "WHERE seq = ?3",
                wanted,
            )
            n = sum(
                c.execute("DELETE FROM results WHERE seq = ?", (seq,)).rowcount
                for _at, _why, seq in wanted
            )
            c.execute(
                "DELETE FROM refused WHERE seq NOT IN "
                "(SELECT seq FROM refused ORDER BY seq DESC LIMIT ?)",
                (REFUSED_KEPT,),
            )
            self._bump_meta(c, "refused", n)
            return n

        n = self._write(self._conn, move)
        if n:
            log.error("spool: set aside %d results the collector refuses: %s", n, reason)
        return n

    def refused(self, limit: int = 100) -> list[tuple[int, str, float, str]]:
        """The newest results set aside: ``(seq, kind, refused_at, reason)``, newest first."""
        rows = self._read(
            "SELECT seq, kind, refused_at, reason FROM refused ORDER BY seq DESC LIMIT ?",
            (limit,),
        )
        return [(int(s), str(k), float(at), str(why)) for s, k, at, why in rows]

    def trim(self) -> int:
        """Apply the age and size bounds now; return how many unsent results were dropped."""
        self._last_age_trim = float("-inf")
        return self._shed_if_needed()

    def _shed_if_needed(self) -> int:
        dropped = 0
        now = self._clock()
        if now - self._last_age_trim >= _AGE_TRIM_EVERY:
            self._last_age_trim = now
            dropped += self._write(self._conn, self._drop_older, now - self.max_age_seconds)
        if self._bytes_used() > self.max_bytes:
            dropped += self._shed_size()
        return dropped

    def _drop_older(self, c: sqlite3.Connection, cutoff: float) -> int:
        lost = c.execute(
            "SELECT count(*) FROM results WHERE measured_at < ? AND sent = 0", (cutoff,)
        ).fetchone()[0]
        c.execute("DELETE FROM results WHERE measured_at < ?", (cutoff,))
        if lost:
            self._bump_meta(c, "dropped", lost)
            log.warning("spool: dropped %d results older than the age bound", lost)
        return int(lost)

    def _shed_size(self) -> int:
        total = 0
        target = self.max_bytes * _SHED_TO
        while self._bytes_used() > target:
            count = self._conn.execute("SELECT count(*) FROM results").fetchone()[0]
            if count == 0:
                break
            chunk = max(1, min(count, count // 20 or 1))

            def shed(c: sqlite3.Connection, n: int = chunk) -> int:
                lost = c.execute(
                    "SELECT count(*) FROM (SELECT sent FROM results ORDER BY seq LIMIT ?) "
                    "WHERE sent = 0",
                    (n,),
                ).fetchone()[0]
                c.execute(
                    "DELETE FROM results WHERE seq IN "
                    "(SELECT seq FROM results ORDER BY seq LIMIT ?)",
                    (n,),
                )
                self._bump_meta(c, "dropped", lost)
                return int(lost)

            total += self._write(self._conn, shed)
        if total:
            log.warning(
                "spool: over %d bytes, dropped the %d oldest results", self.max_bytes, total
            )
        return total

    def _restore(self, c: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        c.executemany(
            "INSERT OR IGNORE INTO results (seq, measured_at, kind, sent, body) "
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )

    @staticmethod
    def _bump_meta(c: sqlite3.Connection, key: str, by: int) -> None:
        if by:
            c.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                (key, by),
            )

    def _write(self, conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in one immediate transaction; any failure is a SpoolError."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn, *args)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            raise SpoolError(
                f"spool {self.path}: cannot write: {exc}; is the disk full or read-only?"
            ) from exc
        return out

    # -- reading ---------------------------------------------------------------------------

    def pending(self, limit: int, *, after_seq: int = 0) -> list[SpooledResult]:
        """Results not yet acknowledged, oldest first."""
        rows = self._read(
            "SELECT seq, kind, body, measured_at FROM results "
            "WHERE sent = 0 AND seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [SpooledResult(int(s), str(k), bytes(b), float(t)) for s, k, b, t in rows]

    def newest(self, kind: str) -> SpooledResult | None:
        """The newest unacknowledged result of ``kind``."""
        rows = self._read(
            "SELECT seq, kind, body, measured_at FROM results WHERE sent = 0 AND kind = ? "
            "ORDER BY seq DESC LIMIT 1",
            (kind,),
        )
        if not rows:
            return None
        seq, kind_, body, measured_at = rows[0]
        return SpooledResult(int(seq), str(kind_), bytes(body), float(measured_at))

    def floor_seq(self) -> int | None:
        """The lowest seq the collector may still lack: the oldest row not yet sent.

        Everything below it was acknowledged, is stored at the collector (sent, waiting for the
        contiguous mark) or was dropped, so the collector may move its mark up to it.
        """
        rows = self._read("SELECT min(seq) FROM results WHERE sent = 0", ())
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def stats(self) -> SpoolStats:
        depth, sent_waiting, oldest = self._read(
            "SELECT coalesce(sum(sent = 0), 0), coalesce(sum(sent), 0), "
            "min(CASE WHEN sent = 0 THEN measured_at END) FROM results",
            (),
        )[0]
        counts = dict(self._read("SELECT key, value FROM meta", ()))
        nxt = self._read("SELECT seq FROM sqlite_sequence WHERE name = 'results'", ())
        return SpoolStats(
            depth=int(depth),
            sent_waiting=int(sent_waiting),
            dropped=int(counts.get("dropped", 0)),
            refused=int(counts.get("refused", 0)),
            bytes_used=self._bytes_used(),
            oldest_measured_at=float(oldest) if oldest is not None else None,
            next_seq=int(nxt[0][0]) + 1 if nxt else 1,
        )

    def _bytes_used(self) -> int:
        page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise SpoolError(f"spool {self.path}: cannot read: {exc}") from exc

    def close(self) -> None:
        self._conn.close()


class AsyncSpool:
    """The spool for the event loop: every call runs on one worker thread, in order.

    A ``synchronous=FULL`` commit waits for the disk; on a slow SD card that can take tens of
    milliseconds, which must never stall the loop while checks are timing round trips.
    """

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lomsong-spool")

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    async def append(self, results: Sequence[tuple[float, str, bytes]]) -> list[int]:
        return await self._call(self.spool.append, results)

    async def acknowledge(self, stored_through_seq: int, sent: Iterable[int] = ()) -> int:
        return await self._call(self.spool.acknowledge, stored_through_seq, list(sent))

    async def set_aside(self, seqs: Iterable[int], reason: str) -> int:
        return await self._call(self.spool.set_aside, list(seqs), reason)

    async def pending(self, limit: int, *, after_seq: int = 0) -> list[SpooledResult]:
        return await self._call(self.spool.pending, limit, after_seq=after_seq)

    async def newest(self, kind: str) -> SpooledResult | None:
        return await self._call(self.spool.newest, kind)

    async def floor_seq(self) -> int | None:
        return await self._call(self.spool.floor_seq)

    async def stats(self) -> SpoolStats:
        return await self._call(self.spool.stats)

    async def close(self) -> None:
        await self._call(self.spool.close)
        self._pool.shutdown(wait=True)


def _salvage(old: sqlite3.Connection, last_seq: int) -> list[tuple[Any, ...]]:
    """Read every row still readable from a damaged spool, stepping around broken pages.

    The walk goes down from the last seq given out, 100 seqs at a time, to the lowest seq if
    SQLite can still tell it, else until 100,000 seqs in a row yield nothing (rows are freed from
    the bottom, so the held ones sit together at the top).
    """
    low = high = None
    for query in ("SELECT min(seq) FROM results", "SELECT max(seq) FROM results"):
        try:
            value = old.execute(query).fetchone()[0]
        except sqlite3.DatabaseError:
            value = None
        if query.startswith("SELECT min"):
            low = value
        else:
            high = value
    top = max(int(high or 0), last_seq)
    if top <= 0:
        return []
    columns = "SELECT seq, measured_at, kind, sent, body FROM results"
    rows: list[tuple[Any, ...]] = []
    empty = 0
    end = top + 1
    while end > 0 and end > (int(low) if low is not None else 0) and empty < 1_000:
        start = max(0, end - 100)
        try:
            found = old.execute(
                f"{columns} WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end)
            ).fetchall()
        except sqlite3.DatabaseError:
            # A damaged page in this window: look each seq up alone; a lookup only touches
            # the pages on its own path, so the rows on good pages are still found.
            found = []
            for seq in range(start, end):
                try:
                    found += old.execute(f"{columns} WHERE seq = ?", (seq,)).fetchall()
                except sqlite3.DatabaseError:
                    continue
        empty = 0 if found else empty + 1
        rows = found + rows
        end = start
    return rows


def inspect_wal(path: Path) -> tuple[int, int]:
    """Measure the torn tail of a WAL file: ``(frames, bytes)`` SQLite will not replay.

    A frame belongs to the WAL's current generation when its salts match the header. Frames of
    the current generation after the last valid commit frame (a transaction cut short), frames
    whose running checksum fails, and a partial frame at the end are torn. Frames of an older
    generation left past the end are normal leftovers, not torn.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0, 0
    except OSError as exc:
        raise SpoolError(f"spool WAL {path}: cannot read: {exc.strerror}") from exc
    if not data:
        return 0, 0
    if len(data) < 32:
        return 0, len(data)
    magic, _version, page_size, _ckpt, salt1, salt2 = struct.unpack(">6I", data[:24])
    if magic not in _WAL_MAGIC or page_size < 512 or page_size & (page_size - 1):
        return 0, len(data)  # no valid header: SQLite ignores the whole file
    order = ">" if magic & 1 else "<"
    s0, s1 = _wal_checksum(order, data[:24], 0, 0)
    if (s0, s1) != struct.unpack(">2I", data[24:32]):
        return 0, len(data)
    frame_size = 24 + page_size
    pos = 32
    valid_end = 32  # end of the last valid commit frame
    uncommitted = 0  # frames of this generation since then
    stale = broken = False
    while pos + frame_size <= len(data):
        header = data[pos : pos + 24]
        _page, commit_size, f_salt1, f_salt2, c0, c1 = struct.unpack(">6I", header)
        if (f_salt1, f_salt2) != (salt1, salt2):
            # SQLite adds one to salt-1 each time it restarts the WAL, so leftovers of an older
            # generation carry a slightly smaller salt-1; anything else is garbage.
            stale = 0 < (salt1 - f_salt1) % 2**32 < 2**24
            broken = not stale
            break
        s0, s1 = _wal_checksum(order, header[:8], s0, s1)
        s0, s1 = _wal_checksum(order, data[pos + 24 : pos + frame_size], s0, s1)
        if (s0, s1) != (c0, c1):
            broken = True  # a frame of this generation torn mid-write
            break
        pos += frame_size
        uncommitted += 1
        if commit_size:
            valid_end = pos
            uncommitted = 0
    partial = (len(data) - 32) % frame_size
    if broken:
        # Nothing after a broken frame can be trusted: count whole frames and the partial one.
        frames = uncommitted + (len(data) - pos) // frame_size + int(bool(partial))
        return frames, len(data) - valid_end
    frames = uncommitted + int(bool(partial))
    if not frames:
        return 0, 0
    # Leftovers of an older generation are whole frames and not torn; a partial frame is.
    return frames, pos - valid_end + (partial if stale or pos < len(data) else 0)


def _wal_checksum(order: str, blob: bytes, s0: int, s1: int) -> tuple[int, int]:
    """SQLite's WAL checksum over ``blob`` (a multiple of 8 bytes), continuing from s0, s1."""
    words = struct.unpack(f"{order}{len(blob) // 4}I", blob)
    mask = 0xFFFFFFFF
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & mask
        s1 = (s1 + words[i + 1] + s0) & mask
    return s0, s1
