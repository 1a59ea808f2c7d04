"""Fuzz of the collector's edge: no request, however malformed, gets an answer of 500 or more.

Requests are drawn by hypothesis from the collector's own OpenAPI schema (``app.openapi()``:
every operation, its query and path parameters and its JSON body) and, for
``POST /api/v1/reports`` whose body the schema does not describe, from the wire model
(``ReportBatch.model_json_schema()``). Each value is either one the schema allows or junk, and a
body may carry mutations a hostile or broken agent could send: NUL bytes, lone surrogates as JSON
escapes, huge and negative integers, 1e400, NaN, years 1 and 9999, deep nesting, wrong types,
truncated JSON, invalid UTF-8, gzip of garbage. The routes the schema hides (pages, maps, the
docs) are fuzzed from a table here, which must list every one of them.

Why plain hypothesis and a small schema converter rather than schemathesis or
hypothesis-jsonschema: hypothesis-jsonschema 0.23 fails with the hypothesis this project uses
(its object strategy calls an internal API hypothesis removed), schemathesis would bring a dozen
packages and a pytest plugin into every test session (under ``filterwarnings = error``), the
schema uses a small subset of JSON Schema (the converter refuses any keyword it does not know, so
a new one fails loudly), and one loop over all operations can collect every failure with its
request and count the cases exactly instead of stopping at the first.

Runs are deterministic (``derandomize``, no example database) and go to a real collector on
loopback (uvicorn, the middleware, the database: SQLite and PostgreSQL), with valid tokens so the
requests get past authentication into validation. The database is there the whole time, so a
503 is as much a failure as a 500.
"""

from __future__ import annotations

import copy
import functools
import gzip
import importlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

import lomsong
from lomsong.collector.app import create_app
from lomsong.collector.deps import TOKEN_COOKIE
from lomsong.coverage.compute import generate_and_store
from lomsong.wire import NAME_PATTERN, ReportBatch
from tests.app_routes import routes_of
from tests.conftest import ADMIN_SECRET, CollectorFactory, RunningCollector

pytestmark = pytest.mark.slow

#: Cases per backend, at least; the budgets below add up to a little more.
MIN_CASES = 2_000
#: Examples per operation of the schema; the report body and field readings get more, being
#: where hostile bytes come in.
PER_OPERATION = 110
BUDGET = {
    ("POST", "/api/v1/reports"): 600,
    ("POST", "/api/v1/field-measurements"): 220,
    ("POST", "/api/v1/coverage/whatif"): 160,
    # enrolment: small bodies behind a key or a role, so fewer cases reach as far
    ("POST", "/api/v1/enrolments"): 60,
    ("GET", "/api/v1/enrolments"): 30,
    ("GET", "/api/v1/enrolments/{enrolment_id}"): 30,
    ("POST", "/api/v1/enrolments/{enrolment_id}/approve"): 40,
    ("POST", "/api/v1/enrolments/{enrolment_id}/reject"): 30,
}
PER_HIDDEN_ROUTE = 35

PROBE_A, PROBE_B = "fuzz-a", "fuzz-b"


# --- JSON: values a parser or a database may choke on -------------------------------------------


class Raw(str):
    """JSON text sent as it is: what ``json.dumps`` never writes (NaN, 1e400, lone surrogates)."""


def to_json(value: Any) -> str:
    """JSON text of ``value``, with :class:`Raw` pieces inserted verbatim."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)  # ensure_ascii: NUL and surrogates leave as \u escapes


DEEP = 20_000
#: Values that once broke, or could break, a parser, a validator or a database column.
NASTY: list[Any] = [
    "a\x00b",
    "\x00",
    Raw('"a\x00b"'),  # a raw control character: invalid JSON
    Raw('"\\ud800"'),
    Raw('"x\\udfffy"'),
    Raw('"\\udc00\\ud800"'),
    Raw('"\\ud83d\\ude42"'),  # a valid pair
    Raw("1e400"),
    Raw("-1e400"),
    Raw("1e-400"),
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("01"),
    Raw("1" * 5_000),
    2**64,
    2**64 - 1,
    2**63,
    -(2**63) - 1,
    -1,
    0,
    10**100,
    -(10**100),
    1.5,
    -0.0,
    5e-324,
    1.7976931348623157e308,
    1e10,
    -1e10,
    253_402_300_800,  # year 10000 in epoch seconds
    -62_135_596_801,  # before year 1
    "",
    " ",
    "NaN",
    "1e400",
    "-1",
    "0x10",
    "٠٤",  # Arabic-Indic digits: \d in a pattern matches them
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59.999999-14:00",
    "2026-02-30T00:00:00Z",
    "2026-03-02T25:00:00Z",
    "2026-03-02T08:00:00",
    "1e400",
    True,
    False,
    None,
    [],
    {},
    [None],
    {"": None},
    "x" * 100_000,
    "\u202e\ufeff\u200b",
    "🙂",
    "'; DROP TABLE results; --",
    Raw("[" * DEEP + "]" * DEEP),
    Raw('{"a":' * DEEP + "1" + "}" * DEEP),
    list(range(3_000)),
]


def one_in(n: int) -> SearchStrategy[bool]:
    """True about once in ``n`` draws. Hypothesis favours the ends of an integer range, so
    ``integers(0, n - 1) == 0`` would be true far more often; a middle value is drawn fairly."""
    return st.integers(0, n + 1).map(lambda i: i == n // 2 + 1)


json_values: SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# a copy each time: a mutation may later change what it put in, and NASTY must stay as it is
nasty = st.sampled_from(NASTY).map(copy.deepcopy)


def _slots(doc: Any, out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Every (container, key) inside ``doc``: the places a mutation may hit."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((doc, k))
            _slots(v, out)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append((doc, i))
            _slots(v, out)
    return out


@st.composite
def mutated(draw: st.DrawFn, docs: SearchStrategy[Any], most: int = 3) -> Any:
    """A document from ``docs`` with up to ``most`` values replaced, dropped or added."""
    doc = copy.deepcopy(draw(docs))  # mutated in place: never what another draw holds
    for _ in range(draw(st.integers(0, most))):
        slots = _slots(doc, [])
        if not slots:
            return draw(nasty | json_values)
        container, key = draw(st.sampled_from(slots))
        how = draw(st.sampled_from(["nasty", "nasty", "nasty", "junk", "drop", "add", "wrap"]))
        if how == "nasty":
            container[key] = draw(nasty)
        elif how == "junk":
            container[key] = draw(json_values)
        elif how == "drop":
            del container[key]
        elif how == "add" and isinstance(container, dict):
            container[draw(st.sampled_from(["extra", "", "\x00", "seq", "__proto__"]))] = draw(
                nasty
            )
        elif how == "wrap":
            container[key] = [container[key]]
    return doc


#: Where to cut or splice a body, as a share of its length: a bound drawn from the length itself
#: would change with the bytes of the current time, and hypothesis, replaying a case, would find
#: the draws of another (FlakyStrategyDefinition) and the run would no longer be the same.
SHARES = 1_000
share = st.integers(0, SHARES - 1)


@functools.cache
def gzip_bomb() -> bytes:
    """Inflates past the collector's limit (32 MiB) from a few tens of kilobytes."""
    return gzip.compress(b"\x00" * (40 * 2**20), 9)


@st.composite
def encoded(draw: st.DrawFn, doc: Any, *, gz: bool = False) -> tuple[bytes, dict[str, str]]:
    """The body and headers of ``doc``, maybe truncated, with invalid bytes, or as bad gzip."""
    raw = to_json(doc).encode()
    headers = {"Content-Type": draw(st.sampled_from(["application/json"] * 6 + ["text/plain", ""]))}
    how = draw(
        st.sampled_from(
            ["plain"] * 8 + ["truncate", "bad-utf8", "garbage"] + (["gzip"] * 3 if gz else [])
        )
    )
    if how == "truncate" and raw:
        raw = raw[: len(raw) * draw(share) // SHARES]
    elif how == "bad-utf8":
        at = len(raw) * draw(share) // SHARES
        raw = (
            raw[:at]
            + draw(st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc0\x80", b"\x00"]))
            + raw[at:]
        )
    elif how == "garbage":
        raw = draw(st.binary(max_size=64))
    elif how == "gzip":
        kind = draw(st.sampled_from(["ok", "ok", "garbage", "truncated", "bomb", "twice", "label"]))
        headers["Content-Encoding"] = "gzip"
        if kind == "ok":
            raw = gzip.compress(raw)
        elif kind == "garbage":
            raw = draw(st.binary(max_size=64))
        elif kind == "truncated":
            whole = gzip.compress(raw)
            raw = whole[: len(whole) * draw(share) // SHARES]
        elif kind == "bomb":
            raw = gzip_bomb()
        elif kind == "twice":
            raw = gzip.compress(gzip.compress(raw))
        else:  # says gzip, is not; or names another coding
            headers["Content-Encoding"] = draw(
                st.sampled_from(["gzip", "deflate", "br", "gzip, gzip", "GZip", "x-\u00e9"])
            )
    if not headers["Content-Type"]:
        del headers["Content-Type"]
    return raw, headers


# --- a small JSON Schema converter ---------------------------------------------------------------

#: Keywords that describe and never constrain.
ANNOTATIONS = {"title", "description", "default", "examples", "$defs"}


class SchemaStrategies:
    """Hypothesis strategies for the JSON Schema subset FastAPI and pydantic emit here.

    Any other keyword raises, so a schema that grows one makes this test fail rather than fuzz
    it as if it were absent."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self._made: dict[str, SearchStrategy[Any]] = {}

    def resolve(self, ref: str) -> dict[str, Any]:
        assert ref.startswith("#/"), ref
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        return dict(node)

    def of(self, schema: dict[str, Any]) -> SearchStrategy[Any]:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._made:
            self._made[key] = self._of(schema)
        return self._made[key]

    def _of(self, schema: dict[str, Any]) -> SearchStrategy[Any]:
        schema = {k: v for k, v in schema.items() if k not in ANNOTATIONS}
        if "$ref" in schema:
            return self.of({**self.resolve(schema.pop("$ref")), **schema})
        if "anyOf" in schema:
            branches = schema.pop("anyOf")
            return st.one_of([self.of({**schema, **b}) for b in branches])
        if "enum" in schema:
            values = schema.pop("enum")
            schema.pop("type", None)
            self._done(schema)
            return st.sampled_from(values)
        kind = schema.pop("type", None)
        if kind == "string":
            return self._string(schema)
        if kind in ("integer", "number"):
            return self._number(kind, schema)
        if kind == "boolean":
            self._done(schema)
            return st.booleans()
        if kind == "null":
            self._done(schema)
            return st.none()
        if kind == "object":
            return self._object(schema)
        if kind == "array":
            return self._array(schema)
        if kind is None and not schema:
            return json_values
        raise AssertionError(f"the fuzz test does not know this schema: type {kind!r} {schema}")

    @staticmethod
    def _done(rest: dict[str, Any]) -> None:
        assert not rest, f"the fuzz test does not know these schema keywords: {sorted(rest)}"

    def _string(self, s: dict[str, Any]) -> SearchStrategy[Any]:
        lo, hi = s.pop("minLength", 0), s.pop("maxLength", None)
        pattern, fmt = s.pop("pattern", None), s.pop("format", None)
        self._done(s)
        if fmt == "date-time":
            return date_times
        assert fmt is None, f"string format {fmt!r}"
        base = st.from_regex(pattern, fullmatch=True) if pattern else st.text(max_size=40)
        return base.filter(lambda v: lo <= len(v) and (hi is None or len(v) <= hi))

    def _number(self, kind: str, s: dict[str, Any]) -> SearchStrategy[Any]:
        lo, hi = s.pop("minimum", None), s.pop("maximum", None)
        xlo, xhi = s.pop("exclusiveMinimum", None), s.pop("exclusiveMaximum", None)
        self._done(s)
        if kind == "integer":
            lo = lo if xlo is None else math.floor(xlo) + 1
            hi = hi if xhi is None else math.ceil(xhi) - 1
            return st.integers(lo, hi)
        return st.floats(
            min_value=lo if xlo is None else xlo,
            max_value=hi if xhi is None else xhi,
            exclude_min=xlo is not None,
            exclude_max=xhi is not None,
            allow_nan=False,
            allow_infinity=False,
        )

    def _object(self, s: dict[str, Any]) -> SearchStrategy[Any]:
        props = s.pop("properties", {})
        required = set(s.pop("required", ()))
        extra = s.pop("additionalProperties", True)
        self._done(s)
        fields = {k: self.of(v) for k, v in props.items()}
        doc = st.fixed_dictionaries(
            {k: v for k, v in fields.items() if k in required},
            optional={k: v for k, v in fields.items() if k not in required},
        )
        if extra is True:
            more = st.dictionaries(st.text(max_size=8), json_values, max_size=2)
            return st.builds(lambda d, m: {**m, **d}, doc, more)
        assert extra is False, f"additionalProperties {extra!r}"
        return doc

    def _array(self, s: dict[str, Any]) -> SearchStrategy[Any]:
        items = self.of(s.pop("items", {}))
        lo, hi = s.pop("minItems", 0), s.pop("maxItems", None)
        self._done(s)
        # a long list costs time and finds nothing a short one does not
        return st.lists(items, min_size=lo, max_size=min(hi or 4, max(lo, 4)))


#: Any aware or naive time from year 1 to 9999, written as ISO 8601.
date_times: SearchStrategy[str] = st.builds(
    lambda d, tz, z: d.replace(tzinfo=tz).isoformat().replace("+00:00", "Z" if z else "+00:00"),
    st.datetimes(),
    st.none() | st.builds(timezone, st.timedeltas(timedelta(hours=-23), timedelta(hours=23))),
    st.booleans(),
)


def _iso(t: float) -> str:
    # always the same width, so that no draw's bounds depend on the time (see ``share``)
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- requests --------------------------------------------------------------------------------


@dataclass
class Req:
    """One request of the fuzz, kept whole for the report of a failure."""

    route: tuple[str, str]
    method: str
    target: str  # path and query, percent-encoded
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes = b""

    def __str__(self) -> str:
        shown = {
            k: ("<token>" if k in ("Authorization", "Cookie") else v)
            for k, v in self.headers.items()
        }
        body = self.content[:300] + (b"..." if len(self.content) > 300 else b"")
        return f"{self.method} {self.target[:400]} headers={shown} body={body!r}"


def _query_text(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bool):
        return b"true" if value else b"false"
    return str(value).encode("utf-8", "surrogatepass")


def _q(value: Any) -> str:
    return quote_from_bytes(_query_text(value), safe="")


#: junk for a query or path parameter: any text, any bytes (invalid UTF-8 too), nasty numbers
junk_param: SearchStrategy[Any] = (
    st.text(max_size=30)
    | st.binary(max_size=12)
    | st.sampled_from(
        ["", "0", "-1", "1e400", "NaN", "inf", "9" * 30, "04\x00", " 04", "true", "yes", "٠٤"]
    )
    | st.integers()
    | st.floats()
)

#: Realistic values a schema of plain strings cannot know: they get the request past the 404.
HINTS: dict[str, SearchStrategy[Any]] = {
    "probe_id": st.sampled_from([PROBE_A, PROBE_B, "no-such-probe"]),
    "since": date_times | st.sampled_from(["2026-03-02", "1e400", "-1", "9999999999999"]),
    "until": date_times | st.sampled_from(["2026-03-02", "nan", "0"]),
    "status": st.sampled_from(["covered", "weak", "none", "outage", "COVERED", ""]),
    "operator": st.sampled_from(["viettel", "vinaphone", "mobifone", "fibre", "unitel"]),
    "province": st.sampled_from(["04", "12", "01", "99", "4"]),
    "code": st.sampled_from(["04", "12", "99"]),
    "commune": st.sampled_from(["01273", "03388", "00000"]),
}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "query" or "path"
    schema: dict[str, Any]
    required: bool


def with_params(path: str, params: Iterable[Param], conv: SchemaStrategies) -> SearchStrategy[str]:
    """The path with its parameters filled and a query string: valid, hinted or junk values,
    sometimes an unknown or a repeated parameter."""
    sources = []
    for p in params:
        assert p.where in ("query", "path"), f"parameters in {p.where!r} are not fuzzed yet"
        valid = conv.of(p.schema) if p.name not in HINTS else HINTS[p.name] | conv.of(p.schema)
        # two valid values for one of junk, else few requests would get every parameter right
        # (one_of drops a repeated branch, so the weight is drawn)
        sources.append((p, st.integers(0, 2).flatmap(lambda i, v=valid: v if i else junk_param)))

    @st.composite
    def build(draw: st.DrawFn) -> str:
        filled = path
        query: list[tuple[str, Any]] = []
        for p, source in sources:
            if p.where == "path":
                value = draw(source)
                filled = filled.replace("{" + p.name + "}", _q("" if value is None else value))
            elif p.required or draw(st.booleans()):
                value = draw(source)
                if value is not None:
                    query.append((p.name, value))
                elif draw(st.booleans()):
                    query.append((p.name, ""))
        if query and draw(one_in(10)):
            query.append(draw(st.sampled_from(query)))
        if draw(one_in(10)):
            query.append((draw(st.sampled_from(["x", "", "token", "limit[]"])), draw(junk_param)))
        text = "&".join(f"{_q(k)}={_q(v)}" for k, v in query)
        return filled + (f"?{text}" if text else "")

    return build()


@dataclass
class Target:
    """The collector under fuzz and the tokens that reach past its authentication."""

    collector: RunningCollector = field(repr=False)
    tokens: dict[str, str] = field(repr=False)

    def auth(self, name: str) -> dict[str, str]:
        if name == "none":
            return {}
        if name.endswith("-cookie"):
            return {"Cookie": f"{TOKEN_COOKIE}={self.tokens[name.removesuffix('-cookie')]}"}
        return {"Authorization": f"Bearer {self.tokens[name]}"}


#: Authorization values of broken clients: other schemes, bytes past ASCII, huge tokens
junk_auth: SearchStrategy[str] = st.sampled_from(
    [
        "Bearer",
        "bearer lst_x",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer lst_\xff\xfe\xe9",
        "Bearer " + "a" * 20_000,
        "Bearer a b c",
        "Bearer\tlst_x",
    ]
) | st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=40,
).map(
    lambda t: "Bearer " + t if t else "Bearer"  # h11 refuses a value ending in a space
)


def callers_of(method: str, path: str) -> list[str]:
    """Who calls an operation in the fuzz: tokens that may, so the request is validated."""
    if path == "/api/v1/reports":
        return ["probe_a"]
    if path == "/api/v1/field-measurements" or path.startswith("/api/v1/probes"):
        return ["admin", "admin", "probe_a"]
    return ["admin", "admin", "viewer04"]


def schema_operations(app: Any) -> list[tuple[str, str, list[Param], dict[str, Any] | None]]:
    spec = app.openapi()
    out = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            params = [
                Param(p["name"], p["in"], p["schema"], bool(p.get("required")))
                for p in op.get("parameters", [])
            ]
            body = None
            if "requestBody" in op:
                content = op["requestBody"]["content"]
                assert set(content) == {"application/json"}, f"{method} {path}: {set(content)}"
                body = content["application/json"]["schema"]
            out.append((method.upper(), path, params, body))
    return out


#: What a field reading holds (``coverage/validate.py``): the schema says only "an object".
READING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "lat": {"anyOf": [{"type": "number", "minimum": 8, "maximum": 24}, {"type": "number"}]},
        "lon": {"anyOf": [{"type": "number", "minimum": 102, "maximum": 118}, {"type": "number"}]},
        "operator": {"enum": ["viettel", "vinaphone", "mobifone", "unitel", ""]},
        "rsrp_dbm": {
            "anyOf": [{"type": "number", "minimum": -160, "maximum": -20}, {"type": "number"}]
        },
        "measured_at": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]},
        "radio": {"enum": ["gsm", "umts", "lte", "nr", "6g"]},
        "id": {"type": "string"},
    },
    "required": ["lat", "lon", "operator", "rsrp_dbm", "measured_at"],
    "additionalProperties": False,
}
READINGS = SchemaStrategies({}).of(READING_SCHEMA)
#: a point in probe A's province (04), where its readings and the synthetic hamlets are
HOME = (22.9455, 105.6335)


@st.composite
def near_home(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` moved near HOME, measured lately, by a known operator: so that it reaches the
    engine rather than stop at the first check."""
    doc = dict(doc)
    doc["lat"] = HOME[0] + draw(st.floats(-0.02, 0.02))
    doc["lon"] = HOME[1] + draw(st.floats(-0.02, 0.02))
    doc["operator"] = draw(st.sampled_from(["viettel", "vinaphone", "mobifone", "gmobile"]))
    if "measured_at" in doc:
        doc["measured_at"] = _iso(time.time() - draw(st.floats(0, 30 * 86_400)))
    return doc


def body_docs(path: str, body: dict[str, Any], conv: SchemaStrategies) -> SearchStrategy[Any]:
    """Documents for a JSON body: from its schema, and for the two bodies whose schema cannot
    say what gets them accepted (readings' fields, an operator's name, a place in Vietnam),
    plausible ones as well; then mutated."""
    docs = conv.of(body)
    plausible: SearchStrategy[Any] = st.nothing()
    if path == "/api/v1/field-measurements":
        readings = st.lists(READINGS.flatmap(near_home), min_size=1, max_size=4)
        plausible = st.fixed_dictionaries({"readings": readings})
    elif path == "/api/v1/coverage/whatif":
        site = conv.of({"$ref": "#/components/schemas/CandidateSite"}).flatmap(near_home)
        plausible = st.fixed_dictionaries(
            {"sites": st.lists(site, min_size=1, max_size=3)},
            optional={"province": st.sampled_from(["04", "12", "99", "4"])},
        )
    either = docs | plausible
    return st.one_of(plausible, plausible, docs, mutated(either), mutated(either), json_values)


def schema_request(
    target: Target,
    method: str,
    path: str,
    params: list[Param],
    body: dict[str, Any] | None,
    conv: SchemaStrategies,
) -> SearchStrategy[Req]:
    urls = with_params(path, params, conv)
    docs = body_docs(path, body, conv) if body is not None else st.none()
    callers = st.sampled_from(callers_of(method, path))

    @st.composite
    def build(draw: st.DrawFn) -> Req:
        url = draw(urls)
        headers = target.auth(draw(callers))
        if draw(one_in(20)):  # now and then, an Authorization no one should send
            headers["Authorization"] = draw(junk_auth)
        content = b""
        if body is not None:
            content, more = draw(encoded(draw(docs)))
            headers.update(more)
        return Req((method, path), method, url, headers, content)

    return build()


# --- the report body, from the wire model ------------------------------------------------------

WIRE_SCHEMA = ReportBatch.model_json_schema()
WIRE_BATCHES = SchemaStrategies(WIRE_SCHEMA).of(WIRE_SCHEMA)


@st.composite
def wire_batch(draw: st.DrawFn) -> dict[str, Any]:
    """A batch drawn from the wire model; most are made plausible (this probe, times near now,
    small seqs) so that they reach the store rather than stop at the first check."""
    doc = dict(draw(WIRE_BATCHES))
    if not draw(one_in(10)):
        now = time.time()
        doc["probe_id"] = PROBE_A
        doc["sent_at"] = _iso(now + draw(st.floats(-60, 60)))
        results = []
        for r in doc["results"]:
            r = dict(r)
            if not draw(one_in(5)):
                r["measured_at"] = _iso(now - draw(st.floats(0, 3 * 86_400)))
                r["seq"] = draw(st.integers(1, 10_000))
            results.append(r)
        doc["results"] = results
    return doc


@st.composite
def report_request(draw: st.DrawFn, target: Target) -> Req:
    doc = draw(wire_batch() | mutated(wire_batch()) | mutated(wire_batch(), 6) | json_values)
    content, headers = draw(encoded(doc, gz=True))
    headers.update(target.auth("probe_a"))
    return Req(("POST", "/api/v1/reports"), "POST", "/api/v1/reports", headers, content)


# --- the routes the schema hides --------------------------------------------------------------

COOKIE_JUNK = 'abc%;="\\'
TOKEN_PARAM = Param("token", "query", {"type": "string"}, False)
PROVINCE_PATTERN = {"type": "string", "pattern": r"^\d{2}$"}
#: Every route the OpenAPI schema leaves out, with the parameters it reads; the test fails when
#: the app has one this table does not list.
HIDDEN_ROUTES: dict[tuple[str, str], list[Param]] = {
    ("GET", "/openapi.json"): [],
    ("GET", "/docs"): [],
    ("GET", "/docs/oauth2-redirect"): [],
    ("GET", "/redoc"): [],
    ("GET", "/static/docs/{asset}"): [
        Param("asset", "path", {"enum": ["swagger-ui.css", "favicon.png"]}, True)
    ],
    ("GET", "/"): [Param("province", "query", PROVINCE_PATTERN, False), TOKEN_PARAM],
    ("GET", "/login"): [Param("next", "query", {"type": "string"}, False)],
    ("POST", "/login"): [],  # its form is the body, below
    ("GET", "/logout"): [],
    ("POST", "/logout"): [],
    ("GET", "/maps/"): [TOKEN_PARAM],
    ("GET", "/maps/province/{code}"): [Param("code", "path", PROVINCE_PATTERN, True), TOKEN_PARAM],
    ("GET", "/maps/national"): [TOKEN_PARAM],
    ("GET", "/outages/{outage_id}"): [
        Param("outage_id", "path", {"type": "string", "pattern": r"^[A-Za-z0-9_.:-]{1,32}$"}, True),
        TOKEN_PARAM,
    ],
    ("GET", "/fleet"): [Param("province", "query", PROVINCE_PATTERN, False), TOKEN_PARAM],
    ("GET", "/probes/{probe_id}"): [
        Param("probe_id", "path", {"type": "string", "pattern": NAME_PATTERN}, True),
        Param("range", "query", {"enum": ["24h", "7d", "30d", "1y"]}, False),
        TOKEN_PARAM,
    ],
}


@st.composite
def login_form(draw: st.DrawFn, target: Target) -> tuple[bytes, dict[str, str]]:
    fields: list[tuple[str, Any]] = []
    if draw(st.booleans()):
        token = st.sampled_from([target.tokens["admin"], target.tokens["viewer04"], "lst_nope"])
        fields.append(("token", draw(token | junk_param)))
    if draw(st.booleans()):
        nxt = st.sampled_from(["/", "/maps/", "//evil.example", "https://evil.example", "/\\x", ""])
        fields.append(("next", draw(nxt | junk_param)))
    raw = "&".join(f"{_q(k)}={_q(v)}" for k, v in fields).encode()
    if draw(one_in(6)):
        raw = draw(st.binary(max_size=64))
    return raw, {"Content-Type": "application/x-www-form-urlencoded"}


def hidden_request(
    target: Target, method: str, path: str, params: list[Param]
) -> SearchStrategy[Req]:
    urls = with_params(path, params, SchemaStrategies({}))

    @st.composite
    def build(draw: st.DrawFn) -> Req:
        url = draw(urls)
        who = ["admin", "admin-cookie", "viewer04", "viewer04-cookie", "probe_a", "none"]
        headers = target.auth(draw(st.sampled_from(who)))
        if draw(one_in(10)):
            junk = draw(st.text(alphabet=COOKIE_JUNK, max_size=12))
            headers["Cookie"] = f"{TOKEN_COOKIE}={junk}"
        content = b""
        if (method, path) == ("POST", "/login"):
            content, more = draw(login_form(target))
            headers.update(more)
        if method == "POST":  # the forms' origin check, passed or not
            own = target.collector.url
            origin = draw(st.sampled_from([own, own, "https://evil.example", "null", None]))
            if origin is not None:
                headers["Origin"] = origin
        return Req((method, path), method, url, headers, content)

    return build()


# --- the run ---------------------------------------------------------------------------------


@pytest.fixture
def target(collector_factory: CollectorFactory, db_url: str) -> Target:
    # No rate limit in the way: the fuzz sends hundreds of reports a second from one probe.
    c = collector_factory(db_url, ingest={"rate_per_probe": 10_000, "rate_burst": 100_000})
    # Coverage data for province 04, so the coverage routes and maps compute something.
    generate_and_store(c.engine, province="04", seed=5)
    tokens = {
        "admin": ADMIN_SECRET,
        "probe_a": c.register(PROBE_A, "01273", ("viettel-4g:viettel", "fibre:fibre")),
        "probe_b": c.register(PROBE_B, "03388", ("mobifone-4g:mobifone",)),
        "viewer04": c.viewer("04"),
    }
    return Target(c, tokens)


def import_the_whole_product() -> None:
    """Import every module of lomsong.

    Now and then hypothesis draws a constant it found in the local modules imported so far, and
    which those are depends on the tests that ran before in the process (xdist, ``-k``): with
    all of them imported, every run draws the same cases. (Not the migrations: alembic runs
    ``env.py`` itself.)"""
    root = Path(lomsong.__path__[0])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        if rel.name == "__main__" or "migrations" in rel.parts:
            continue
        importlib.import_module(".".join(["lomsong", *(p for p in rel.parts if p != "__init__")]))


def run_cases(strategy: SearchStrategy[Req], examples: int, send: Callable[[Req], None]) -> None:
    # Deterministic: the same requests every run; nothing is stored; never shrunk, since a case
    # never fails by raising: failures are collected by ``send``.
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(strategy)
    def case(req: Req) -> None:
        send(req)

    case()


def test_no_request_gets_a_5xx(target: Target) -> None:
    import_the_whole_product()
    c = target.collector
    # The same app as the one served (same settings and engine), to read its routes and schema;
    # it is never started.
    app = create_app(c.ctx.settings, engine=c.engine)
    hidden = {(m, p) for m, p, in_schema in routes_of(app) if not in_schema}
    assert hidden == set(HIDDEN_ROUTES), "list the new hidden route in HIDDEN_ROUTES"

    conv = SchemaStrategies(app.openapi())
    plans: list[tuple[tuple[str, str], SearchStrategy[Req], int]] = [
        (("POST", "/api/v1/reports"), report_request(target), BUDGET[("POST", "/api/v1/reports")])
    ]
    writes_last = []
    for method, path, params, body in schema_operations(app):
        n = BUDGET.get((method, path), PER_OPERATION)
        if (method, path) == ("POST", "/api/v1/reports"):
            n = PER_OPERATION // 4  # its schema has no body: the wire fuzz above is the real one
        plan = ((method, path), schema_request(target, method, path, params, body, conv), n)
        # an accepted reading makes the next coverage read recompute; keep those for the end
        (writes_last if path == "/api/v1/field-measurements" else plans).append(plan)
    for (method, path), params in HIDDEN_ROUTES.items():
        plans.append(
            ((method, path), hidden_request(target, method, path, params), PER_HIDDEN_ROUTE)
        )
    plans += writes_last

    failures: list[str] = []
    statuses: dict[tuple[str, str], Counter[int]] = {}
    took: dict[tuple[str, str], float] = {}
    started = time.monotonic()
    with httpx.Client(base_url=c.url, timeout=60) as http:
        for route, strategy, examples in plans:
            seen = statuses.setdefault(route, Counter())

            def send(req: Req, seen: Counter[int] = seen) -> None:
                try:
                    # latin-1: a header may carry any byte value, as on the wire
                    headers = {k: v.encode("latin-1") for k, v in req.headers.items()}
                    r = http.request(req.method, req.target, headers=headers, content=req.content)
                except httpx.LocalProtocolError:
                    raise  # the test built a request HTTP cannot carry: its own bug
                except httpx.HTTPError as exc:  # a dropped connection is a crash too
                    failures.append(f"{req}\n  -> {type(exc).__name__}: {exc}")
                    seen[0] += 1
                    return
                seen[r.status_code] += 1
                if r.status_code >= 500:
                    failures.append(f"{req}\n  -> {r.status_code} {r.text[:300]}")

            began = time.monotonic()
            run_cases(strategy, examples, send)
            took[route] = time.monotonic() - began
    elapsed = time.monotonic() - started
    total = sum(sum(s.values()) for s in statuses.values())
    summary = "\n".join(
        f"{m} {p}: {took[m, p]:.1f} s {dict(sorted(s.items()))}" for (m, p), s in statuses.items()
    )
    print(f"\n{total} cases in {elapsed:.1f} s\n{summary}")

    assert not failures, f"{len(failures)} requests got 5xx:\n" + "\n".join(failures[:40])
    assert total >= MIN_CASES, summary
    # every operation was reached past authentication, into validation or beyond
    for route, seen in statuses.items():
        assert set(seen) - {401, 403}, f"{route}: only {dict(seen)}"


def test_whatif_refuses_a_beamwidth_too_narrow_to_compute(any_collector: RunningCollector) -> None:
    """Found by the fuzz: a beamwidth of 5e-324° (or anything below about 1e-154°) passed the
    model's ``gt=0``, then 12 / radians(beamwidth)² overflowed in the link budget: a
    RuntimeWarning, so a 500 where warnings are errors and a silently empty answer elsewhere. No
    sector antenna is narrower than a degree."""
    c = any_collector
    generate_and_store(c.engine, province="04", seed=5)
    site = {"lat": HOME[0], "lon": HOME[1], "operator": "viettel", "azimuth_deg": 34.0}
    with c.client(ADMIN_SECRET) as http:
        for narrow in (5e-324, 1e-160, 0.5):
            r = http.post(
                "/api/v1/coverage/whatif", json={"sites": [{**site, "beamwidth_deg": narrow}]}
            )
            assert r.status_code == 422, r.text
            assert r.json()["detail"].startswith(
                "sites[0].beamwidth_deg: Input should be greater"
            ), r.text
        r = http.post("/api/v1/coverage/whatif", json={"sites": [{**site, "beamwidth_deg": 1.0}]})
        assert r.status_code == 200, r.text
