"""``lomsong demo``: the whole system on one machine, with incidents on a schedule.

Only typer and the kernel are imported here; the demo (which starts the collector and the
agents) is imported when the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lomsong.errors import ValidationError


def demo(
    minutes: Annotated[
        float | None,
        typer.Option(
            help="Run this long without a terminal, then print a summary; exit status 1 if "
            "the scenario's expectations did not hold. The scenario needs about 3 minutes."
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the demo collector.")] = 8080,
    workdir: Annotated[
        Path, typer.Option(help="Where the demo keeps its files (emptied of the last run's).")
    ] = Path("var/demo"),
    alertmanager: Annotated[
        str | None,
        typer.Option(help="Also send the alerts to this Alertmanager, e.g. http://127.0.0.1:9093."),
    ] = None,
) -> None:
    """Run the demo: the collector on SQLite and one real probe agent per Cao Bằng commune,
    with links that fail, agents that stop and a power cut; Ctrl-C stops everything."""
    from lomsong.demo.run import DemoError, run_demo

    if minutes is not None and minutes <= 0:
        raise ValidationError("--minutes", minutes, "must be more than 0")
    if alertmanager is not None and not alertmanager.startswith(("http://", "https://")):
        raise ValidationError("--alertmanager", alertmanager, "expected an http(s):// URL")
    report = run_demo(workdir, port=port, minutes=minutes, alertmanager=alertmanager)
    if minutes is not None and report.problems:
        raise DemoError(
            f"demo: {len(report.problems)} expectation(s) did not hold: {report.problems[0]}"
            + (" …" if len(report.problems) > 1 else "")
        )


def add_commands(root: typer.Typer) -> None:
    """Mount ``lomsong demo``."""
    root.command("demo")(demo)
