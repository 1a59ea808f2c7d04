"""How every benchmark reports: figures, a ratio to a baseline of the same run, PASS or MISS."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """One target of one benchmark and how the run did against it."""

    bench: str
    name: str
    figure: str
    target: str
    passed: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "MISS"


def heading(text: str) -> None:
    print(f"\n== {text}", flush=True)


def line(text: str) -> None:
    print(f"   {text}", flush=True)


def check(bench: str, name: str, figure: str, target: str, passed: bool) -> Outcome:
    """Print one target's verdict and return it for the summary table."""
    out = Outcome(bench, name, figure, target, passed)
    print(f"   [{out.verdict}] {name}: {figure} (target {target})", flush=True)
    return out


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def summary(outcomes: list[Outcome]) -> None:
    """The table printed at the end of a run."""
    print("\n== summary", flush=True)
    if not outcomes:
        print("   (no targets measured)")
        return
    w_bench = max(len(o.bench) for o in outcomes)
    w_name = max(len(o.name) for o in outcomes)
    w_fig = max(len(o.figure) for o in outcomes)
    for o in outcomes:
        print(
            f"   {o.verdict}  {o.bench:<{w_bench}}  {o.name:<{w_name}}  "
            f"{o.figure:<{w_fig}}  target {o.target}"
        )
    missed = sum(not o.passed for o in outcomes)
    print(f"   {len(outcomes) - missed} met, {missed} missed", flush=True)
