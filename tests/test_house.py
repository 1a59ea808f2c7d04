"""The house's arrows: which wing may import which, read from every module's imports (ast).

The wings stand on each other one way (README, *Layout*): the kernel knows no wing; storage
stands on the kernel; the probe agent never needs a server wing or the geospatial stack;
coverage and maps are libraries that never import the collector, and maps never read the
database; the collector and the demo assemble the rest; the command line mounts each wing's
own command group. Imports inside functions count too: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: where each wing's source lives, and the package it installs as
WINGS = {
    "kernel": ("src/lomsong", "lomsong"),
    "config": ("config", "lomsong.config"),
    "storage": ("storage", "lomsong.storage"),
    "probes": ("probes", "lomsong.probes"),
    "coverage": ("coverage", "lomsong.coverage"),
    "maps": ("maps", "lomsong.maps"),
    "collector": ("collector", "lomsong.collector"),
    "demo": ("demo", "lomsong.demo"),
}

#: the wings each wing may import (its own always); "cli" is the command line (lomsong.cli and
#: lomsong.__main__), which besides the kernel may import each wing's own ``cli`` module and
#: nothing else of it (see ``breaks``)
ALLOWED = {
    "kernel": set(),
    "config": {"kernel"},
    "storage": {"kernel", "config"},
    "probes": {"kernel", "config"},
    "coverage": {"kernel", "config", "storage"},
    "maps": {"kernel", "config", "coverage"},
    "collector": {"kernel", "config", "storage", "coverage", "maps"},
    "demo": {"kernel", "config", "storage", "coverage", "maps", "collector"},
    "cli": {"kernel"},
}

#: what the agent at a commune centre must never import (it installs without them)
NOT_FOR_PROBES = {
    "alembic",
    "duckdb",
    "fastapi",
    "folium",
    "geopandas",
    "numpy",
    "pandas",
    "prometheus_client",
    "pyarrow",
    "pyproj",
    "scipy",
    "shapely",
    "sqlalchemy",
    "starlette",
    "uvicorn",
}


@dataclass(frozen=True)
class Arrow:
    source: str  # module name
    path: Path
    line: int
    target: str  # imported module name, absolute


def module_name(path: Path, folder: Path, package: str) -> str:
    parts = list(path.relative_to(folder).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def arrows(root: Path) -> Iterator[Arrow]:
    """Every import statement of every module of the package, as absolute module names."""
    for folder_name, package in WINGS.values():
        folder = root / folder_name
        for path in sorted(folder.rglob("*.py")):
            if folder_name == "src/lomsong" and path.parent != folder:
                continue  # the kernel is the top folder only; the wings are elsewhere
            name = module_name(path, folder, package)
            is_package = path.name == "__init__.py"
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        yield Arrow(name, path, node.lineno, alias.name)
                elif isinstance(node, ast.ImportFrom):
                    if node.level:
                        base = name.split(".")
                        base = base[: len(base) - node.level + (1 if is_package else 0)]
                        target = ".".join(base + ([node.module] if node.module else []))
                    else:
                        target = node.module or ""
                    # `from lomsong import x` may name a module x; count it as that module
                    for alias in node.names:
                        yield Arrow(name, path, node.lineno, f"{target}.{alias.name}")


def wing_of(module: str) -> str | None:
    """The wing a ``lomsong`` module belongs to; ``None`` for anything outside the package."""
    parts = module.split(".")
    if parts[0] != "lomsong":
        return None
    if len(parts) > 1 and parts[1] in ("cli", "__main__"):
        return "cli"
    for wing, (_folder, package) in WINGS.items():
        if wing != "kernel" and (module == package or module.startswith(package + ".")):
            return wing
    return "kernel"


ALL_ARROWS = list(arrows(ROOT))


def test_the_walk_sees_every_wing() -> None:
    seen = {wing_of(a.source) for a in ALL_ARROWS}
    assert seen == set(ALLOWED), seen


def is_wing_command_group(module: str) -> bool:
    """``lomsong.<wing>.cli``, or a name imported from it: the one module of a wing that the
    command line mounts."""
    parts = module.split(".")
    return (
        wing_of(module) not in (None, "kernel", "cli")
        and len(parts) in (3, 4)
        and parts[2] == "cli"
    )


def breaks(a: Arrow) -> bool:
    source, target = wing_of(a.source), wing_of(a.target)
    if source == "cli" and is_wing_command_group(a.target):
        return False
    return target is not None and target != source and target not in ALLOWED[str(source)]


def wrong_arrows(found: list[Arrow], wing: str) -> list[str]:
    return [
        f"{a.path.name}:{a.line}: {a.source} imports {a.target}"
        for a in found
        if wing_of(a.source) == wing and breaks(a)
    ]


@pytest.mark.parametrize("wing", sorted(ALLOWED))
def test_wing_imports_only_what_it_stands_on(wing: str) -> None:
    wrong = wrong_arrows(ALL_ARROWS, wing)
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_command_line() -> None:
    wrong = [
        f"{a.path.relative_to(ROOT)}:{a.line}: {a.source} imports {a.target}"
        for a in ALL_ARROWS
        if wing_of(a.target) == "cli" and wing_of(a.source) != "cli"
    ]
    assert not wrong, "\n".join(wrong)


def test_the_agent_never_imports_the_server_or_geospatial_stack() -> None:
    wrong = [
        f"{a.path.relative_to(ROOT)}:{a.line}: {a.source} imports {a.target}"
        for a in ALL_ARROWS
        if wing_of(a.source) in ("probes", "config", "kernel")
        and a.target.split(".")[0] in NOT_FOR_PROBES
    ]
    assert not wrong, "\n".join(wrong)


def test_the_walk_catches_a_wrong_arrow(tmp_path: Path) -> None:
    """A coverage module that imports the collector inside a function, and one that reaches it
    by a relative import, are both seen; an allowed arrow is not reported."""
    (tmp_path / "coverage" / "sub").mkdir(parents=True)
    (tmp_path / "coverage" / "lazy.py").write_text(
        "def f():\n    from lomsong.collector.live import LiveState\n    return LiveState\n"
    )
    (tmp_path / "coverage" / "sub" / "rel.py").write_text("from ...collector import app\n")
    (tmp_path / "coverage" / "fine.py").write_text("from lomsong.storage.schema import hamlets\n")
    found = list(arrows(tmp_path))
    assert {a.target for a in found} == {
        "lomsong.collector.live.LiveState",
        "lomsong.collector.app",
        "lomsong.storage.schema.hamlets",
    }
    assert sorted(wrong_arrows(found, "coverage")) == [
        "lazy.py:2: lomsong.coverage.lazy imports lomsong.collector.live.LiveState",
        "rel.py:1: lomsong.coverage.sub.rel imports lomsong.collector.app",
    ]


def test_the_command_line_reaches_a_wing_only_through_its_cli_module(tmp_path: Path) -> None:
    """The root may mount ``lomsong.storage.cli`` (either import form), never another module of
    the wing, even lazily; ``lomsong.__main__`` is held to the same rule."""
    (tmp_path / "src" / "lomsong").mkdir(parents=True)
    (tmp_path / "src" / "lomsong" / "cli.py").write_text(
        "from lomsong.storage import cli as storage_cli\n"
        "from lomsong.coverage.cli import add_commands\n"
        "from lomsong.errors import LomsongError\n"
        "def f():\n    from lomsong.storage.database import open_engine\n"
        "from lomsong.storage import database\n"
    )
    (tmp_path / "src" / "lomsong" / "__main__.py").write_text(
        "from lomsong.cli import main\nfrom lomsong.probes.agent import run_agent\n"
    )
    found = list(arrows(tmp_path))
    assert sorted(wrong_arrows(found, "cli")) == [
        "__main__.py:2: lomsong.__main__ imports lomsong.probes.agent.run_agent",
        "cli.py:5: lomsong.cli imports lomsong.storage.database.open_engine",
        "cli.py:6: lomsong.cli imports lomsong.storage.database",
    ]
