"""`GET /v1/contributions`: any user key reads the leaderboard of worker keys and their
owners, a worker key its own; points by the broker's rule; a worker key's owner is given
when the key is created; bad input is a 400 that says why."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from garage.broker.app import build_app
from garage.broker.settings import BrokerSettings
from garage.broker.store import Store

from ..support import ManualClock
from .conftest import ADMIN, CHAT, bearer, poll_body


async def create_key(http: httpx.AsyncClient, role: str, name: str, **extra: str) -> dict:
    reply = await http.post(
        "/v1/admin/keys", json={"role": role, "name": name, **extra}, headers=ADMIN
    )
    assert reply.status_code == 201, reply.text
    return reply.json()


async def serve(
    http: httpx.AsyncClient,
    clock: ManualClock,
    rig: dict,
    *,
    worker_id: str = "w1",
    run_s: float = 0,
    completion: int = 0,
    estimated: bool = False,
) -> None:
    """A job run for `run_s` seconds by worker `worker_id` under worker key `rig`, and
    completed with `completion` tokens."""
    user = bearer((await create_key(http, "user", "someone"))["key"])
    job = (await http.post("/v1/jobs", json=CHAT, headers=user)).json()
    worker = bearer(rig["key"])
    poll = await http.post("/v1/worker/poll", json=poll_body(worker_id=worker_id), headers=worker)
    [lease] = poll.json()["leases"]
    assert lease["job_id"] == job["id"]
    clock.advance(run_s)
    usage = {"prompt_tokens": 3, "completion_tokens": completion,
             "total_tokens": 3 + completion, "estimated": estimated}  # fmt: skip
    body = {"lease_token": lease["lease_token"], "result": {"ok": True}, "usage": usage}
    reply = await http.post(f"/v1/worker/jobs/{job['id']}/complete", json=body, headers=worker)
    assert reply.status_code == 200 and not reply.json()["cancelled"], reply.text


def today(clock: ManualClock) -> date:
    return datetime.fromtimestamp(clock.now_ms / 1000, UTC).date()


def measures(row: dict) -> tuple:
    return tuple(row[k] for k in ("jobs", "busy_s", "completion_tokens", "estimated_tokens",
                                  "points"))  # fmt: skip


@pytest.fixture
async def pool(http: httpx.AsyncClient, clock: ManualClock) -> dict[str, dict]:
    """Olga owns two rigs, Pat one; one rig has no owner. Yesterday and today's work."""
    olga = await create_key(http, "user", "olga")
    pat = await create_key(http, "user", "pat")
    rigs = {
        "olga": olga,
        "pat": pat,
        "o1": await create_key(http, "worker", "olga-1", owner=olga["id"]),
        "o2": await create_key(http, "worker", "olga-2", owner=olga["id"]),
        "p1": await create_key(http, "worker", "pat-1", owner=pat["id"]),
        "lone": await create_key(http, "worker", "lone"),
    }
    await serve(http, clock, rigs["o1"], run_s=100, completion=2_000)  # 100 + 2 = 102
    await serve(http, clock, rigs["o2"], worker_id="w2", run_s=30.5, completion=500,
                estimated=True)  # 30.5 + 0.5 = 31  # fmt: skip
    await serve(http, clock, rigs["p1"], run_s=120)  # 120
    clock.advance(86_400)  # the next UTC day
    await serve(http, clock, rigs["o1"], worker_id="w3", run_s=10, completion=1_000)  # 11
    await serve(http, clock, rigs["lone"], run_s=1.25, completion=250)  # 1.5
    return rigs


async def test_any_user_reads_the_leaderboard_per_owner_and_key(
    http: httpx.AsyncClient, pool: dict[str, dict], clock: ManualClock
) -> None:
    reader = bearer((await create_key(http, "user", "reader"))["key"])
    reply = await http.get("/v1/contributions", headers=reader)
    assert reply.status_code == 200, reply.text
    report = reply.json()
    second = today(clock)
    assert (report["start"], report["end"]) == (str(second - timedelta(days=29)), str(second))
    assert report["group_by"] == ["owner", "key"]
    assert report["rule"] == {"points_per_busy_s": 1.0, "points_per_1k_tokens": 1.0}
    rows = [(r["owner_name"], r["key_name"], r["key"], measures(r)) for r in report["data"]]
    assert rows == [  # highest points first
        ("pat", "pat-1", pool["p1"]["id"], (1, 120.0, 0, 0, 120.0)),
        ("olga", "olga-1", pool["o1"]["id"], (2, 110.0, 3_000, 0, 113.0)),
        ("olga", "olga-2", pool["o2"]["id"], (1, 30.5, 500, 500, 31.0)),
        (None, "lone", pool["lone"]["id"], (1, 1.25, 250, 0, 1.5)),
    ]
    assert [r["owner"] for r in report["data"]] == [
        pool["pat"]["id"], pool["olga"]["id"], pool["olga"]["id"], None
    ]  # fmt: skip
    assert measures(report["total"]) == (5, 261.75, 3_750, 500, 265.5)

    by_owner = (await http.get("/v1/contributions", params={"group_by": "owner"},
                               headers=reader)).json()  # fmt: skip
    assert [(r["owner_name"], r["key"], measures(r)) for r in by_owner["data"]] == [
        ("olga", None, (3, 140.5, 3_500, 500, 144.0)),
        ("pat", None, (1, 120.0, 0, 0, 120.0)),
        (None, None, (1, 1.25, 250, 0, 1.5)),
    ]
    olgas = (await http.get("/v1/contributions", params={"owner": pool["olga"]["id"]},
                            headers=reader)).json()  # fmt: skip
    assert [r["key_name"] for r in olgas["data"]] == ["olga-1", "olga-2"]
    per_day = (await http.get("/v1/contributions", params={"group_by": "day,worker",
                              "key": pool["o1"]["id"]}, headers=reader)).json()  # fmt: skip
    assert [(r["day"], r["worker"], measures(r)) for r in per_day["data"]] == [
        (str(second - timedelta(days=1)), "w1", (1, 100.0, 2_000, 0, 102.0)),
        (str(second), "w3", (1, 10.0, 1_000, 0, 11.0)),
    ]
    only_today = (await http.get("/v1/contributions", params={"days": 1},
                                 headers=reader)).json()  # fmt: skip
    assert [r["key_name"] for r in only_today["data"]] == ["olga-1", "lone"]
    assert (await http.get("/v1/contributions", headers=ADMIN)).json()["data"] == report["data"]


async def test_a_worker_key_reads_only_its_own(
    http: httpx.AsyncClient, pool: dict[str, dict]
) -> None:
    rig = bearer(pool["o2"]["key"])
    report = (await http.get("/v1/contributions", headers=rig)).json()
    assert [(r["key"], r["owner_name"], r["key_name"]) for r in report["data"]] == [
        (pool["o2"]["id"], "olga", "olga-2")
    ]
    assert measures(report["total"]) == (1, 30.5, 500, 500, 31.0)
    own = await http.get("/v1/contributions", params={"key": pool["o2"]["id"]}, headers=rig)
    assert own.status_code == 200
    other = await http.get("/v1/contributions", params={"key": pool["o1"]["id"]}, headers=rig)
    assert other.status_code == 403 and other.json()["error"]["param"] == "key"


async def test_a_revoked_rig_keeps_its_name_and_owner(
    http: httpx.AsyncClient, pool: dict[str, dict]
) -> None:
    gone = await http.delete(f"/v1/admin/keys/{pool['p1']['id']}", headers=ADMIN)
    assert gone.status_code == 204
    report = (await http.get("/v1/contributions", headers=ADMIN)).json()
    [row] = [r for r in report["data"] if r["key"] == pool["p1"]["id"]]
    assert (row["key_name"], row["owner"], row["owner_name"]) == (
        "pat-1", pool["pat"]["id"], "pat"
    )  # fmt: skip


async def test_the_brokers_rates_decide_the_points(
    http: httpx.AsyncClient, pool: dict[str, dict], store: Store, clock: ManualClock
) -> None:
    """Another broker on the same store, with its own rates: the same measures, its points."""
    settings = BrokerSettings(
        admin_key="other-admin", points_per_busy_s=0.5, points_per_1k_tokens=10
    )
    app = build_app(settings, store=store, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://broker") as other:
        reply = await other.get("/v1/contributions", headers=bearer("other-admin"))
    report = reply.json()
    assert report["rule"] == {"points_per_busy_s": 0.5, "points_per_1k_tokens": 10.0}
    points = {r["key_name"]: r["points"] for r in report["data"]}
    assert points == {"olga-1": 0.5 * 110 + 10 * 3, "olga-2": 0.5 * 30.5 + 10 * 0.5,
                      "pat-1": 0.5 * 120, "lone": 0.5 * 1.25 + 10 * 0.25}  # fmt: skip
    assert list(points) == ["olga-1", "pat-1", "olga-2", "lone"]
    assert report["total"]["points"] == 0.5 * 261.75 + 10 * 3.75


async def test_a_worker_keys_owner_is_a_user_key_given_at_creation(
    http: httpx.AsyncClient,
) -> None:
    olga = await create_key(http, "user", "olga")
    rig = await create_key(http, "worker", "olga-1", owner=olga["id"])
    assert rig["owner"] == olga["id"]
    listed = (await http.get("/v1/admin/keys", headers=ADMIN)).json()
    assert {k["name"]: k["owner"] for k in listed} == {"olga": None, "olga-1": olga["id"]}

    for body, message in [
        ({"role": "user", "name": "u", "owner": olga["id"]}, "only a worker key"),
        ({"role": "worker", "name": "w", "owner": "key_nobody"}, "no user key"),
        ({"role": "worker", "name": "w", "owner": rig["id"]}, "no user key"),
    ]:
        reply = await http.post("/v1/admin/keys", json=body, headers=ADMIN)
        assert reply.status_code == 400, reply.text
        assert message in reply.json()["error"]["message"]
        assert reply.json()["error"]["param"] == "owner"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2027-02-02", "end": "2027-02-01"}, "after end"),
        ({"start": "2026-01-01", "end": "2027-02-05"}, "at most 400 days"),
        ({"group_by": "key,model"}, "unknown group 'model'"),
        ({"group_by": "key,key"}, "named twice"),
        ({"start": "2027-01-01", "days": "2"}, "not both"),
        ({"key": ""}, "at least 1 character"),
        ({"color": "blue"}, "Extra inputs"),
    ],
)
async def test_bad_queries_are_400_saying_why(
    http: httpx.AsyncClient, user: dict[str, str], params: dict, message: str
) -> None:
    reply = await http.get("/v1/contributions", params=params, headers=user)
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"]["message"]
