"""The ``lomsong`` command as a user runs it: real processes, one-line errors."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from lomsong import __version__
from lomsong.cli import main
from lomsong.collector.auth import Authenticator
from lomsong.storage.database import current_revision, head_revision, migrate, open_engine

LOMSONG = str(Path(sys.executable).with_name("lomsong"))


def run(
    *args: str, db: Path, check: bool = False, columns: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env = {k: v for k, v in env.items() if not k.startswith("LOMSONG_")}
    env["LOMSONG_DATABASE_URL"] = f"sqlite:///{db}"
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([LOMSONG, *args], capture_output=True, text=True, env=env, check=check)


def test_version() -> None:
    out = subprocess.run([LOMSONG, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"lomsong {__version__}"


def test_register_and_tokens_end_to_end(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    reg = run(
        "probe",
        "register",
        "--id",
        "cb-ha-quang",
        "--commune",
        "01321",
        "--uplink",
        "viettel-4g:viettel",
        "--uplink",
        "vnpt-fibre:fibre",
        db=db,
        check=True,
    )
    assert "cb-ha-quang" in reg.stdout and "Cao Bằng" in reg.stdout
    created = run(
        "token", "create", "--probe", "cb-ha-quang", "--label", "Hà Quảng box", db=db, check=True
    )
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("lst_") and len(token) > 40
    # Stored only as a hash: the token text is nowhere in the database file.
    assert token.encode() not in db.read_bytes()
    engine = open_engine(f"sqlite:///{db}")
    auth = Authenticator(engine, "", cache_seconds=0)
    principal = auth.authenticate(token)
    assert principal is not None and principal.probe_id == "cb-ha-quang"
    viewer = run(
        "token", "create", "--viewer", "--province", "04", "--province", "08", db=db, check=True
    )
    vp = auth.authenticate(viewer.stdout.strip().splitlines()[-1])
    assert vp is not None and vp.provinces == frozenset({"04", "08"})
    listed = run("token", "list", db=db, check=True).stdout
    assert "Hà Quảng box" in listed and token not in listed
    narrow = run("token", "list", db=db, check=True, columns=80).stdout
    assert widest(narrow) <= 80 and "cb-ha-quang" in narrow and "viewer" in narrow
    assert widest(run("probe", "list", db=db, check=True, columns=80).stdout) <= 80
    run("token", "revoke", "1", db=db, check=True)
    assert auth.authenticate(token) is None
    engine.dispose()


ERRORS = [
    (
        ("probe", "register", "--id", "x", "--commune", "99999", "--uplink", "a:viettel"),
        "--commune: unknown commune code",
        "99999",
    ),
    (
        ("probe", "register", "--id", "x", "--commune", "01273", "--uplink", "a:telecomx"),
        "operator 'telecomx' is not one of",
        "a:telecomx",
    ),
    (
        ("probe", "register", "--id", "Bad Id", "--commune", "01273", "--uplink", "a:viettel"),
        "--id: probe id must match",
        "Bad Id",
    ),
    (("token", "create", "--probe", "ghost"), "probe 'ghost' is not registered", "ghost"),
    (
        ("token", "create", "--viewer", "--province", "99"),
        "--province: unknown province code",
        "99",
    ),
    (("token", "create", "--viewer"), "a viewer token needs at least one province", "--province"),
    (("token", "create"), "give exactly one of --probe ID, --viewer, --province-admin", "role"),
    (("token", "revoke", "42"), "token 42 does not exist", "42"),
]


@pytest.mark.parametrize(
    ("args", "message", "value"),
    ERRORS,
    ids=[" ".join(e[0][:2]) + str(i) for i, e in enumerate(ERRORS)],
)
def test_errors_are_one_line_on_stderr_with_nonzero_exit(
    tmp_path: Path, args: tuple[str, ...], message: str, value: str
) -> None:
    out = run(*args, db=tmp_path / "l.db")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("lomsong: error: ") and message in lines[0] and value in lines[0]
    assert "Traceback" not in out.stderr


#: (arguments, exit status, what the line says, whether it ends with the command's --help);
#: usage mistakes are typer's (exit 2), bad values and missing files are lomsong's (exit 1)
MISTAKES = [
    (("serve", "--prot", "9000"), 2, "No such option: --prot", "lomsong serve"),
    (("probe", "regster"), 2, "No such command 'regster'", "lomsong probe"),
    (
        ("probe", "register", "--id", "cb-1", "--commune", "01273"),
        2,
        "Missing option '--uplink'",
        "lomsong probe register",
    ),
    (("token", "revoke", "abc"), 2, "valid integer", "lomsong token revoke"),
    (("probe", "once"), 2, "Missing option '--config'", "lomsong probe once"),
    (("geodata", "synth", "--seed", "many"), 2, "valid integer", "lomsong geodata synth"),
    # the output's suffix and folder are checked before any work: there is no database here
    (
        ("coverage", "classify", "-o", "x.docx"),
        2,
        "'x.docx' has suffix '.docx'; expected one of .geojson, .json, .gpkg, .csv, .xlsx",
        "lomsong coverage classify",
    ),
    (
        ("coverage", "summary", "-o", "{tmp}/nowhere/s.csv"),
        2,
        "folder '{tmp}/nowhere' does not exist",
        "lomsong coverage summary",
    ),
    (
        ("coverage", "whatif", "--site", "22.9,105.6", "--operator", "viettel", "-o", "w.gpkg"),
        2,
        "'w.gpkg' has suffix '.gpkg'; expected one of .csv, .xlsx",
        "lomsong coverage whatif",
    ),
    (("map", "--national", "-o", "vn.png"), 2, "expected .html", "lomsong map"),
    (
        ("geodata", "import", "hamlets", "{tmp}/nope.csv"),
        1,
        "{tmp}/nope.csv: no such file",
        "lomsong geodata import",
    ),
    (
        ("coverage", "summary", "--by", "district"),
        1,
        "--by: expected one of {commune, province} (got 'district')",
        "lomsong coverage summary",
    ),
    (
        ("coverage", "classify", "--status", "dark"),
        1,
        "status: expected one of {covered, weak, none, outage}",
        "lomsong coverage classify",
    ),
    (
        ("coverage", "classify", "--operator", "viettel"),
        1,
        "--operator: needs --status",
        "lomsong coverage classify",
    ),
    (
        ("coverage", "whatif", "--site", "abc", "--operator", "viettel"),
        1,
        "--site: expected LAT,LON",
        "lomsong coverage whatif",
    ),
    (
        ("geodata", "synth"),
        1,
        "give exactly one of --province CODE, --national",
        "lomsong geodata synth",
    ),
    (("demo", "--minutes", "0"), 1, "--minutes: must be more than 0", "lomsong demo"),
    # a settings file: its own message, which the help cannot put right
    (("probe", "once", "-c", "{tmp}/nope.toml"), 1, "nope.toml' does not exist", None),
    (("probe", "check-config", "{tmp}/nope.toml"), 1, "nope.toml' does not exist", None),
    (
        ("report", "availability", "--province", "04", "--month", "2026-11", "-o", "r.pdf"),
        2,
        "'r.pdf' has suffix '.pdf'; expected .xlsx, .csv or .json",
        "lomsong report availability",
    ),
    (
        ("report", "availability", "--province", "04", "--month", "11/2026", "-o", "r.xlsx"),
        1,
        "--month: ",
        "lomsong report availability",
    ),
    (
        ("probe", "enrol", "--collector", "http://127.0.0.1:9", "--key", "lse_k", "--commune", "1"),
        1,
        "--commune: expected a 5-digit 2025 commune code",
        "lomsong probe enrol",
    ),
    (
        ("enrolment", "create", "--province", "04", "--expires", "soon"),
        1,
        "--expires: expected a duration",
        "lomsong enrolment create",
    ),
]
#: these run as real processes; the rest call ``main`` in this one, which is what the
#: ``lomsong`` script does, at a fraction of the cost
IN_A_PROCESS = {0, 3, 6, 10}


@pytest.mark.parametrize(
    ("i", "args", "status", "message", "where"),
    [(i, *m) for i, m in enumerate(MISTAKES)],
    ids=[" ".join(m[0][:2]) + f"-{i}" for i, m in enumerate(MISTAKES)],
)
def test_every_mistake_is_one_line_with_its_exit_status(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    i: int,
    args: tuple[str, ...],
    status: int,
    message: str,
    where: str | None,
) -> None:
    """Usage mistakes, bad values, missing files: one line on stderr, the command's --help
    where it helps, exit 2 (usage) or 1 (failure), never a traceback, nothing written."""
    argv = [a.format(tmp=tmp_path) for a in args]
    db = tmp_path / "l.db"
    if i in IN_A_PROCESS:
        out = run(*argv, db=db)
        code, stderr = out.returncode, out.stderr
    else:
        monkeypatch.setenv("LOMSONG_DATABASE_URL", f"sqlite:///{db}")
        monkeypatch.chdir(tmp_path)
        with pytest.raises(SystemExit) as exited:
            main(argv)
        code, stderr = exited.value.code, capsys.readouterr().err
    assert code == status, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert (
        lines[0].startswith("lomsong: error: ")
        and message.replace("{tmp}", str(tmp_path)) in lines[0]
    )
    hint = f" (see '{where} --help')"
    assert lines[0].endswith(hint) if where else "--help" not in lines[0]
    assert not db.exists()


def test_a_duplicate_probe_needs_replace(tmp_path: Path) -> None:
    db = tmp_path / "l.db"
    args = ("probe", "register", "--id", "p1", "--commune", "01273", "--uplink", "a:viettel")
    run(*args, db=db, check=True)
    again = run(*args, db=db)
    assert again.returncode == 1 and "already registered" in again.stderr
    run(*args, "--replace", db=db, check=True)


def test_serve_refuses_a_placeholder_secret(tmp_path: Path) -> None:
    out = run("serve", db=tmp_path / "l.db")
    assert out.returncode == 1
    assert (
        "admin_token (LOMSONG_ADMIN_TOKEN)" in out.stderr and "refused outside --dev" in out.stderr
    )


#: every command that only reads the collector's database, with arguments that would work on a
#: database at head
READ_ONLY = [
    ("token", "list"),
    ("probe", "list"),
    ("enrolment", "list"),
    ("probe", "pending"),
    ("map", "--national", "-o", "{tmp}/vn.html"),
    ("geodata", "imports"),
    ("geodata", "versions", "h1"),
    ("coverage", "classify", "--province", "04"),
    ("coverage", "summary", "--province", "04"),
    ("coverage", "whatif", "--site", "22.66,106.25", "--operator", "viettel", "--province", "04"),
    ("coverage", "deadzones", "--province", "04"),
    ("archive", "verify", "--path", "{tmp}/archive"),
]


@pytest.fixture(scope="module")
def old_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file one migration behind this code, as a collector not yet upgraded leaves it."""
    db = tmp_path_factory.mktemp("old") / "l.db"
    engine = open_engine(f"sqlite:///{db}")
    migrate(engine, "0002")
    engine.dispose()
    return db


@pytest.mark.parametrize("args", READ_ONLY, ids=[" ".join(a[:2]) for a in READ_ONLY])
def test_read_only_commands_refuse_an_old_schema_and_leave_it(
    old_db: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    before = old_db.read_bytes()
    out = run(*(a.format(tmp=tmp_path) for a in args), db=old_db)
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"lomsong: error: database schema is at revision '0002', this code expects "
        f"{head_revision()!r}; run `lomsong db upgrade`"
    ]
    engine = open_engine(f"sqlite:///{old_db}")
    assert current_revision(engine) == "0002"
    engine.dispose()
    assert old_db.read_bytes() == before
    assert not list(tmp_path.iterdir())  # `map` wrote no file


def test_read_only_commands_create_no_database(tmp_path: Path) -> None:
    """A missing or empty SQLite file is left as it is; a database without tables is not
    migrated."""
    db = tmp_path / "l.db"
    out = run("token", "list", db=db)
    assert out.returncode == 1 and not db.exists()
    assert out.stderr.splitlines() == [
        f"lomsong: error: database file {str(db)!r} does not exist; run `lomsong db upgrade`"
    ]
    db.write_bytes(b"")
    out = run("probe", "list", db=db)
    assert out.returncode == 1 and db.read_bytes() == b""
    assert out.stderr.splitlines() == [
        f"lomsong: error: database file {str(db)!r} is empty; run `lomsong db upgrade`"
    ]
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    before = db.read_bytes()
    out = run("coverage", "classify", db=db)
    assert out.returncode == 1 and db.read_bytes() == before
    assert out.stderr.splitlines() == [
        f"lomsong: error: database schema is at revision None, this code expects "
        f"{head_revision()!r}; run `lomsong db upgrade`"
    ]
    run("db", "upgrade", db=db, check=True)
    run("token", "list", db=db, check=True)


def widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def test_probe_once_fits_an_80_column_console(tmp_path: Path) -> None:
    """A serial console at the commune centre: long targets and uplink names wrap (or the
    uplink column goes); nothing is wider than COLUMNS."""
    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        closed.bind(("127.0.0.1", 0))
        open_port, closed_port = listening.getsockname()[1], closed.getsockname()[1]
        config = tmp_path / "probe.toml"
        config.write_text(
            'probe_id = "cb-thuc-phan"\ncollector_url = "http://127.0.0.1:9"\n'
            f'spool_path = "{tmp_path / "spool.db"}"\n'
            '[[uplinks]]\nname = "vnpt-fibre-tang-2-tu-mang"\nsource_address = "127.0.0.1"\n'
            '[[uplinks]]\nname = "viettel-4g-du-phong"\nsource_address = "127.0.0.1"\n'
            f'[[checks]]\nkind = "tcp"\ntarget = "127.0.0.1:{open_port}"\n'
            f'[[checks]]\nkind = "http"\ntimeout_seconds = 3.0\n'
            f'target = "http://127.0.0.1:{closed_port}/cong-dich-vu-cong/trang-chu/kiem-tra"\n',
            encoding="utf-8",
        )
        out = run("probe", "once", "--config", str(config), db=tmp_path / "l.db", columns=80)
    assert out.returncode == 2, out.stderr  # a check failed
    assert widest(out.stdout) <= 80, out.stdout
    assert "FAIL" in out.stdout and " ok " in out.stdout and "Traceback" not in out.stderr
    assert out.stdout.splitlines()[-1] == "3 of 5 checks ok"  # 2 × 2 checks and the heartbeat


@pytest.mark.parametrize(
    "args",
    [(), ("coverage", "summary"), ("token", "revoke"), ("geodata", "import"), ("probe", "once")],
    ids=lambda a: " ".join(a) or "lomsong",
)
def test_help_names_no_types(
    args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """typer's type tags (``<bool>`` on every flag, ``<path>``, ``<int>``) say nothing the
    help text does not; they are left out."""
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exited:
        main([*args, "--help"])
    shown = capsys.readouterr().out
    assert exited.value.code == 0 and "--help" in shown and "Usage: lomsong" in shown
    for tag in ("<bool>", "<str>", "<path>", "<int>", "<float>", "INTEGER", "BOOLEAN", "TEXT"):
        assert tag not in shown, (tag, shown)
