"""Which collector replica runs the detector: the holder of a PostgreSQL advisory lock.

With PostgreSQL several collector replicas may run; exactly one of them holds a session-level
advisory lock and runs the detector. The lock lives with that replica's database connection, so
when the replica dies the server releases it and another replica takes it at its next tick. The
new leader rebuilds the detector from ``probe_state`` and the open outages (``outage_feed``)
and the dispatcher from the notification attempts already recorded (``alert_facts``), so
nothing is alerted twice or lost. With SQLite there is one collector, and it always leads.

The lock is asked for again at every tick; between ticks a leader checks that its connection
still answers, since a connection the server dropped no longer holds the lock.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

#: Advisory lock key of the detector ("lomsong" in ASCII, as a bigint).
LEADER_LOCK = 0x6C6F6D736F6E67


class Leadership:
    """Takes, keeps and gives up the detector's lock; SQLite always holds it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.exclusive = engine.dialect.name == "postgresql"
        self._conn: Connection | None = None

    def hold(self) -> bool:
        """Keep the lock, or take it if it is free; ``False`` while another replica has it."""
        if not self.exclusive:
            return True
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except SQLAlchemyError:
                log.warning("lost the detector lock's connection; standing down")
                self.release()
                return False
        conn = self.engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK}).scalar()
            conn.commit()
        except SQLAlchemyError:
            conn.close()
            return False
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def release(self) -> None:
        """Give the lock up: the connection is thrown away, and the lock goes with it."""
        if self._conn is not None:
            try:
                self._conn.invalidate()
            finally:
                self._conn = None
