"""`GET /v1/usage`: a user key reads its own totals, an admin key everyone's (or one
owner's), grouped by day, model and owner; bad input is a 400 that says why."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from garage.broker.store import Store

from ..support import ManualClock
from .conftest import ADMIN, CHAT, new_key, poll_body


async def key_id(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """The id of the key in `headers` (the owner of its jobs), read from a job it submits."""
    reply = await http.post("/v1/jobs", json={**CHAT, "model": "whoami"}, headers=headers)
    return reply.json()["owner"]


async def finish(
    http: httpx.AsyncClient,
    user: dict[str, str],
    worker: dict[str, str],
    *,
    model: str = "m",
    prompt: int = 1,
    completion: int = 1,
    estimated: bool = False,
) -> None:
    """A job of `user`'s, run by `worker` and completed with this usage."""
    job = (await http.post("/v1/jobs", json={**CHAT, "model": model}, headers=user)).json()
    poll = await http.post("/v1/worker/poll", json=poll_body(models=(model,)), headers=worker)
    [lease] = poll.json()["leases"]
    assert lease["job_id"] == job["id"]
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "estimated": estimated,
    }
    body = {"lease_token": lease["lease_token"], "result": {"ok": True}, "usage": usage}
    reply = await http.post(f"/v1/worker/jobs/{job['id']}/complete", json=body, headers=worker)
    assert reply.status_code == 200 and not reply.json()["cancelled"], reply.text


def today(clock: ManualClock) -> date:
    return datetime.fromtimestamp(clock.now_ms / 1000, UTC).date()


def counts(row: dict) -> tuple[int, int, int, int, int]:
    keys = ("jobs", "prompt_tokens", "completion_tokens", "total_tokens", "estimated_tokens")
    return tuple(row[k] for k in keys)  # type: ignore[return-value]


@pytest.fixture
async def two_users(http: httpx.AsyncClient, worker: dict[str, str], clock: ManualClock):
    alice = await new_key(http, "user", "alice")
    bob = await new_key(http, "user", "bob")
    await finish(http, alice, worker, prompt=10, completion=5)
    await finish(http, alice, worker, model="m2", prompt=3, completion=4, estimated=True)
    await finish(http, bob, worker, prompt=2, completion=2)
    clock.advance(86_400)  # the next UTC day
    await finish(http, alice, worker, prompt=1, completion=1)
    return alice, bob


async def test_a_user_reads_its_own_usage_by_day_and_model(
    http: httpx.AsyncClient, two_users, clock: ManualClock
) -> None:
    alice, bob = two_users
    reply = await http.get("/v1/usage", headers=alice)
    assert reply.status_code == 200, reply.text
    report = reply.json()
    second = today(clock)
    first = second - timedelta(days=1)
    assert (report["start"], report["end"]) == ((second - timedelta(days=29)).isoformat(),
                                                second.isoformat())  # fmt: skip
    assert report["group_by"] == ["day", "model"]
    rows = [(r["day"], r["model"], r["owner"], counts(r)) for r in report["data"]]
    assert rows == [
        (first.isoformat(), "m", None, (1, 10, 5, 15, 0)),
        (first.isoformat(), "m2", None, (1, 3, 4, 7, 7)),
        (second.isoformat(), "m", None, (1, 1, 1, 2, 0)),
    ]
    assert counts(report["total"]) == (3, 14, 10, 24, 7)

    by_model = (await http.get("/v1/usage", params={"group_by": "model"}, headers=alice)).json()
    assert [(r["model"], counts(r)) for r in by_model["data"]] == [
        ("m", (2, 11, 6, 17, 0)),
        ("m2", (1, 3, 4, 7, 7)),
    ]
    one_day = (
        await http.get("/v1/usage", params={"start": str(first), "end": str(first),
                                            "model": "m"}, headers=alice)
    ).json()  # fmt: skip
    assert [counts(r) for r in one_day["data"]] == [(1, 10, 5, 15, 0)]
    last_day = (await http.get("/v1/usage", params={"days": 1}, headers=alice)).json()
    assert last_day["start"] == last_day["end"] == second.isoformat()
    assert [r["day"] for r in last_day["data"]] == [second.isoformat()]

    bob_alone = (await http.get("/v1/usage", headers=bob)).json()
    assert counts(bob_alone["total"]) == (1, 2, 2, 4, 0)
    own = await http.get("/v1/usage", params={"owner": await key_id(http, bob)}, headers=bob)
    assert own.status_code == 200
    others = await http.get("/v1/usage", params={"owner": await key_id(http, alice)}, headers=bob)
    assert others.status_code == 403
    assert others.json()["error"]["param"] == "owner"


async def test_an_admin_reads_everyones_per_owner_or_one_owners(
    http: httpx.AsyncClient, two_users
) -> None:
    alice, bob = two_users
    alice_id, bob_id = await key_id(http, alice), await key_id(http, bob)
    report = (await http.get("/v1/usage", params={"group_by": "owner"}, headers=ADMIN)).json()
    rows = {r["owner"]: (r["owner_name"], counts(r)) for r in report["data"]}
    assert rows == {alice_id: ("alice", (3, 14, 10, 24, 7)), bob_id: ("bob", (1, 2, 2, 4, 0))}
    assert counts(report["total"]) == (4, 16, 12, 28, 7)

    default = (await http.get("/v1/usage", headers=ADMIN)).json()
    assert default["group_by"] == ["owner", "day", "model"]
    assert len(default["data"]) == 4

    only_bob = (await http.get("/v1/usage", params={"owner": bob_id}, headers=ADMIN)).json()
    assert {r["owner"] for r in only_bob["data"]} == {bob_id}
    assert counts(only_bob["total"]) == (1, 2, 2, 4, 0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2027-02-02", "end": "2027-02-01"}, "after end"),
        ({"start": "2026-01-01", "end": "2027-02-04"}, None),  # 400 days, both included
        ({"start": "2026-01-01", "end": "2027-02-05"}, "at most 400 days"),
        ({"start": "yesterday"}, "date"),
        ({"group_by": "day,week"}, "unknown group 'week'"),
        ({"group_by": "day,day"}, "named twice"),
        ({"start": "0001-01-01", "end": "0001-01-01"}, None),  # the first day there is
        ({"end": "0001-01-02"}, "give start"),
        ({"start": "2027-01-01", "days": "2"}, "not both"),
        ({"days": "0"}, "greater than or equal to 1"),
        ({"days": "401"}, "less than or equal to 400"),
        ({"color": "blue"}, "Extra inputs"),
    ],
)
async def test_bad_queries_are_400_saying_why(
    http: httpx.AsyncClient, user: dict[str, str], params: dict, message: str | None
) -> None:
    reply = await http.get("/v1/usage", params=params, headers=user)
    if message is None:
        assert reply.status_code == 200, reply.text
        return
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"]["message"]


async def test_a_worker_key_reads_no_usage(http: httpx.AsyncClient, worker) -> None:
    assert (await http.get("/v1/usage", headers=worker)).status_code == 403


async def test_a_stale_leases_report_charges_nothing_and_the_holders_cancel_report_does(
    http: httpx.AsyncClient,
    user: dict[str, str],
    worker: dict[str, str],
    store: Store,
    clock: ManualClock,
) -> None:
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    [old] = (await http.post("/v1/worker/poll", json=poll_body(), headers=worker)).json()["leases"]
    clock.advance(31)  # the lease runs out: the job goes back to its queue
    assert (await store.leases.reap()).requeued == 1
    poll = poll_body(worker_id="w2")
    [new] = (await http.post("/v1/worker/poll", json=poll, headers=worker)).json()["leases"]
    used = {"prompt_tokens": 50, "completion_tokens": 50, "total_tokens": 100}
    for verb, body in (
        ("complete", {"result": {"ok": True}}),
        ("fail", {"error": {"message": "x"}}),
    ):
        stale = await http.post(
            f"/v1/worker/jobs/{job['id']}/{verb}",
            json={"lease_token": old["lease_token"], "usage": used, **body},
            headers=worker,
        )
        assert stale.status_code == 409
    assert (await http.get("/v1/usage", headers=user)).json()["data"] == []

    await http.post(f"/v1/jobs/{job['id']}/cancel", headers=user)
    late = {"lease_token": new["lease_token"], "error": {"message": "stopped"}, "usage": used}
    reply = await http.post(f"/v1/worker/jobs/{job['id']}/fail", json=late, headers=worker)
    assert reply.status_code == 200 and reply.json()["cancelled"]
    again = await http.post(f"/v1/worker/jobs/{job['id']}/fail", json=late, headers=worker)
    assert again.status_code == 200
    [row] = (await http.get("/v1/usage", headers=user)).json()["data"]
    assert counts(row) == (1, 50, 50, 100, 0)
    assert (await http.get(f"/v1/jobs/{job['id']}", headers=user)).json()["usage"] == {
        **used,
        "estimated": False,
    }
