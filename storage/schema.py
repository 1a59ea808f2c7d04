"""The shared tables, as SQLAlchemy Core metadata (the migrations build the same)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# Constraint names fixed by convention so that migrations are the same on every engine.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

provinces = Table(
    "provinces",
    metadata,
    Column("code", String(2), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("name_en", String(100), nullable=False),
    Column("full_name", String(150), nullable=False),
    Column("full_name_en", String(150), nullable=False),
    Column("area_km2", Float, nullable=False),
)

communes = Table(
    "communes",
    metadata,
    Column("code", String(5), primary_key=True),
    Column("name", String(150), nullable=False),
    Column("type", String(20), nullable=False),
    Column("province_code", String(2), ForeignKey("provinces.code"), nullable=False, index=True),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("area_km2", Float, nullable=False),
)

probes = Table(
    "probes",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("commune_code", String(5), ForeignKey("communes.code"), nullable=False, index=True),
    Column("label", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
)

probe_uplinks = Table(
    "probe_uplinks",
    metadata,
    Column("probe_id", String(64), ForeignKey("probes.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("operator", String(32), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # sha256 of the whole token: the token itself is never stored.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("role", String(16), nullable=False),
    Column("probe_id", String(64), ForeignKey("probes.id", ondelete="CASCADE"), nullable=True),
    # comma-separated province codes a viewer may read
    Column("provinces", String(200), nullable=True),
    Column("label", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

# On PostgreSQL (migration 0008) ``results`` is partitioned by the local day of measured_at and
# its key is (probe_id, seq, measured_at); see storage/partitions.py.
results = Table(
    "results",
    metadata,
    Column("probe_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    # Times are float seconds since the epoch: measured_at on the probe's clock, received_at on
    # the collector's. A buffered result keeps the time it was measured.
    Column("measured_at", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("target", String(512), nullable=False),
    Column("uplink", String(64), nullable=True),
    Column("ok", Boolean, nullable=False),
    Column("duration_seconds", Float, nullable=True),
    Column("packets_sent", Integer, nullable=True),
    Column("packets_received", Integer, nullable=True),
    Column("rtt_min_seconds", Float, nullable=True),
    Column("rtt_max_seconds", Float, nullable=True),
    Column("jitter_seconds", Float, nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("tls_expiry_days", Float, nullable=True),
    Column("error", String(512), nullable=True),
    Column("rat", String(8), nullable=True),
    Column("rsrp_dbm", Float, nullable=True),
    Column("rsrq_db", Float, nullable=True),
    Column("snr_db", Float, nullable=True),
    Column("rssi_dbm", Float, nullable=True),
    Column("mcc", String(3), nullable=True),
    Column("mnc", String(3), nullable=True),
    Column("tac", Integer, nullable=True),
    Column("lac", Integer, nullable=True),
    Column("cid", BigInteger, nullable=True),
    Column("boot_id", String(64), nullable=False),
    # heartbeat fields and anything else kind-specific, as JSON text
    Column("details", Text, nullable=True),
)
Index("ix_results_probe_id_measured_at", results.c.probe_id, results.c.measured_at)

probe_state = Table(
    "probe_state",
    metadata,
    Column("probe_id", String(64), ForeignKey("probes.id", ondelete="CASCADE"), primary_key=True),
    Column("boot_id", String(64), nullable=True),
    Column("agent_version", String(32), nullable=True),
    Column("last_seen_at", Float, nullable=True),
    Column("last_sent_at", Float, nullable=True),
    Column("last_measured_at", Float, nullable=True),
    # received_at - sent_at, smoothed: positive when the probe's clock is behind
    Column("clock_skew_seconds", Float, nullable=True),
    Column("stored_through_seq", BigInteger, nullable=False, default=0),
    Column("max_seq", BigInteger, nullable=False, default=0),
    Column("results_total", BigInteger, nullable=False, default=0),
    # The checks the agent runs, as its newest heartbeat listed them: a JSON list of
    # [uplink, kind, target]; null until an agent that lists them reports (older agents never).
    Column("running_checks", Text, nullable=True),
    # when that heartbeat was measured
    Column("running_checks_at", Float, nullable=True),
    # The configuration the agent says it runs (its newest heartbeat that says): the version
    # of the collector's profile it applied ("local": its own file's checks), the version it
    # refused and why, and when that heartbeat was measured. Null for agents that never say.
    Column("config_version", String(64), nullable=True),
    Column("config_refused_version", String(64), nullable=True),
    Column("config_error", String(512), nullable=True),
    Column("config_reported_at", Float, nullable=True),
)

latest_results = Table(
    "latest_results",
    metadata,
    Column("probe_id", String(64), primary_key=True),
    # "" for results that belong to no uplink (heartbeat)
    Column("uplink", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("target", String(512), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("measured_at", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("duration_seconds", Float, nullable=True),
    Column("error", String(512), nullable=True),
    Column("rsrp_dbm", Float, nullable=True),
)

# The detector reads what arrived since its last tick by arrival time.
Index("ix_results_received_at", results.c.received_at)

outages = Table(
    "outages",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("probe_id", String(64), nullable=False, index=True),
    Column("commune_code", String(5), nullable=False),
    Column("province_code", String(2), nullable=False),
    # probe_silent, uplink_down, degraded
    Column("condition", String(16), nullable=False),
    # power, network, unknown; null while a silent probe's cause is not known yet
    Column("cause", String(16), nullable=True),
    Column("uplink", String(64), nullable=True),
    Column("operator", String(32), nullable=True),
    # started_at and ended_at are corrected from the probe's own measurements
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Column("detected_at", Float, nullable=False),
    Column("resolved_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
)
Index("ix_outages_province_code_started_at", outages.c.province_code, outages.c.started_at)
Index("ix_outages_ended_at", outages.c.ended_at)

notification_attempts = Table(
    "notification_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("receiver", String(64), nullable=False),
    Column("route", String(64), nullable=False),
    Column("group_key", String(512), nullable=False, index=True),
    Column("status", String(8), nullable=False),
    # JSON list of the alerts' fingerprints (outage ids, or regional:<province>:<operator>)
    Column("fingerprints", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("error", String(512), nullable=True),
    Column("at", Float, nullable=False),
)

# --- geodata and coverage (DESIGN §8) ---
# Geometry is stored as WKB in EPSG:4326 (lon/lat); points also keep lat/lon columns so that the
# engine can read them without decoding geometry.

boundaries = Table(
    "boundaries",
    metadata,
    # "province" or "commune"; the code is the official 2025 code
    Column("level", String(8), primary_key=True),
    Column("code", String(5), primary_key=True),
    Column("geometry", LargeBinary, nullable=False),
    Column("population", Integer, nullable=True),
    Column("import_id", Integer, ForeignKey("geodata_imports.id"), nullable=True),
    Column("updated_at", Float, nullable=False),
)

geodata_imports = Table(
    "geodata_imports",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # provinces, communes, hamlets, sites, field
    Column("kind", String(16), nullable=False),
    Column("source", String(512), nullable=False),
    Column("sha256", String(64), nullable=True),
    Column("crs", String(64), nullable=True),
    # the province the import was limited to, if any
    Column("province_code", String(2), nullable=True),
    Column("synthetic", Boolean, nullable=False),
    Column("rows_total", Integer, nullable=False),
    Column("rows_accepted", Integer, nullable=False),
    Column("rows_rejected", Integer, nullable=False),
    # JSON: the rejected rows with their reasons, and anything else the report says
    Column("report", Text, nullable=True),
    Column("created_at", Float, nullable=False),
)

hamlets = Table(
    "hamlets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("commune_code", String(5), ForeignKey("communes.code"), nullable=False, index=True),
    Column("province_code", String(2), nullable=False, index=True),
    # the representative point; geometry holds the polygon when the source had one
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("geometry", LargeBinary, nullable=True),
    Column("population", Integer, nullable=True),
    Column("households", Integer, nullable=True),
    Column("has_grid_power", Boolean, nullable=True),
    Column("synthetic", Boolean, nullable=False),
    # hamlets are being reorganised: every change makes a new version, kept in hamlet_versions
    Column("version", Integer, nullable=False),
    Column("import_id", Integer, ForeignKey("geodata_imports.id"), nullable=True),
    # set when a later hamlet set for the province no longer has this hamlet
    Column("retired_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
)

hamlet_versions = Table(
    "hamlet_versions",
    metadata,
    Column("hamlet_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("import_id", Integer, ForeignKey("geodata_imports.id"), nullable=True),
    # JSON of the hamlet's row as that version had it (geometry as WKT)
    Column("data", Text, nullable=False),
    Column("valid_from", Float, nullable=False),
    Column("valid_to", Float, nullable=True),
)

# One row per sector (cell); a site is the set of sectors sharing site_id.
sites = Table(
    "sites",
    metadata,
    # "<operator>:<site_id>:<cell_id>"
    Column("id", String(160), primary_key=True),
    Column("site_id", String(64), nullable=False),
    Column("cell_id", String(64), nullable=False),
    Column("operator", String(32), nullable=False, index=True),
    # gsm, umts, lte, nr
    Column("radio", String(8), nullable=False),
    Column("band_mhz", Float, nullable=False),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("province_code", String(2), nullable=True, index=True),
    Column("commune_code", String(5), nullable=True),
    Column("height_m", Float, nullable=True),
    # null azimuth: omnidirectional
    Column("azimuth_deg", Float, nullable=True),
    Column("beamwidth_deg", Float, nullable=True),
    # transmit power of the sector in dBm; null: the configured default
    Column("power_dbm", Float, nullable=True),
    # OpenCelliD's estimated range, used as the radius when there is no power
    Column("range_m", Float, nullable=True),
    # active, down, planned
    Column("status", String(16), nullable=False),
    # operator, opencellid, synthetic, ...
    Column("source", String(32), nullable=False),
    Column("synthetic", Boolean, nullable=False),
    Column("import_id", Integer, ForeignKey("geodata_imports.id"), nullable=True),
    Column("updated_at", Float, nullable=False),
)

field_measurements = Table(
    "field_measurements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("lat", Float, nullable=False),
    Column("lon", Float, nullable=False),
    Column("operator", String(32), nullable=False),
    Column("radio", String(8), nullable=True),
    Column("rsrp_dbm", Float, nullable=False),
    Column("measured_at", Float, nullable=False),
    Column("source", String(64), nullable=False),
    Column("import_id", Integer, ForeignKey("geodata_imports.id"), nullable=True),
    Column("received_at", Float, nullable=False),
)
Index(
    "ix_field_measurements_operator_measured_at",
    field_measurements.c.operator,
    field_measurements.c.measured_at,
)

#: One row, rewritten by every ``/readyz``: a write that must reach the disk to pass
#: (``storage.database.check_writable``).
collector_heartbeat = Table(
    "collector_heartbeat",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("written_at", Float, nullable=False),
)

#: One row per Parquet file of the archive (``storage/archive.py``), written only after the
#: file was renamed into place and its folder fsynced: a row always names a complete file.
archived_files = Table(
    "archived_files",
    metadata,
    # the Asia/Ho_Chi_Minh day of the results' measured_at, YYYY-MM-DD
    Column("day", String(10), primary_key=True),
    # the probe's province code; "unknown" for results whose probe is no longer registered
    Column("province", String(8), primary_key=True),
    # relative to archive.path, with forward slashes
    Column("path", String(512), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("written_at", Float, nullable=False),
)

#: What pruning removed, per local day and province, written in the transaction that removed
#: the rows (SQLite: each chunk adds its count; PostgreSQL: the DEFAULT partition's strays with
#: the DETACH, the detached day's rows with its DROP). ``lomsong archive verify`` compares them
#: with the archive's files.
pruned_days = Table(
    "pruned_days",
    metadata,
    Column("day", String(10), primary_key=True),
    # as archived_files: "unknown" for results whose probe is not registered
    Column("province", String(8), primary_key=True),
    Column("rows", BigInteger, nullable=False),
    # the rows of the province's archive file when the day was pruned; NULL: no archive set
    Column("archived_rows", BigInteger, nullable=True),
    # that file, relative to archive.path
    Column("archive_path", String(512), nullable=True),
    Column("first_pruned_at", Float, nullable=False),
    Column("last_pruned_at", Float, nullable=False),
)


# --- availability (issue 14 §2) ---


def _availability_table(name: str, period: str, length: int) -> Table:
    """The figures of one centre or uplink over one period (``day`` or ``month``): the same
    columns at both levels, keyed by probe, uplink and the period."""
    return Table(
        name,
        metadata,
        # keyed probe first: a run replaces a probe's days, a report sums each probe's uplinks
        Column("probe_id", String(64), primary_key=True),
        Column("uplink", String(64), primary_key=True),
        Column(period, String(length), primary_key=True),
        Column("commune_code", String(5), nullable=False),
        Column("province_code", String(2), nullable=False),
        Column("operator", String(32), nullable=True),
        # outside maintenance, from the probe's first result to the run's time
        Column("observed_seconds", Float, nullable=False),
        Column("down_seconds", Float, nullable=False),
        Column("maintenance_seconds", Float, nullable=False),
        Column("power_seconds", Float, nullable=False),
        Column("network_seconds", Float, nullable=False),
        Column("unknown_seconds", Float, nullable=False),
        # merged down intervals that began in the period; resolved ones and their summed
        # length (MTTR); at the month level the sums of its days, and the longest of them
        Column("outages", Integer, nullable=False),
        Column("resolved", Integer, nullable=False),
        Column("repair_seconds", Float, nullable=False),
        Column("longest_seconds", Float, nullable=False),
        Column("computed_at", Float, nullable=False),
        sqlite_with_rowid=False,
    )


#: Per local (Asia/Ho_Chi_Minh) day, per centre (``uplink = ""``) and per uplink: seconds
#: observed, down (by cause) and under maintenance, and the outages that began that day. Kept
#: by the detector leader (``collector/availability_keeper.py``): closed days are final unless
#: an outage touching them changes; today is recomputed on every run.
availability_daily = _availability_table("availability_daily", "day", 10)
Index(
    "ix_availability_daily_province_code_day",
    availability_daily.c.province_code,
    availability_daily.c.day,
)
Index("ix_availability_daily_day", availability_daily.c.day)

#: The same per local month, summed from the days by the same run that writes them (a
#: national month is then 16,000 rows to read, not 500,000).
availability_monthly = _availability_table("availability_monthly", "month", 7)
Index(
    "ix_availability_monthly_province_code_month",
    availability_monthly.c.province_code,
    availability_monthly.c.month,
)

#: When each probe was first heard (its oldest result): where its observed time begins. Kept
#: here because raw results expire.
availability_probes = Table(
    "availability_probes",
    metadata,
    Column("probe_id", String(64), primary_key=True),
    Column("first_heard_at", Float, nullable=False),
)


def _rollup_table(name: str) -> Table:
    """One level of rollups (``storage/rollups.py``): every value merges by +, min or max."""
    counts = [Column(c, BigInteger, nullable=False, server_default="0") for c in _ROLLUP_COUNTS]
    stats: list[Column[Any]] = []
    for m in ("rtt", "rsrp", "rsrq", "snr"):
        stats += [
            Column(f"{m}_count", BigInteger, nullable=False, server_default="0"),
            Column(f"{m}_sum", Float, nullable=False, server_default="0"),
            Column(f"{m}_min", Float, nullable=True),
            Column(f"{m}_max", Float, nullable=True),
        ]
    return Table(
        name,
        metadata,
        Column("probe_id", String(64), primary_key=True),
        # "" for results of no uplink (heartbeat)
        Column("uplink", String(64), primary_key=True),
        Column("kind", String(16), primary_key=True),
        Column("target", String(512), primary_key=True),
        # epoch seconds of the bucket's start (of measured_at)
        Column("bucket_start", BigInteger, primary_key=True, autoincrement=False),
        *counts,
        *stats,
        # JSON {"bin": count} of the latency histogram (storage/latency_bins.py)
        Column("hist", Text, nullable=False, server_default="{}"),
        # JSON {"mcc-mnc-tac-cid": count} of the serving cells seen
        Column("cells", Text, nullable=False, server_default="{}"),
        # the key is the table: no second copy of it in a rowid table's primary-key index
        sqlite_with_rowid=False,
    )


_ROLLUP_COUNTS = ("runs", "successes", "packets_sent", "packets_received")
rollup_5m = _rollup_table("rollup_5m")
rollup_1h = _rollup_table("rollup_1h")
rollup_1d = _rollup_table("rollup_1d")

#: The checks and hours whose 5-minute rollups changed since their hourly and daily rows were
#: last derived (``storage/rollups.py``): the writer marks them in its transaction, the
#: detector's leader derives and clears them in its own.
rollup_marks = Table(
    "rollup_marks",
    metadata,
    Column("probe_id", String(64), primary_key=True),
    Column("uplink", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("target", String(512), primary_key=True),
    # epoch seconds of the UTC hour's start
    Column("hour_start", BigInteger, primary_key=True, autoincrement=False),
    sqlite_with_rowid=False,
)


#: SQLite: the raw results a writer's transaction inserted and the leader has not folded into
#: 5-minute rollups yet, as the range of their rowids ``(after_rowid, last_rowid]``
#: (``storage/rollups.py``, ``fold_pending``). PostgreSQL's writer folds in its own
#: transaction and leaves it empty.
rollup_pending = Table(
    "rollup_pending",
    metadata,
    Column("after_rowid", BigInteger, primary_key=True, autoincrement=False),
    Column("last_rowid", BigInteger, nullable=False),
)

# --- zero-touch enrolment (issue #16) ---

#: Provincial enrolment keys: a box holding one may ask to be enrolled in a commune of that
#: province, nothing more. Stored as the SHA-256 of the key, as tokens are.
enrolment_keys = Table(
    "enrolment_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("province_code", String(2), ForeignKey("provinces.code"), nullable=False),
    Column("label", String(200), nullable=True),
    Column("created_at", Float, nullable=False),
    # null: never expires, no limit on uses
    Column("expires_at", Float, nullable=True),
    Column("max_uses", Integer, nullable=True),
    Column("uses", Integer, nullable=False, default=0),
    Column("revoked_at", Float, nullable=True),
)

#: A box that asked to be enrolled: what it said of itself, and what became of it.
enrolments = Table(
    "enrolments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", Integer, ForeignKey("enrolment_keys.id"), nullable=False),
    Column("commune_code", String(5), ForeignKey("communes.code"), nullable=False),
    Column("province_code", String(2), nullable=False, index=True),
    Column("machine_id", String(64), nullable=False, index=True),
    Column("hostname", String(255), nullable=False),
    Column("agent_version", String(32), nullable=False),
    # the whole self-description (OS, interfaces, modems, boot id) as JSON text
    Column("description", Text, nullable=False),
    # sha256 of the secret the box polls with: only it can collect the token
    Column("poll_hash", String(64), nullable=False),
    # pending, approved (token not yet collected), delivered, rejected
    Column("status", String(16), nullable=False, index=True),
    # set when another enrolment or probe already had this machine id (JSON list of what)
    Column("reused_machine", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("decided_at", Float, nullable=True),
    Column("decided_by", String(64), nullable=True),
    Column("reason", String(500), nullable=True),
    Column("probe_id", String(64), nullable=True),
    # the approved uplinks with the interface each binds, as JSON
    Column("uplinks", Text, nullable=True),
    Column("delivered_at", Float, nullable=True),
)


#: A probe token being replaced (``collector/token_rotation.py``). ``lomsong token rotate``
#: makes the row; the agent's next report with its token draws the new token, which is stored
#: as a token row (by its hash) and here only sealed with the old token, so that it can be
#: offered again until used and yet cannot be read back from the database. The first report
#: with the new token revokes the old one and completes the rotation.
token_rotations = Table(
    "token_rotations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("probe_id", String(64), ForeignKey("probes.id", ondelete="CASCADE"), nullable=False),
    Column("requested_at", Float, nullable=False),
    # "admin", or the role and id of the token that asked ("province_admin token 7")
    Column("requested_by", String(64), nullable=False),
    # the token the agent held when the new one was drawn: revoked once the new one is used
    Column("old_token_id", Integer, ForeignKey("tokens.id", ondelete="SET NULL"), nullable=True),
    Column("new_token_id", Integer, ForeignKey("tokens.id", ondelete="SET NULL"), nullable=True),
    # hex of salt + the new token XOR a keystream drawn from the old token; null once completed
    Column("sealed", String(256), nullable=True),
    Column("offered_at", Float, nullable=True),
    Column("offers", Integer, nullable=False, default=0),
    Column("completed_at", Float, nullable=True),
)
Index("ix_token_rotations_probe_id", token_rotations.c.probe_id)
# --- checks defined once, at the collector (issue #16 §2) ---

#: One layer of check profiles: the national default (scope_key ""), a province's, a commune's
#: or one probe's override. ``document`` is the layer as JSON (``collector/fleet_profiles.py``);
#: a deleted layer keeps its row with ``document`` null, so that ``revision``, which grows with
#: every change, tells a replica in one indexed read whether anything changed.
check_profiles = Table(
    "check_profiles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # national, province, commune or probe
    Column("scope", String(16), nullable=False),
    # "" (national), the province or commune code, or the probe id
    Column("scope_key", String(64), nullable=False),
    # the province the layer belongs to (null: national), for provincial tokens
    Column("province_code", String(2), nullable=True),
    Column("document", Text, nullable=True),
    # the TOML it was set from, as written (null when set as JSON)
    Column("toml", Text, nullable=True),
    Column("revision", BigInteger, nullable=False, unique=True),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(64), nullable=True),
    UniqueConstraint("scope", "scope_key"),
)
