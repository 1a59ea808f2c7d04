"""``lomsong_uplink_availability_ratio`` and ``lomsong_probe_availability_ratio`` for ``/metrics``.

The figures come from ``availability_daily`` (``availability_read.window_figures``), read on a
schedule by every replica (``pipeline.py``) and kept as ready exposition text, so a scrape only
appends a string: nothing is computed from raw rows or outages at scrape time. The ``window``
label is bounded: ``1d``, ``7d`` and ``30d``, each the N local days ending today.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from lomsong.collector.availability import local_day
from lomsong.collector.availability_read import window_figures
from lomsong.collector.live import LiveState

#: the values of the ``window`` label, in days
WINDOWS = (1, 7, 30)
_UPLINK = "lomsong_uplink_availability_ratio"
_PROBE = "lomsong_probe_availability_ratio"
_HELP = {
    _UPLINK: "Share of observed time the uplink was not down (maintenance left out), over the "
    "window's local days ending today.",
    _PROBE: "Share of observed time the centre was neither silent nor down on every uplink "
    "(maintenance left out), over the window's local days ending today.",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class AvailabilityGauges:
    """The two families as text, remade by ``reload``; ``render`` is what a scrape appends."""

    def __init__(self, engine: Engine, live: LiveState, *, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.live = live
        self.clock = clock
        self._text = ""

    def render(self) -> str:
        return self._text

    def reload(self) -> None:
        today = local_day(self.clock())
        with self.live.lock:
            probes = dict(self.live.probes)
        lines: dict[str, list[str]] = {_UPLINK: [], _PROBE: []}
        for uplinks, name in ((True, _UPLINK), (False, _PROBE)):
            for n, figures in window_figures(self.engine, WINDOWS, today, uplinks=uplinks):
                for (pid, uplink), f in sorted(figures.items()):
                    info = probes.get(pid)
                    ratio = f.ratio
                    if info is None or ratio is None:
                        continue
                    labels = (
                        f'probe="{_escape(pid)}",commune="{_escape(info.commune_code)}",'
                        f'province="{_escape(info.province_code)}"'
                    )
                    if uplinks:
                        operator = next((u.operator for u in info.uplinks if u.name == uplink), "")
                        labels += f',uplink="{_escape(uplink)}",operator="{_escape(operator)}"'
                    lines[name].append(f'{name}{{{labels},window="{n}d"}} {ratio!r}')
        text = []
        for name, samples in lines.items():
            if samples:
                text += [f"# HELP {name} {_HELP[name]}", f"# TYPE {name} gauge", *samples]
        self._text = "\n".join([*text, ""]) if text else ""
