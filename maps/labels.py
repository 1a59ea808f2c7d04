"""What the maps and the status page say, in Vietnamese and English, and in which colours.

Every label is shown in both languages, Vietnamese first ("Trắng sóng / No signal"): the pages
are read by provincial officers and by operators' planners alike. Colours are chosen so that the
four coverage statuses stay apart for readers with red-green colour blindness (the orange and
the purple differ in lightness from the red and the green).
"""

from __future__ import annotations

from lomsong import words

# The status codes of ``lomsong.coverage.model``, spelled out: this module is also used by the
# status page, which must work on a collector installed without the geo extra (no numpy).
COVERED, WEAK, NONE, OUTAGE = 0, 1, 2, 3

#: status code → (Vietnamese, English)
STATUS_TEXT: dict[int, tuple[str, str]] = {
    COVERED: ("Phủ sóng", "Covered"),
    WEAK: ("Lõm sóng", "Weak signal"),
    NONE: ("Trắng sóng", "No signal"),
    OUTAGE: ("Mất sóng do sự cố", "Outage"),
}
STATUS_COLOURS: dict[int, str] = {
    COVERED: "#1a9850",
    WEAK: "#f28e2b",
    NONE: "#d62728",
    OUTAGE: "#7b3294",
}
#: the ring of a hamlet without grid power
NO_POWER_RING = "#111111"

#: probe state → (Vietnamese, English): the words are the kernel's (``lomsong.words``), shared
#: with alerts; only the colours are the maps'
PROBE_TEXT: dict[str, tuple[str, str]] = words.PROBE_STATES
UPLINK_TEXT: dict[str, tuple[str, str]] = words.UPLINK_STATES
#: every state a probe or an uplink can be in, for code that shows either
STATE_TEXT: dict[str, tuple[str, str]] = {**PROBE_TEXT, **UPLINK_TEXT}
#: light to dark, so that the order survives colour blindness: yellow (degraded) is lighter than
#: orange (partly down), which is lighter than red (down); a partly-down marker is also drawn
#: half filled (``lomsong-map.css``)
STATE_COLOURS: dict[str, str] = {
    "up": "#1a9850",
    "degraded": "#f2c12b",
    "failing": "#fdd0a2",
    "partial": "#f08a24",
    "down": "#d62728",
    "unknown": "#9e9e9e",
}
PROBE_COLOURS: dict[str, str] = {k: STATE_COLOURS[k] for k in PROBE_TEXT}

#: operator key → colour of its sites; an operator configured later gets FALLBACK_COLOUR
OPERATOR_COLOURS: dict[str, str] = {
    "viettel": "#00695c",
    "vinaphone": "#1565c0",
    "mobifone": "#6d4c41",
    "vietnamobile": "#455a64",
    "gmobile": "#827717",
}
FALLBACK_COLOUR = "#37474f"
SITE_DOWN_COLOUR = "#bdbdbd"
DEAD_ZONE_COLOUR = "#d62728"
COMMUNE_LINE_COLOUR = "#3d3d3d"

#: condition and cause of an outage → (Vietnamese, English), the kernel's words
CONDITION_TEXT: dict[str, tuple[str, str]] = words.CONDITIONS
CAUSE_TEXT: dict[str | None, tuple[str, str]] = words.CAUSES

#: share of a commune's population in dead zones: (upper bound, colour), the last one open
SHARE_CLASSES: tuple[tuple[float, str], ...] = (
    (0.0, "#f7f7f7"),
    (0.05, "#fee0d2"),
    (0.15, "#fcbba1"),
    (0.30, "#fb6a4a"),
    (0.50, "#de2d26"),
    (1.0, "#a50f15"),
)
NO_DATA_COLOUR = "#d9d9d9"

LAYER_NAMES = {
    "communes": ("Ranh giới xã/phường", "Commune boundaries"),
    "dead_zones": ("Vùng trắng sóng", "Dead zones"),
    "probes": ("Trạm đo tại trung tâm xã", "Probes at commune centres"),
    "all_operators": ("Thôn/bản — mọi nhà mạng", "Hamlets — all operators"),
    "hamlets_of": ("Thôn/bản — {name}", "Hamlets — {name}"),
    "sites_of": ("Trạm BTS — {name}", "Sites — {name}"),
    "share": ("Tỷ lệ dân trong vùng trắng sóng", "Share of population in dead zones"),
    "provinces": ("Ranh giới tỉnh", "Province boundaries"),
}

NOTICES = {
    "synthetic": (
        "Dữ liệu mô phỏng: {what} không phải số liệu thật",
        "Synthetic data: the {what_en} are not real",
    ),
    "no_coverage": (
        "Chưa có dữ liệu vùng phủ cho tỉnh này",
        "No coverage data for this province yet",
    ),
    "no_coverage_national": (
        "Chưa có dữ liệu vùng phủ: các xã được tô màu xám",
        "No coverage data yet: communes are drawn grey",
    ),
    "tiles": ("Không tải được nền bản đồ", "Base map tiles could not be loaded"),
}


def both(pair: tuple[str, str]) -> str:
    """``("Trắng sóng", "No signal")`` → ``"Trắng sóng / No signal"``."""
    return f"{pair[0]} / {pair[1]}"


def layer_name(key: str, **values: str) -> str:
    vi, en = LAYER_NAMES[key]
    return both((vi.format(**values), en.format(**values)))


def operator_colour(key: str) -> str:
    return OPERATOR_COLOURS.get(key, FALLBACK_COLOUR)


def share_colour(share: float | None) -> str:
    """The fill of a commune whose population is ``share`` (0..1) in dead zones."""
    if share is None:
        return NO_DATA_COLOUR
    for bound, colour in SHARE_CLASSES:
        if share <= bound:
            return colour
    return SHARE_CLASSES[-1][1]


#: the labels of the facts in popups and tables
FIELDS: dict[str, tuple[str, str]] = {
    "commune": ("Xã/phường", "Commune"),
    "province": ("Tỉnh/thành phố", "Province"),
    "population": ("Dân số", "Population"),
    "power": ("Điện lưới", "Grid power"),
    "status": ("Trạng thái", "Status"),
    "best": ("Nhà mạng tốt nhất", "Best operator"),
    "signal": ("Tín hiệu (RSRP)", "Signal (RSRP)"),
    "serving": ("Trạm phục vụ", "Serving site"),
    "operator": ("Nhà mạng", "Operator"),
    "cell": ("Cell", "Cell"),
    "radio": ("Công nghệ", "Radio"),
    "azimuth": ("Hướng", "Azimuth"),
    "last_seen": ("Lần cuối nhận tin", "Last seen"),
    "uplink": ("Đường truyền", "Uplink"),
    "outage": ("Sự cố hiện tại", "Current outage"),
    "area": ("Diện tích", "Area"),
    "hamlets": ("Số thôn/bản", "Hamlets"),
    "none_hamlets": ("Thôn/bản trắng sóng", "Hamlets without signal"),
    "none_population": ("Dân trong vùng trắng sóng", "Population without signal"),
    "share": ("Tỷ lệ dân trắng sóng", "Share of population without signal"),
    "probes": ("Trạm đo", "Probes"),
    "outages": ("Sự cố đang diễn ra", "Active outages"),
    "since": ("Từ lúc", "Since"),
    "duration": ("Thời gian", "Duration"),
    "cause": ("Nguyên nhân", "Cause"),
    "kind": ("Loại", "Kind"),
    "links": ("Liên kết", "Links"),
    "map": ("Bản đồ", "Map"),
    "exports": ("Tải dữ liệu", "Exports"),
}

WORDS: dict[str, tuple[str, str]] = {
    "yes": ("Có", "Yes"),
    "no": ("Không", "No"),
    "measured": ("đo thực tế", "measured"),
    "predicted": ("dự đoán", "predicted"),
    "site_up": ("hoạt động", "active"),
    "site_down": ("ngừng hoạt động", "down"),
    "omni": ("vô hướng", "omni"),
    "from": ("từ", "since"),
    "dead_zone": ("Vùng trắng sóng", "Dead zone"),
    "open_map": ("mở bản đồ tỉnh", "open the province map"),
    "synthetic_row": ("Dữ liệu mô phỏng", "Synthetic data"),
    "no_power": ("Không có điện lưới", "No grid power"),
    "site": ("Trạm BTS", "Site"),
    "site_down_legend": ("Trạm BTS ngừng hoạt động", "Site down"),
    "no_data": ("Chưa có dữ liệu", "No data"),
    "legend": ("Chú giải", "Legend"),
    "provinces": ("Các tỉnh", "Provinces"),
    "hamlet": ("Thôn/bản", "Hamlet"),
    "probe_title": ("Trạm đo", "Probe"),
}


def page_text() -> dict[str, object]:
    """The labels a map page's script needs, keyed as ``lomsong-map.js`` reads them."""
    clash = set(WORDS) & {"status", "probe", "condition", "cause", "fields"}
    assert not clash, clash
    return {
        "status": STATUS_TEXT,
        "probe": STATE_TEXT,
        "condition": CONDITION_TEXT,
        "cause": {("" if k is None else k): v for k, v in CAUSE_TEXT.items()},
        "fields": FIELDS,
        **WORDS,
    }
