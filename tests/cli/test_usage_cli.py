"""`garage usage`, in process with click's runner, against the session's broker and a worker
thread on the fake Ollama: a plain table of the key's own usage, JSON, the filters, and an
admin's view per owner."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
from click.testing import CliRunner, Result

from garage.cli import main
from garage.contract import UsageReport

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


def test_the_table_and_json_of_ones_own_usage(network: Network) -> None:
    jobs = [run(network, "one two three"), run(network, "four")]
    prompt = sum(j["usage"]["prompt_tokens"] for j in jobs)
    completion = sum(j["usage"]["completion_tokens"] for j in jobs)
    assert (prompt, completion) == (4, 6)  # the fake Ollama's counts: words

    shown = garage(network, "usage")
    assert shown.exit_code == 0, shown.output
    lines = [line.split() for line in shown.stdout.splitlines()]
    day = today(network)
    first = (datetime.fromisoformat(day) - timedelta(days=29)).date().isoformat()
    assert lines == [
        [first, "to", day, "(UTC)"],
        ["DAY", "MODEL", "JOBS", "PROMPT", "COMPLETION", "TOTAL", "ESTIMATED"],
        [day, "m", "2", "4", "6", "10", "0"],
        ["TOTAL", "2", "4", "6", "10", "0"],
    ]

    as_json = garage(network, "usage", "--json", "--since", "2d", "--model", "m")
    assert as_json.exit_code == 0, as_json.output
    report = UsageReport.model_validate(json.loads(as_json.stdout))
    assert report.end.isoformat() == day and (report.end - report.start).days == 1
    assert [(str(r.day), r.model, r.jobs, r.prompt_tokens, r.completion_tokens)
            for r in report.data] == [(day, "m", 2, 4, 6)]  # fmt: skip

    other_model = json.loads(garage(network, "usage", "--json", "--model", "nope").stdout)
    assert other_model["data"] == [] and other_model["total"]["jobs"] == 0
    dated = garage(network, "usage", "--since", day, "--until", day)
    assert dated.stdout.splitlines()[0] == f"{day} to {day} (UTC)"


def test_an_admin_sees_usage_per_owner(network: Network) -> None:
    job = run(network, "hello there")
    shown = garage(network, "usage", key=ADMIN_KEY)
    assert shown.exit_code == 0, shown.output
    lines = [line.split() for line in shown.stdout.splitlines()]
    assert lines[1] == ["OWNER", "DAY", "MODEL", "JOBS", "PROMPT", "COMPLETION", "TOTAL",
                        "ESTIMATED"]  # fmt: skip
    owner = f"({job['owner']})"
    assert lines[2] == ["user", owner, today(network), "m", "1", "2", "3", "5", "0"]
    mine = garage(network, "usage", "--owner", job["owner"], "--json", key=ADMIN_KEY)
    assert json.loads(mine.stdout)["total"]["jobs"] == 1


def test_bad_input_exits_2(network: Network) -> None:
    assert garage(network, "usage", "--since", "last week").exit_code == 2
    backwards = garage(network, "usage", "--since", "2027-02-02", "--until", "2027-02-01")
    assert backwards.exit_code == 2 and "after end" in backwards.stderr
    assert garage(network, "usage", "--owner", "key_someone_else").exit_code == 4
