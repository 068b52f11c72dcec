"""`garage worker gpus` and `garage workers`, run in-process with click's runner."""

from __future__ import annotations

import json

import httpx
from click.testing import CliRunner

from garage.cli import main

from ..conftest import ADMIN_KEY, LiveBroker


def test_worker_gpus_without_a_gpu_reports_none_and_healthy() -> None:
    result = CliRunner().invoke(main, ["worker", "gpus", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"gpus": [], "health": {"state": "ok", "reasons": []}}
    human = CliRunner().invoke(main, ["worker", "gpus"])
    assert "no NVIDIA GPU found" in human.output and "health: ok" in human.output


def test_workers_prints_the_fleet(live_broker: LiveBroker, redis) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    key = httpx.post(
        f"{live_broker.url}/v1/admin/keys", json={"role": "worker", "name": "r"}, headers=admin
    ).json()["key"]
    httpx.post(
        f"{live_broker.url}/v1/worker/poll",
        json={
            "worker_id": "w1",
            "name": "garage-3090",
            "models": ["llama3"],
            "slots_free": 1,
            "slots_total": 2,
            "wait_s": 0,
            "health": {"state": "warn", "reasons": ["GPU 0 at 86°C"]},
            "gpus": [
                {
                    "index": 0,
                    "uuid": "GPU-1",
                    "name": "RTX 3090",
                    "temperature_c": 86,
                    "utilization_pct": 97,
                }
            ],
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    env = {"GARAGE_URL": live_broker.url, "GARAGE_API_KEY": ADMIN_KEY}
    table = CliRunner().invoke(main, ["workers"], env=env, terminal_width=200)
    assert table.exit_code == 0, table.output
    for text in ("garage-3090", "llama3", "1/2 busy", "warn", "GPU 0 at 86°C", "RTX 3090"):
        assert text in table.output
    as_json = json.loads(CliRunner().invoke(main, ["workers", "--json"], env=env).output)
    assert as_json["data"][0]["gpus"][0]["temperature_c"] == 86

    refused = CliRunner().invoke(main, ["workers"], env={**env, "GARAGE_API_KEY": "wrong"})
    assert refused.exit_code == 4 and "invalid API key" in refused.output
    down = CliRunner().invoke(main, ["workers"], env={**env, "GARAGE_URL": "http://127.0.0.1:9"})
    assert down.exit_code == 3 and "cannot reach the broker" in down.output


def test_worker_run_with_a_refused_key_says_so_and_exits_4(live_broker: LiveBroker) -> None:
    args = ["worker", "run", "--broker", live_broker.url, "--token", "gk-w-not-a-key"]
    result = CliRunner().invoke(main, [*args, "--backend", "demo"])
    assert result.exit_code == 4, result.output
    assert f"the broker at {live_broker.url} refused the worker key" in result.output
    assert "Traceback" not in result.output
