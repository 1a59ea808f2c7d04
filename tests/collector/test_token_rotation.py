"""Token rotation at the collector (``collector/token_rotation.py``), on SQLite and PostgreSQL:
the new token rides on a report's answer, is offered again until used, and its first use
revokes the old one; every batch in between is stored."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from lomsong.collector.auth import create_token, hash_token
from lomsong.collector.token_rotation import (
    list_rotations,
    request_rotation,
    rotation_notes,
    seal,
    unseal,
)
from lomsong.errors import ConflictError, NotFoundError
from lomsong.storage.schema import results, token_rotations, tokens
from tests.conftest import ADMIN_SECRET, RunningCollector
from tests.factories import batch, body

PROBE = "rot-a"


def post(c: RunningCollector, token: str, seqs: range) -> dict[str, object]:
    with c.client(token) as client:
        r = client.post("/api/v1/reports", content=body(batch(PROBE, seqs))[0])
    assert r.status_code == 200, r.text
    doc: dict[str, object] = r.json()
    return doc


def token_row(c: RunningCollector, token: str) -> dict[str, object]:
    with c.engine.connect() as conn:
        row = conn.execute(select(tokens).where(tokens.c.token_hash == hash_token(token))).one()
    return dict(row._mapping)


def test_seal_opens_only_with_the_old_token() -> None:
    sealed = seal("lst_new-token", "lst_old-token")
    assert "lst_new" not in sealed and bytes.fromhex(sealed)
    assert unseal(sealed, "lst_old-token") == "lst_new-token"
    assert unseal(sealed, "lst_another") != "lst_new-token"
    # a fresh salt each time: two seals of one token differ
    assert seal("lst_new-token", "lst_old-token") != sealed


def test_rotation_offered_until_used_then_old_token_revoked(
    any_collector: RunningCollector,
) -> None:
    c = any_collector
    old = c.register(PROBE)
    assert "new_token" not in post(c, old, range(1, 4))  # nothing pending: the plain answer
    rotation = request_rotation(c.engine, PROBE, by="test")
    assert rotation.state == "requested"

    first = post(c, old, range(4, 7))
    new = first["new_token"]
    assert isinstance(new, str) and new.startswith("lst_") and new != old
    # the agent crashed before writing it: its old token still works, the same one is offered
    again = post(c, old, range(7, 10))
    assert again["new_token"] == new
    assert again["accepted"] == 3
    (pending,) = list_rotations(c.engine, pending_only=True)
    assert pending.state == "offered" and pending.offers == 2
    assert pending.old_token_id == token_row(c, old)["id"]
    assert pending.new_token_id == token_row(c, new)["id"]
    # what the database keeps cannot give the new token away
    with c.engine.connect() as conn:
        stored = conn.execute(select(token_rotations)).one()._mapping
    assert all(new not in str(v) for v in stored.values())
    assert token_row(c, old)["revoked_at"] is None

    used = post(c, new, range(10, 13))
    assert "new_token" not in used and used["stored_through_seq"] == 12
    assert token_row(c, old)["revoked_at"] is not None
    assert token_row(c, new)["revoked_at"] is None
    (done,) = list_rotations(c.engine)
    assert done.state == "done" and done.completed_at is not None
    with c.engine.connect() as conn:
        assert conn.execute(select(token_rotations.c.sealed)).scalar() is None
        stored_count = conn.execute(
            select(func.count()).select_from(results).where(results.c.probe_id == PROBE)
        ).scalar()
    assert stored_count == 12  # every batch, old token or new, was stored
    with c.client(old) as client:
        r = client.post("/api/v1/reports", content=body(batch(PROBE, range(13, 14)))[0])
    assert r.status_code == 401
    assert "new_token" not in post(c, new, range(13, 15))


def test_a_resent_batch_answered_from_memory_still_carries_the_token(
    any_collector: RunningCollector,
) -> None:
    c = any_collector
    old = c.register(PROBE)
    post(c, old, range(1, 4))
    request_rotation(c.engine, PROBE)
    resent = post(c, old, range(1, 4))
    assert resent["duplicates"] == 3 and isinstance(resent["new_token"], str)


def test_only_the_token_it_was_sealed_with_is_offered_it(any_collector: RunningCollector) -> None:
    c = any_collector
    old = c.register(PROBE)
    spare = create_token(c.engine, role="probe", probe_id=PROBE, label="spare").token
    request_rotation(c.engine, PROBE)
    new = post(c, old, range(1, 3))["new_token"]
    assert isinstance(new, str)
    assert "new_token" not in post(c, spare, range(3, 5))
    post(c, new, range(5, 6))
    assert token_row(c, old)["revoked_at"] is not None
    assert token_row(c, spare)["revoked_at"] is None  # only the replaced token goes


def test_refusals_name_the_probe(any_collector: RunningCollector) -> None:
    c = any_collector
    with pytest.raises(NotFoundError, match="probe 'nobody' is not registered"):
        request_rotation(c.engine, "nobody")
    c.register(PROBE)
    request_rotation(c.engine, PROBE)
    with pytest.raises(ConflictError, match=r"probe 'rot-a': rotation 1 is still requested"):
        request_rotation(c.engine, PROBE)
    from lomsong.collector.registry import Uplink, register_probe

    register_probe(c.engine, "rot-bare", "01273", [Uplink("fibre", "fibre")])
    with pytest.raises(ConflictError, match="'rot-bare' has no valid token to rotate"):
        request_rotation(c.engine, "rot-bare")


def test_token_list_notes(any_collector: RunningCollector) -> None:
    c = any_collector
    old = c.register(PROBE)
    request_rotation(c.engine, PROBE)
    from lomsong.collector.auth import list_tokens

    old_id = token_row(c, old)["id"]
    notes = rotation_notes(list_tokens(c.engine), list_rotations(c.engine, pending_only=True))
    assert notes == {old_id: "#1 asked"}
    new = post(c, old, range(1, 2))["new_token"]
    assert isinstance(new, str)
    new_id = token_row(c, new)["id"]
    notes = rotation_notes(list_tokens(c.engine), list_rotations(c.engine, pending_only=True))
    assert notes == {old_id: f"#1 → {new_id} offered ×1", new_id: f"#1 ← {old_id}, unused"}


def test_rotation_api_admin_and_province_admin(any_collector: RunningCollector) -> None:
    c = any_collector
    c.register(PROBE, "01273")  # province 04
    c.register("rot-b", "03388")  # province 12
    pa04 = create_token(c.engine, role="province_admin", province_codes=["04"]).token
    viewer = c.viewer("04")
    path = "/api/v1/probes/{}/token-rotation"
    with c.client(viewer) as client:
        assert client.post(path.format(PROBE)).status_code == 403
    with c.client(pa04) as client:
        r = client.post(path.format("rot-b"))
        assert r.status_code == 403 and "province 12" in r.json()["detail"]
        r = client.post(path.format(PROBE))
        assert r.status_code == 201, r.text
        assert r.json()["state"] == "requested"
        assert r.json()["requested_by"].startswith("province_admin token ")
        r = client.post(path.format(PROBE))
        assert r.status_code == 409 and "still requested" in r.json()["detail"]
    with c.client(ADMIN_SECRET) as client:
        assert client.post(path.format("rot-b")).status_code == 201
        assert client.post(path.format("no-such")).status_code == 404
        assert client.post(path.format("bad id")).status_code == 422


def test_a_rotation_whose_new_token_was_revoked_gives_way_to_a_new_one(
    any_collector: RunningCollector,
) -> None:
    c = any_collector
    old = c.register(PROBE)
    request_rotation(c.engine, PROBE)
    first = post(c, old, range(1, 3))["new_token"]
    assert isinstance(first, str)
    from lomsong.collector.auth import revoke_token

    revoke_token(c.engine, int(str(token_row(c, first)["id"])))
    assert "new_token" not in post(c, old, range(3, 5))  # never offered again
    again = request_rotation(c.engine, PROBE)  # the dead one is closed, a new one begins
    assert again.id == 2
    second = post(c, old, range(5, 7))["new_token"]
    assert isinstance(second, str) and second != first
    post(c, second, range(7, 9))
    assert token_row(c, old)["revoked_at"] is not None


def test_a_rotation_that_fails_leaves_the_stored_batch_answered(
    collector: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lomsong.collector import token_rotation

    c = collector
    old = c.register(PROBE)
    request_rotation(c.engine, PROBE)

    def broken(*args: object, **kw: object) -> str | None:
        raise RuntimeError("a bug in the rotation")

    monkeypatch.setattr(token_rotation, "answer", broken)
    ack = post(c, old, range(1, 4))
    assert ack == {"accepted": 3, "duplicates": 0, "stored_through_seq": 3}
    monkeypatch.undo()
    assert isinstance(post(c, old, range(4, 5))["new_token"], str)


def test_the_authenticator_learns_of_rotations_within_its_cache_time(
    any_collector: RunningCollector,
) -> None:
    from lomsong.collector.auth import Authenticator

    c = any_collector
    old = c.register(PROBE)
    now = [1000.0]
    auth = Authenticator(c.engine, ADMIN_SECRET, cache_seconds=2.0, clock=lambda: now[0])
    first = auth.authenticate(old)
    assert first is not None and first.rotation_id is None
    rotation = request_rotation(c.engine, PROBE)
    now[0] += 1.0
    cached = auth.authenticate(old)
    assert cached is not None and cached.rotation_id is None  # within the cache time
    now[0] += 1.5
    seen = auth.authenticate(old)
    assert seen is not None and (seen.rotation_id, seen.rotation_token_id) == (rotation.id, None)
    assert seen.token_id == first.token_id and seen.probe_id == PROBE
    viewer = auth.authenticate(c.viewer("04"))
    assert viewer is not None and viewer.rotation_id is None
