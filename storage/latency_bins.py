"""A mergeable latency histogram: fixed log-spaced bins, counted per bin.

Why fixed bins and not a sketch: every collector, replica and rollup level uses the same bin
edges, so merging two histograms is adding their counts bin by bin. That addition is what the
database does inside one ``INSERT … ON CONFLICT DO UPDATE`` (``storage/rollups.py``), under the
row's lock, so that writers on several replicas never read, change and write back a histogram
of their own. A DDSketch with a fixed ``gamma`` and no bin collapsing *is* this histogram; its
collapsing (to bound memory) would make two merges depend on their order, which we do not need:
latencies between 0.1 ms and a minute take at most 330 bins, and a 5-minute bucket holds a few.

Bin ``i ≥ 1`` holds the values in ``(MIN_SECONDS·γ^(i-1), MIN_SECONDS·γ^i]``; bin 0 everything at
or below ``MIN_SECONDS``. A bin is answered by ``2·MIN_SECONDS·γ^i / (γ + 1)``, whose distance to
any value of the bin is at most ``RELATIVE_ERROR = (γ − 1)/(γ + 1)`` of that value. So a
percentile read from the histogram is within 2 % of the exact percentile (nearest rank) of the
same samples; answers are also clamped to the samples' own minimum and maximum, which only
brings them closer. Values at or below 0.1 ms (loopback only) read as 0.1 ms.

A histogram is a ``dict[int, int]`` of bin → count; stored as JSON text ``{"bin": count}``.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import accumulate

import orjson

#: The bound on the relative error of any percentile read from a histogram.
RELATIVE_ERROR = 0.02
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
#: Values at or below this (seconds) share bin 0.
MIN_SECONDS = 1e-4
LOG_GAMMA = math.log(GAMMA)

Histogram = dict[int, int]


def bin_of(seconds: float) -> int:
    """The bin that counts a latency of ``seconds``."""
    if not seconds > MIN_SECONDS:  # NaN and negatives too
        return 0
    return max(1, math.ceil(math.log(seconds / MIN_SECONDS) / LOG_GAMMA))


def count_bins(values: Iterable[float]) -> Histogram:
    """The histogram of ``values``: ``bin_of`` each, inlined (the writer bins every latency)."""
    log, ceil, low, step = math.log, math.ceil, MIN_SECONDS, LOG_GAMMA
    bins = [max(1, ceil(log(v / low) / step)) if v > low else 0 for v in values]
    return dict(Counter(bins))


def value_of(bin_index: int) -> float:
    """The value a bin answers with: within ``RELATIVE_ERROR`` of anything it counts."""
    if bin_index <= 0:
        return MIN_SECONDS
    return 2 * MIN_SECONDS * GAMMA**bin_index / (GAMMA + 1)


def add(hist: Histogram, seconds: float) -> None:
    b = bin_of(seconds)
    hist[b] = hist.get(b, 0) + 1


def merge(into: Histogram, other: Mapping[int, int]) -> None:
    """Add ``other``'s counts to ``into``: what the database does in the upsert."""
    for b, n in other.items():
        into[b] = into.get(b, 0) + n


def quantiles(
    hist: Mapping[int, int],
    qs: Iterable[float],
    *,
    low: float | None = None,
    high: float | None = None,
) -> list[float | None]:
    """The ``q``-quantiles (0 < q ≤ 1, nearest rank) of the counted values; None when empty.

    ``low`` and ``high`` are the samples' minimum and maximum when known: answers are clamped
    to them.
    """
    keys = sorted(hist)
    return _quantiles(keys, [hist[b] for b in keys], qs, low, high)


def quantiles_of_text(
    text: str | None,
    qs: Iterable[float],
    *,
    low: float | None = None,
    high: float | None = None,
) -> list[float | None]:
    """``quantiles`` of a histogram as stored (``dumps``), without building it: what a chart
    asks of each of its hundreds of rows."""
    stored: dict[str, int] = orjson.loads(text) if text and text != "{}" else {}
    keys = sorted(map(int, stored))
    return _quantiles(keys, list(map(stored.__getitem__, map(str, keys))), qs, low, high)


def _quantiles(
    keys: list[int],
    counts: list[int],
    qs: Iterable[float],
    low: float | None,
    high: float | None,
) -> list[float | None]:
    if not keys:
        return [None for _ in qs]
    cumulative = list(accumulate(counts))
    total = cumulative[-1]
    if total <= 0:
        return [None for _ in qs]
    out: list[float | None] = []
    for q in qs:
        # the first bin whose running count reaches the rank (nearest rank)
        i = min(bisect_left(cumulative, max(1, math.ceil(q * total - 1e-9))), len(keys) - 1)
        out.append(_clamp(value_of(keys[i]), low, high))
    return out


def _clamp(value: float, low: float | None, high: float | None) -> float:
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    return value


def dumps(hist: Mapping[int, int]) -> str:
    """JSON text for the database: ``{"bin": count}``, bins in order."""
    if not hist:
        return "{}"
    # orjson writes the int keys as strings itself, in C: this runs for every rollup written
    return orjson.dumps(hist, option=orjson.OPT_NON_STR_KEYS).decode()


def loads(text: str | None) -> Histogram:
    if not text or text == "{}":
        return {}
    return {int(b): n for b, n in orjson.loads(text).items()}
