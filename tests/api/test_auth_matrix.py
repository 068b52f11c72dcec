"""The auth matrix: every route of the broker against every kind of caller (issue 16).

Each row is a route as the app declares it; each cell is the status today's broker answers
that caller. The resources a route names belong to user A (a job, a file, a batch) or are
leased to worker A, and are made fresh for every cell, so a 404 is a real "not yours" and
a state change in one cell cannot decide another. The requests are well formed, so a cell
shows what the key decides, not validation. A route added to the app without a row here,
or a row whose route is gone, fails `test_the_matrix_names_every_route`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from garage.broker.errors import MethodNotAllowed
from garage.broker.routing import EndpointApp

from ..conftest import LiveBroker
from .conftest import ADMIN, CHAT, bearer, new_key, poll_body

Route = tuple[str, str]  # (method, path template), as in the route's `Endpoint`

# The callers, in the matrix's column order.
CALLERS = (
    "none",  # no Authorization header
    "bad_key",  # "Bearer !!!"
    "scheme",  # user A's valid key under another scheme than Bearer
    "revoked",  # a user key the admin revoked
    "user",  # user A, who owns the job, file and batch a path names
    "other_user",  # user B
    "worker",  # worker A, who holds the lease a worker path names
    "other_worker",  # worker B
    "admin",  # the broker's bootstrap admin key
)

# 503 on the OpenAI routes: past the key check, refused because no worker serves the model.
# 409 on the lease reports: past the key check, refused because the lease is worker A's.
# fmt: off
MATRIX: dict[Route, tuple[int, ...]] = {
    #                                                none bad  schm rev  user othr wrkr othr admin
    # A worker id is the first key's while its worker lives: the others' polls are 409.
    ("POST",   "/v1/worker/poll"):                   (401, 401, 401, 401, 403, 403, 200, 409, 409),
    ("POST",   "/v1/worker/jobs/{job_id}/report"):   (401, 401, 401, 401, 403, 403, 200, 409, 409),
    ("POST",   "/v1/worker/jobs/{job_id}/complete"): (401, 401, 401, 401, 403, 403, 200, 409, 409),
    ("POST",   "/v1/worker/jobs/{job_id}/fail"):     (401, 401, 401, 401, 403, 403, 200, 409, 409),
    ("POST",   "/v1/worker/heartbeat"):              (401, 401, 401, 401, 403, 403, 204, 409, 409),
    ("GET",    "/v1/workers"):                       (401, 401, 401, 401, 200, 200, 403, 403, 200),
    ("GET",    "/v1/queues"):                        (401, 401, 401, 401, 200, 200, 403, 403, 200),
    ("POST",   "/v1/jobs"):                          (401, 401, 401, 401, 201, 201, 403, 403, 201),
    ("GET",    "/v1/jobs"):                          (401, 401, 401, 401, 200, 200, 403, 403, 200),
    ("GET",    "/v1/jobs/{job_id}"):                 (401, 401, 401, 401, 200, 404, 403, 403, 200),
    ("POST",   "/v1/jobs/{job_id}/cancel"):          (401, 401, 401, 401, 200, 404, 403, 403, 200),
    ("GET",    "/v1/jobs/{job_id}/events"):          (401, 401, 401, 401, 200, 404, 403, 403, 200),
    ("POST",   "/v1/chat/completions"):              (401, 401, 401, 401, 503, 503, 403, 403, 503),
    ("POST",   "/v1/completions"):                   (401, 401, 401, 401, 503, 503, 403, 403, 503),
    ("POST",   "/v1/embeddings"):                    (401, 401, 401, 401, 503, 503, 403, 403, 503),
    ("POST",   "/v1/batches"):                       (401, 401, 401, 401, 200, 404, 403, 403, 200),
    ("GET",    "/v1/batches"):                       (401, 401, 401, 401, 200, 200, 403, 403, 200),
    ("GET",    "/v1/batches/{batch_id}"):            (401, 401, 401, 401, 200, 404, 403, 403, 200),
    ("POST",   "/v1/batches/{batch_id}/cancel"):     (401, 401, 401, 401, 200, 404, 403, 403, 200),
    ("POST",   "/v1/files"):                         (401, 401, 401, 401, 200, 200, 403, 403, 200),
    ("GET",    "/v1/files"):                         (401, 401, 401, 401, 200, 200, 403, 403, 200),
    ("GET",    "/v1/files/{file_id}"):               (401, 401, 401, 401, 200, 404, 403, 403, 200),
    ("GET",    "/v1/files/{file_id}/content"):       (401, 401, 401, 401, 200, 404, 403, 403, 200),
    ("DELETE", "/v1/files/{file_id}"):               (401, 401, 401, 401, 200, 404, 403, 403, 200),
    ("GET",    "/v1/models"):                        (401, 401, 401, 401, 200, 200, 403, 403, 200),
    ("GET",    "/v1/usage"):                         (401, 401, 401, 401, 200, 200, 403, 403, 200),
    ("GET",    "/v1/contributions"):                 (401, 401, 401, 401, 200, 200, 200, 200, 200),
    ("POST",   "/v1/admin/keys"):                    (401, 401, 401, 401, 403, 403, 403, 403, 201),
    ("GET",    "/v1/admin/keys"):                    (401, 401, 401, 401, 403, 403, 403, 403, 200),
    ("DELETE", "/v1/admin/keys/{key_id}"):           (401, 401, 401, 401, 403, 403, 403, 403, 204),
    ("POST",   "/v1/admin/keys/{key_id}/rotate"):    (401, 401, 401, 401, 403, 403, 403, 403, 200),
    ("PUT",    "/v1/admin/keys/{key_id}/limits"):    (401, 401, 401, 401, 403, 403, 403, 403, 200),
    ("GET",    "/healthz"):                          (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET",    "/readyz"):                           (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET",    "/metrics"):                          (401, 401, 401, 401, 403, 403, 403, 403, 200),
    ("GET",    "/"):                                 (200, 200, 200, 200, 200, 200, 200, 200, 200),
    ("GET",    "/openapi.json"):                     (200, 200, 200, 200, 200, 200, 200, 200, 200),
}
# fmt: on

UNSERVED = "nobody-serves-this"  # no worker polls for it, so the OpenAI routes answer at once
BATCH_LINE = json.dumps(
    {
        "custom_id": "r0",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    }
)
REPORTS = {  # the rest of a valid body for each lease report
    "report": {"text": "a"},
    "complete": {"result": {"ok": True}},
    "fail": {"error": {"message": "boom"}},
}


@dataclass
class Cell:
    """One request, well formed for its route: the path's ids and the body."""

    ids: dict[str, str] = field(default_factory=dict)
    json: Any = None
    files: dict[str, Any] | None = None
    data: dict[str, str] | None = None


@dataclass
class Scene:
    """The callers' headers, and user A's and worker A's resources, made on demand."""

    http: httpx.AsyncClient
    headers: dict[str, dict[str, str]]

    async def job(self, model: str = "m") -> str:
        reply = await self.http.post(
            "/v1/jobs", json={**CHAT, "model": model}, headers=self.headers["user"]
        )
        assert reply.status_code == 201, reply.text
        return reply.json()["id"]

    async def lease(self) -> dict[str, Any]:
        """A lease worker A holds, on a job of user A's (a model of its own, so the poll
        leases that job and nothing an earlier cell left queued)."""
        model = f"m-{uuid.uuid4().hex[:12]}"
        job_id = await self.job(model)
        body = poll_body(models=(model,), worker_id="rig-a")
        reply = await self.http.post("/v1/worker/poll", json=body, headers=self.headers["worker"])
        [lease] = reply.json()["leases"]
        assert lease["job_id"] == job_id
        return lease

    async def file(self) -> str:
        reply = await self.http.post(
            "/v1/files", headers=self.headers["user"],
            files={"file": ("in.jsonl", BATCH_LINE.encode())}, data={"purpose": "batch"},
        )  # fmt: skip
        assert reply.status_code == 200, reply.text
        return reply.json()["id"]

    async def batch(self) -> str:
        body = {"input_file_id": await self.file(), "endpoint": "/v1/chat/completions"}
        reply = await self.http.post("/v1/batches", json=body, headers=self.headers["user"])
        assert reply.status_code == 200, reply.text
        return reply.json()["id"]

    async def key_id(self) -> str:
        reply = await self.http.post(
            "/v1/admin/keys", json={"role": "user", "name": "doomed"}, headers=ADMIN
        )
        assert reply.status_code == 201, reply.text
        return reply.json()["id"]


async def prepare(scene: Scene, route: Route) -> Cell:
    """A fresh request for one cell of the route's row."""
    method, path = route
    match route:
        case ("POST", "/v1/worker/poll"):
            return Cell(json=poll_body(models=(UNSERVED,), worker_id="rig-poll"))
        case ("POST", "/v1/worker/heartbeat"):
            state = poll_body(models=(UNSERVED,), worker_id="rig-heartbeat")
            del state["wait_s"]
            return Cell(json=state)
        case ("POST", _) if path.startswith("/v1/worker/jobs/"):
            lease = await scene.lease()
            verb = path.rsplit("/", 1)[1]
            body = {"lease_token": lease["lease_token"], **REPORTS[verb]}
            return Cell({"job_id": lease["job_id"]}, json=body)
        case ("POST", "/v1/jobs"):
            return Cell(json=CHAT)
        case (_, "/v1/jobs/{job_id}" | "/v1/jobs/{job_id}/cancel" | "/v1/jobs/{job_id}/events"):
            return Cell({"job_id": await scene.job()})
        case ("POST", "/v1/chat/completions" | "/v1/completions"):
            prompt = (
                {"messages": [{"role": "user", "content": "hi"}]}
                if path == "/v1/chat/completions"
                else {"prompt": "hi"}
            )
            return Cell(json={"model": UNSERVED, **prompt})
        case ("POST", "/v1/embeddings"):
            return Cell(json={"model": UNSERVED, "input": "hi"})
        case ("POST", "/v1/batches"):
            file_id = await scene.file()
            return Cell(json={"input_file_id": file_id, "endpoint": "/v1/chat/completions"})
        case (_, "/v1/batches/{batch_id}" | "/v1/batches/{batch_id}/cancel"):
            return Cell({"batch_id": await scene.batch()})
        case ("POST", "/v1/files"):
            upload = {"file": ("in.jsonl", BATCH_LINE.encode())}
            return Cell(files=upload, data={"purpose": "batch"})
        case (_, "/v1/files/{file_id}" | "/v1/files/{file_id}/content"):
            return Cell({"file_id": await scene.file()})
        case ("POST", "/v1/admin/keys"):
            return Cell(json={"role": "user", "name": "made-in-a-cell"})
        case ("DELETE", "/v1/admin/keys/{key_id}") | ("POST", "/v1/admin/keys/{key_id}/rotate"):
            return Cell({"key_id": await scene.key_id()})
        case ("PUT", "/v1/admin/keys/{key_id}/limits"):
            return Cell({"key_id": await scene.key_id()}, json={"requests_per_minute": 60})
        case _:
            assert "{" not in path, f"no way yet to make the ids of {method} {path}"
            return Cell()


@pytest.fixture
async def scene(http: httpx.AsyncClient) -> Scene:
    user = await new_key(http, "user", "alice")
    created = await http.post(
        "/v1/admin/keys", json={"role": "user", "name": "revoked"}, headers=ADMIN
    )
    revoked = created.json()
    gone = await http.delete(f"/v1/admin/keys/{revoked['id']}", headers=ADMIN)
    assert gone.status_code == 204
    secret = user["Authorization"].removeprefix("Bearer ")
    headers = {
        "none": {},
        "bad_key": {"Authorization": "Bearer !!!"},
        "scheme": {"Authorization": f"Token {secret}"},
        "revoked": bearer(revoked["key"]),
        "user": user,
        "other_user": await new_key(http, "user", "bob"),
        "worker": await new_key(http, "worker", "rig-a"),
        "other_worker": await new_key(http, "worker", "rig-b"),
        "admin": ADMIN,
    }
    assert tuple(headers) == CALLERS
    return Scene(http, headers)


async def answer(scene: Scene, route: Route, caller: str) -> tuple[int, str | None]:
    """The status one caller gets on a fresh cell, and what is wrong with its error body."""
    method, path = route
    cell = await prepare(scene, route)
    async with scene.http.stream(
        method, path.format(**cell.ids), headers=scene.headers[caller], json=cell.json,
        files=cell.files, data=cell.data, timeout=10,
    ) as reply:  # fmt: skip
        if reply.status_code < 400:
            return reply.status_code, None  # an event stream would not end: leave it unread
        await reply.aread()
    try:
        error = reply.json()["error"]
        well_formed = all(isinstance(error[k], str) and error[k] for k in ("code", "message"))
    except (ValueError, KeyError, TypeError):
        well_formed = False
    return reply.status_code, None if well_formed else f"no error.code/message: {reply.text!r}"


@pytest.mark.parametrize("route", list(MATRIX), ids=" ".join)
async def test_each_caller_gets_the_status_in_the_matrix(scene: Scene, route: Route) -> None:
    answers = {caller: await answer(scene, route, caller) for caller in CALLERS}
    got = tuple(status for status, _ in answers.values())
    wrong = [
        f"{caller}: {status}, expected {expected}"
        for (caller, (status, _)), expected in zip(answers.items(), MATRIX[route], strict=True)
        if status != expected
    ]
    assert not wrong, f"{' '.join(route)} answered {got}:\n" + "\n".join(wrong)
    bodies = [f"{caller}: {problem}" for caller, (_, problem) in answers.items() if problem]
    assert not bodies, "\n".join(bodies)


def test_the_matrix_names_every_route(live_broker: LiveBroker) -> None:
    """Every route the app serves has a row, and every row is a route the app serves."""
    served: set[Route] = set()
    for route in live_broker.app.router.routes:  # type: ignore[attr-defined]
        if isinstance(route.app, EndpointApp):
            served.add((route.app.endpoint.method, route.app.endpoint.path))
        else:  # only the 405 answer for a path's other methods may stand beside them
            assert isinstance(route.app, MethodNotAllowed), (route.path, route.app)
    assert served - MATRIX.keys() == set(), "routes with no row in MATRIX"
    assert MATRIX.keys() - served == set(), "rows in MATRIX for routes the app no longer has"
