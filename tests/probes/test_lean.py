"""The agent runs with the base install only: it never imports the server or geodata stacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "prometheus_client",
    "geopandas",
    "shapely",
    "pyproj",
    "folium",
    "numpy",
    "pandas",
)

PROGRAM = f"""
import sys
import lomsong.probes.agent, lomsong.probes.profile_sync, lomsong.probes.schedule
from lomsong.probes.checks.base import KINDS, check_function
for kind in KINDS:
    check_function(kind)
from lomsong.cli import main
try:
    main(["probe", "check-config", {str(ROOT / "config" / "probe.toml")!r}])
except SystemExit as exc:
    assert exc.code == 0, exc.code
heavy = {HEAVY!r}
print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in heavy))
"""


def test_the_agent_imports_nothing_heavy(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "ok: probe cb-thuc-phan, 2 uplinks, 0 checks, 1 scheduled jobs" in lines[0]
    assert lines[-1] == "LOADED []"


MOUNTED = f"""
import sys
import lomsong.cli
import lomsong.collector.cli, lomsong.coverage.cli, lomsong.demo.cli
import lomsong.probes.cli, lomsong.storage.cli
for argv in (["--help"], ["probe", "--help"], ["token", "--help"], ["coverage", "--help"]):
    try:
        lomsong.cli.main(argv)
    except SystemExit as exc:
        assert exc.code == 0, (argv, exc.code)
heavy = {HEAVY!r}
print("LOADED", sorted(m for m in sys.modules if m.split(".")[0] in heavy))
"""


def test_mounting_every_command_group_imports_nothing_heavy(tmp_path: Path) -> None:
    """``lomsong.cli`` mounts every wing's commands; their heavy imports wait for a command to
    run, so the root, its help and the agent's commands start on the base install."""
    out = subprocess.run(
        [sys.executable, "-c", MOUNTED], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "probe" in out.stdout and "check-config" in out.stdout
    assert out.stdout.splitlines()[-1] == "LOADED []"
