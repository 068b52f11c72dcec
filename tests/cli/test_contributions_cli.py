"""`garage contributions`, in process with click's runner, against the session's broker and
a worker thread on the fake Ollama: the leaderboard table with its TOTAL row, JSON, the
groups and filters, a worker key's own view, and bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
from click.testing import CliRunner, Result

from garage.cli import main
from garage.contract import ContributionReport

from ..conftest import ADMIN_KEY, Network


def garage(network: Network, *args: str, key: str | None = None) -> Result:
    env = {"GARAGE_URL": network.url, "GARAGE_API_KEY": key or network.user_key}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def run(network: Network, prompt: str) -> dict:
    reply = httpx.post(
        f"{network.url}/v1/jobs",
        json={"model": "m", "request": {"messages": [{"role": "user", "content": prompt}]}},
        headers={"Authorization": f"Bearer {network.user_key}", "Prefer": "wait=30"},
        timeout=40,
    )
    job = reply.json()
    assert job["status"] == "succeeded", job
    return job


def today(network: Network) -> str:
    return datetime.fromtimestamp(network.broker.clock() / 1000, UTC).date().isoformat()


def test_the_leaderboard_table_and_json(network: Network) -> None:
    jobs = [run(network, "one two three"), run(network, "four")]
    tokens = sum(j["usage"]["completion_tokens"] for j in jobs)
    assert tokens == 6  # the fake Ollama's counts: words of "echo: " + the prompt

    shown = garage(network, "contributions")
    assert shown.exit_code == 0, shown.output
    lines = [line.split() for line in shown.stdout.splitlines()]
    day = today(network)
    first = (datetime.fromisoformat(day) - timedelta(days=29)).date().isoformat()
    report = ContributionReport.model_validate(
        json.loads(garage(network, "contributions", "--json").stdout)
    )
    [row] = report.data
    rig = f"worker ({row.key})"  # the network's worker key is named after its role
    assert lines == [
        [first, "to", day, "(UTC);", "points", "=", "busy", "seconds", "x", "1", "+", "tokens",
         "/", "1000", "x", "1"],
        ["OWNER", "KEY", "JOBS", "BUSY", "TOKENS", "ESTIMATED", "POINTS"],
        ["-", *rig.split(), "2", "0:00:00", "6", "0", "0.0"],
        ["TOTAL", "2", "0:00:00", "6", "0", "0.0"],
    ]  # fmt: skip
    assert (row.jobs, row.busy_s, row.completion_tokens, row.points) == (2, 0.0, 6, 0.006)
    assert row.worker is None and row.owner is None and row.key_name == "worker"

    per_worker = garage(network, "contributions", "--since", "2d", "--by", "day,worker")
    assert per_worker.exit_code == 0, per_worker.output
    header, data = per_worker.stdout.splitlines()[1:3]
    assert header.split()[:2] == ["DAY", "WORKER"]
    assert data.split()[0] == day and data.split()[1].startswith("thread-rig-")
    dated = garage(network, "contributions", "--since", day, "--until", day, "--json")
    assert json.loads(dated.stdout)["start"] == day
    nobody = garage(network, "contributions", "--json", "--owner", "key_nobody")
    assert json.loads(nobody.stdout)["data"] == []


def test_a_worker_key_sees_its_own(network: Network) -> None:
    run(network, "hello")
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    other = httpx.post(
        f"{network.url}/v1/admin/keys", json={"role": "worker", "name": "idle"}, headers=admin
    ).json()
    own = garage(network, "contributions", "--json", key=other["key"])
    assert own.exit_code == 0, own.output
    assert json.loads(own.stdout)["data"] == []  # it served nothing
    refused = garage(network, "contributions", "--key", "key_someone_else", key=other["key"])
    assert refused.exit_code == 4


def test_bad_input_exits_2(network: Network) -> None:
    assert garage(network, "contributions", "--since", "last week").exit_code == 2
    unknown = garage(network, "contributions", "--by", "model")
    assert unknown.exit_code == 2 and "unknown group 'model'" in unknown.stderr
