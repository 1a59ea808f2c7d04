"""The merge rule of check profiles (``lomsong.config.profiles``): examples, bad layers with the
one message each gives, and properties of the merge over generated layers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lomsong.config.profiles import (
    ProfileLayer,
    merge,
    parse_layer,
    parse_toml,
    version_of,
)
from lomsong.errors import ValidationError

NATIONAL = """
[defaults]
interval_seconds = 30.0
[[checks]]
kind = "http"
target = "https://dichvucong.gov.vn/"
method = "HEAD"
[[checks]]
kind = "dns"
target = "dichvucong.gov.vn"
server = "8.8.8.8"
[[checks]]
kind = "icmp"
target = "dichvucong.gov.vn"
interval_seconds = 20.0
"""
PROVINCE = """
[defaults]
interval_seconds = 60.0
timeout_seconds = 15.0
[[checks]]
kind = "dns"
target = "dichvucong.gov.vn"
server = "203.162.4.191"
[[checks]]
kind = "http"
target = "https://caobang.gov.vn/"
[[remove]]
kind = "icmp"
target = "dichvucong.gov.vn"
"""


def test_later_layers_replace_remove_and_add_by_kind_and_target() -> None:
    m = merge([("national", parse_toml(NATIONAL)), ("province:04", parse_toml(PROVINCE))])
    assert m.layers == ("national", "province:04")
    assert [(c["kind"], c["target"]) for c in m.checks] == [
        ("http", "https://dichvucong.gov.vn/"),
        ("dns", "dichvucong.gov.vn"),  # replaced: it moves to where its layer put it
        ("http", "https://caobang.gov.vn/"),
    ]
    # the province's server, and its defaults for every check that set none of its own
    assert m.checks[1]["server"] == "203.162.4.191"
    assert all(c["interval_seconds"] == 60.0 and c["timeout_seconds"] == 15.0 for c in m.checks)
    assert m.version == version_of(m.checks) and len(m.version) == 64


def test_a_check_keeps_its_own_interval_against_any_default() -> None:
    m = merge([("national", parse_toml(NATIONAL))])
    icmp = next(c for c in m.checks if c["kind"] == "icmp")
    assert icmp["interval_seconds"] == 20.0
    assert "timeout_seconds" not in icmp  # the model's default, on the box


def test_the_version_depends_on_the_checks_only() -> None:
    a = merge([("national", parse_toml(NATIONAL))])
    b = merge([("province:12", parse_toml(NATIONAL))])
    assert a.version == b.version
    c = merge([("national", parse_toml(NATIONAL.replace("8.8.8.8", "1.1.1.1")))])
    assert c.version != a.version


BAD_LAYERS = [
    ('[[check]]\nkind = "tcp"\n', "check: unknown field (got [{'kind': 'tcp'}])"),
    (
        '[[checks]]\nkind = "tcp"\ntarget = "dichvucong.gov.vn"\n',
        "checks[0].tcp.target: Value error, expected host:port, e.g. dichvucong.gov.vn:443 "
        "(got 'dichvucong.gov.vn')",
    ),
    (
        '[[checks]]\nkind = "ping"\ntarget = "x"\n',
        "checks[0]: Input tag 'ping' found using 'kind' does not match any of the expected "
        "tags: 'icmp', 'tcp', 'http', 'dns', 'heartbeat', 'modem' "
        "(got {'kind': 'ping', 'target': 'x'})",
    ),
    (
        '[defaults]\ninterval_seconds = 5.0\n[[checks]]\nkind = "tcp"\ntarget = "a:1"\n',
        "checks[0].tcp: Value error, timeout_seconds (10) exceeds interval_seconds (5) "
        "(got {'kind': 'tcp', 'target': 'a:1', 'interval_seconds': 5.0})",
    ),
    (
        '[[checks]]\nkind = "tcp"\ntarget = "a:1"\n[[checks]]\nkind = "tcp"\ntarget = "a:1"\n',
        "checks[1]: the same kind and target as checks[0]; a check's key is (kind, target) "
        "(got 'tcp a:1')",
    ),
    (
        '[[remove]]\nkind = "tcp"\n',
        "remove[0].target: field required (got {'kind': 'tcp'})",
    ),
    ("[defaults]\njitter_seconds = -1\n", "defaults.jitter_seconds: Input should be greater "
     "than or equal to 0 (got -1)"),
    ("checks = [\n", "profile: not valid TOML: Invalid value (at end of document) (got 'checks = [\\n')"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_LAYERS)
def test_bad_layers_name_the_field_and_the_value(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_toml(text)
    assert str(info.value) == message


def test_layers_that_clash_are_named_by_the_merge() -> None:
    national = parse_layer({"checks": [{"kind": "tcp", "target": "a:1", "timeout_seconds": 20}]})
    faster = parse_layer({"defaults": {"interval_seconds": 10}})
    with pytest.raises(ValidationError, match=r"^national: checks\[0\]\.tcp: .*timeout_seconds"):
        merge([("national", national), ("province:04", faster)])


# --- properties ---------------------------------------------------------------------------

TARGETS = [f"h{i}.example.vn:443" for i in range(6)]
check = st.fixed_dictionaries(
    {"kind": st.just("tcp"), "target": st.sampled_from(TARGETS)},
    optional={"interval_seconds": st.sampled_from([15.0, 30.0, 60.0])},
)
layer = st.builds(
    lambda checks, removes, interval: {
        "checks": list({c["target"]: c for c in checks}.values()),
        "remove": [{"kind": "tcp", "target": t} for t in removes],
        "defaults": {} if interval is None else {"interval_seconds": interval},
    },
    st.lists(check, max_size=4),
    st.lists(st.sampled_from(TARGETS), max_size=2, unique=True),
    st.none() | st.sampled_from([20.0, 45.0]),
)


def model(layers: list[dict[str, Any]]) -> dict[str, float | None]:
    """The merge rule, written the plain way: target → interval (None: the model's)."""
    out: dict[str, dict[str, Any]] = {}
    default: float | None = None
    for doc in layers:
        default = doc["defaults"].get("interval_seconds", default)
        for r in doc["remove"]:
            out.pop(r["target"], None)
        for c in doc["checks"]:
            out.pop(c["target"], None)
            out[c["target"]] = c
    return {t: c.get("interval_seconds", default) for t, c in out.items()}


@settings(max_examples=200, deadline=None)
@given(st.lists(layer, min_size=1, max_size=4))
def test_the_merge_follows_the_rule(layers: list[dict[str, Any]]) -> None:
    parsed = [(f"l{i}", parse_layer(doc)) for i, doc in enumerate(layers)]
    m = merge(parsed)
    got = {c["target"]: c.get("interval_seconds") for c in m.checks}
    assert got == model(layers)
    assert list(got) == list(model(layers))  # and in the same order
    # deterministic, and the version changes exactly when the merged checks do
    again = merge([(n, ProfileLayer.model_validate(lay.model_dump())) for n, lay in parsed])
    assert again.version == m.version


@settings(max_examples=100, deadline=None)
@given(st.lists(layer, min_size=1, max_size=3), layer)
def test_a_layer_that_removes_everything_leaves_nothing(
    layers: list[dict[str, Any]], last: dict[str, Any]
) -> None:
    wipe = {"remove": [{"kind": "tcp", "target": t} for t in TARGETS]}
    m = merge([(f"l{i}", parse_layer(doc)) for i, doc in enumerate([*layers, wipe])])
    assert m.checks == ()
