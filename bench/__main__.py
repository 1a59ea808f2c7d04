"""Run every ``bench/bench_*.py`` in turn, or those named: ``python -m bench ingest``.

Options after the names go to the one benchmark named: ``python -m bench memory --minutes 2``.

Benchmarks report, they do not gate: the exit status is 0 even when a target is missed, and
non-zero only when a name is unknown or a benchmark crashed.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path

from bench.report import Outcome, summary

HERE = Path(__file__).parent


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    names = available()
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    chosen, options = argv[:first_option] or names, argv[first_option:]
    if options and len(chosen) != 1:
        print("bench: options go to one benchmark; name it alone, e.g. `memory --minutes 2`")
        return 2
    unknown = [n for n in chosen if n not in names]
    if unknown:
        print(f"bench: unknown benchmark {unknown[0]!r}; expected one of {{{', '.join(names)}}}")
        return 2
    outcomes: list[Outcome] = []
    crashed = 0
    for name in chosen:
        module = importlib.import_module(f"bench.bench_{name}")
        try:
            outcomes.extend(module.main(options) if options else module.main())
        except Exception:
            crashed += 1
            traceback.print_exc()
            print(f"bench: {name} crashed", flush=True)
    summary(outcomes)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
