"""A user of the service under chaos: calls tried again while the broker answers 5xx or
not at all, event streams resumed where they broke, and native jobs read live."""

from __future__ import annotations

import json
import threading
import time
import traceback
from typing import Any

import httpx
from httpx_sse import connect_sse

__all__ = ["TERMINAL", "Api", "Streamer", "read_events"]

TERMINAL = ("done", "error")  # the events that end a job's stream


class Api:
    """A user's calls to a broker, tried again while it gives no answer or a 5xx (Redis is
    restarting), as a client of a replicated service would. Only idempotent calls go
    through `call`: GETs, and submits with an Idempotency-Key."""

    def __init__(self, url: str, key: str, *, patience_s: float = 60.0) -> None:
        self.url = url
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        self.patience_s = patience_s
        self.retries = 0  # calls sent again, and event streams resumed

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **options: Any) -> httpx.Response:
        deadline = time.monotonic() + self.patience_s
        while True:
            try:
                reply = self.http.request(method, path, **options)
                if reply.status_code < 500:
                    return reply
                problem = f"{reply.status_code} {reply.text[:300]}"
            except httpx.TransportError as exc:
                problem = repr(exc)
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path}: no answer in time: {problem}")
            self.retries += 1
            time.sleep(0.2)

    def get(self, path: str, **params: Any) -> Any:
        reply = self.call("GET", path, params=params)
        assert reply.status_code == 200, f"GET {path}: {reply.status_code} {reply.text}"
        return reply.json()


def read_events(api: Api, job_id: str, *, patience_s: float = 180.0) -> list[dict[str, Any]]:
    """A job's whole event stream over SSE, each event with its `id`, up to its `done` or
    `error`. A dropped connection, a 5xx or a stream that ends early is resumed from the
    last event read (`Last-Event-ID`)."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + patience_s
    while True:
        headers = {"Last-Event-ID": events[-1]["id"]} if events else {}
        problem = "the stream ended before the job did"
        try:
            with connect_sse(
                api.http, "GET", f"/v1/jobs/{job_id}/events", headers=headers
            ) as source:
                status = source.response.status_code
                if status >= 500:
                    problem = f"{status} {source.response.read()[:300]!r}"
                else:
                    assert status == 200, f"events of {job_id}: {status}"
                    for sse in source.iter_sse():
                        if not sse.data:  # a keep-alive comment, after an id was set
                            continue
                        events.append({**json.loads(sse.data), "id": sse.id})
                        if events[-1]["type"] in TERMINAL:
                            return events
        except httpx.TransportError as exc:
            problem = repr(exc)
        if time.monotonic() > deadline:
            raise AssertionError(f"events of {job_id}: not over in {patience_s} s: {problem}")
        api.retries += 1
        time.sleep(0.2)


class Streamer:
    """Submits native jobs through a broker while the chaos runs, one every `gap_s`, and
    reads each one's events live in a thread of its own."""

    def __init__(self, api: Api, model: str, prompts: list[str], *, gap_s: float = 2.0) -> None:
        self.api = api
        self.model = model
        self.prompts = prompts
        self.gap_s = gap_s
        self.jobs: dict[str, str] = {}  # job id -> prompt
        self.latest: str | None = None  # the job submitted last
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self._readers: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamer", daemon=True)

    def start(self) -> Streamer:
        self._thread.start()
        return self

    def halt(self) -> None:
        """Stops submitting."""
        self._stopping.set()

    def stop(self, timeout_s: float = 240) -> None:
        """Stops submitting and waits for every job read so far to end."""
        self._stopping.set()
        self._thread.join(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        for reader in self._readers:
            reader.join(timeout=max(0.0, deadline - time.monotonic()))
        assert not any(r.is_alive() for r in self._readers), "a stream reader did not end"
        assert not self.errors, "\n".join(self.errors)

    def _run(self) -> None:
        for i, prompt in enumerate(self.prompts):
            if self._stopping.is_set():
                return
            try:
                job_id = self._submit(i, prompt)
            except BaseException:
                self.errors.append(traceback.format_exc())
                return
            self.jobs[job_id] = prompt
            self.latest = job_id
            reader = threading.Thread(target=self._read, args=(job_id,), daemon=True)
            reader.start()
            self._readers.append(reader)
            self._stopping.wait(self.gap_s)

    def _submit(self, i: int, prompt: str) -> str:
        job = {
            "model": self.model,
            "request": {"messages": [{"role": "user", "content": prompt}]},
            "wait_for_worker": True,
            # Longer than a batch job and aimed at, so it may lose more leases than the
            # default 3 attempts allow; its stream is what is checked, so it gets more.
            "max_attempts": 10,
        }
        # The same key if sent again, so a submit whose answer was lost is one job.
        headers = {"Idempotency-Key": f"chaos-stream-{i}"}
        reply = self.api.call("POST", "/v1/jobs", json=job, headers=headers)
        assert reply.status_code in (200, 201), f"submit: {reply.status_code} {reply.text}"
        return reply.json()["id"]

    def _read(self, job_id: str) -> None:
        try:
            self.events[job_id] = read_events(self.api, job_id)
        except BaseException:
            self.errors.append(f"reading {job_id}:\n{traceback.format_exc()}")
