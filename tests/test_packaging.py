"""The root folders install under ``lomsong.*`` and never shadow other packages."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: root folder → the import package it installs as
WINGS = {
    "src/lomsong": "lomsong",
    "collector": "lomsong/collector",
    "probes": "lomsong/probes",
    "coverage": "lomsong/coverage",
    "maps": "lomsong/maps",
    "config": "lomsong/config",
}


def test_import_coverage_is_coverage_py_even_from_the_repo_root() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import coverage, lomsong.config.collector as c; "
            "print(coverage.__file__); print(hasattr(coverage, 'Coverage')); print(c.__name__)",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "site-packages" in out[0] and not out[0].startswith(str(ROOT / "coverage"))
    assert out[1] == "True"
    assert out[2] == "lomsong.config.collector"


@pytest.mark.parametrize("bare", ["maps", "probes", "config", "collector", "coverage"])
def test_root_folders_are_not_importable_bare(bare: str, tmp_path: Path) -> None:
    # In the test run itself (pytest does not put the repo root on sys.path)...
    spec = importlib.util.find_spec(bare)
    assert spec is None or (spec.origin or "").find(str(ROOT / bare)) < 0
    # ...and in the installed environment, from any other folder.
    code = f"import importlib.util as u; s = u.find_spec({bare!r}); print(s and s.origin)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    if bare == "coverage":
        assert "site-packages" in out
    else:
        assert out == "None"


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_data_file(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("lomsong-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = set()
    for folder, package in WINGS.items():
        for path in (ROOT / folder).rglob("*"):
            rel = path.relative_to(ROOT / folder)
            if (
                path.suffix
                in {".py", ".csv", ".toml", ".mako", ".typed", ".service", ".yml", ".json"}
                and "__pycache__" not in rel.parts
            ):
                expected.add(f"{package}/{rel.as_posix()}")
    missing = sorted(expected - names)
    assert not missing, f"missing from the wheel: {missing}"
    assert "lomsong/data/vn/vn_communes_2025_points.csv" in names
    assert not any(
        n.startswith(("coverage/", "maps/", "probes/", "config/", "collector/")) for n in names
    )
