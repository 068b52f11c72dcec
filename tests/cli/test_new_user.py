"""What a new user meets (issue 15): batches for a model nobody serves, Ctrl-C, batch ids,
prompts from stdin, progress in a log, colour, help. Ctrl-C is a real SIGINT sent to the
installed command in a subprocess; the rest runs in process with click's runner. All
against the session's broker, with a worker thread on a fake Ollama."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import httpx
import openai
import pytest
from click.testing import CliRunner

from garage.cli import main
from garage.client import AsyncClient, Client, Unavailable

from ..conftest import Network
from ..support import wait_until
from .test_job_cli import garage, jobs_on_broker

GARAGE = str(Path(sys.executable).with_name("garage"))  # the installed console script


def broker_json(network: Network, path: str) -> dict:
    headers = {"Authorization": f"Bearer {network.user_key}"}
    reply = httpx.get(f"{network.url}{path}", headers=headers)
    reply.raise_for_status()
    return reply.json()


def start(network: Network, *args: str, stdin: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "GARAGE_URL": network.url, "GARAGE_API_KEY": network.user_key}
    return subprocess.Popen(
        [GARAGE, *args],
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_stderr_until(process: subprocess.Popen[str], needle: str, timeout_s: float = 20) -> str:
    """Lines of the process's stderr up to and including the first holding `needle`."""
    assert process.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never came on stderr; saw {seen!r}")


# a batch for a model nobody serves


@pytest.mark.parametrize("lane", ["batch", "interactive"])
def test_a_batch_for_an_unserved_model_exits_6_at_once_and_queues_nothing(
    network: Network, tmp_path: Path, lane: str
) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(["one", "two"]))
    started = time.monotonic()
    result = garage(network, "job", "submit", "-m", "llama3", "-i", str(prompts), "--lane", lane)
    assert time.monotonic() - started < 10
    assert result.exit_code == 6
    assert "no live worker serves model 'llama3'" in result.stderr
    assert "--wait-for-worker" in result.stderr
    assert jobs_on_broker(network) == []
    assert broker_json(network, "/v1/batches")["data"] == []


def test_told_to_wait_a_batch_queues_and_says_what_it_waits_for(
    network: Network, tmp_path: Path
) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(["one", "two"]))
    queued = garage(
        network, "job", "submit", "-m", "llama3", "-i", str(prompts), "--no-wait",
        "--wait-for-worker",
    )  # fmt: skip
    assert queued.exit_code == 0, queued.output
    [batch_id] = queued.stdout.split()
    status = garage(network, "batch", "status", batch_id)
    assert status.exit_code == 0
    assert status.stdout.startswith(f"{batch_id}  in_progress  0 completed, 0 failed of 2")
    assert "waits: no live worker serves model 'llama3'" in status.stdout
    cancelled = garage(network, "batch", "cancel", batch_id)
    assert cancelled.exit_code == 0 and cancelled.stdout.strip() == f"{batch_id}  cancelled"
    assert {job["status"] for job in jobs_on_broker(network)} == {"cancelled"}


def test_client_map_and_run_batch_raise_unavailable_before_queueing(network: Network) -> None:
    with Client(network.url, network.user_key) as client:
        with pytest.raises(Unavailable) as refused:
            client.map("llama3", ["one", "two"], progress=False)
        assert refused.value.code == "model_not_served"
        assert "wait_for_worker=True" in refused.value.message
        with pytest.raises(Unavailable):
            client.run_batch("llama3", ["one"])
        assert client.list().data == [] and client.batches().data == []
        waited = client.run_batch("llama3", ["one"], wait_for_worker=True, timeout_s=0.5)
        assert waited[0]["error"]["code"] == "unfinished"
        [batch] = client.batches().data
        assert batch.waiting_reason is not None and "'llama3'" in batch.waiting_reason
        client.cancel_batch(batch.id)


def test_the_batch_api_shows_why_a_batch_waits(network: Network) -> None:
    sdk = openai.OpenAI(base_url=f"{network.url}/v1", api_key=network.user_key, max_retries=0)
    line = {
        "custom_id": "a",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "llama3", "messages": [{"role": "user", "content": "hi"}]},
    }
    uploaded = sdk.files.create(file=("in.jsonl", json.dumps(line).encode()), purpose="batch")
    created = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert created.status == "in_progress"
    read = sdk.batches.retrieve(created.id)
    assert read.model_extra is not None
    assert read.model_extra["waiting_reason"] == (
        "no live worker serves model 'llama3'; its requests wait for one until the batch expires"
    )
    served = dict(line, body={**line["body"], "model": "m"})
    uploaded = sdk.files.create(file=("in.jsonl", json.dumps(served).encode()), purpose="batch")
    fine = sdk.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert (fine.model_extra or {}).get("waiting_reason") is None
    sdk.batches.cancel(created.id)


# Ctrl-C


def test_ctrl_c_during_chat_cancels_the_job_and_names_it(network: Network) -> None:
    network.backend.configure(tokens_per_s=5)
    chat = start(network, "chat", "-m", "m", " ".join(["word"] * 200))
    assert chat.stdout is not None
    assert chat.stdout.read(4) == "echo"  # the answer streams
    chat.send_signal(signal.SIGINT)
    _, stderr = chat.communicate(timeout=20)
    assert chat.returncode == 130, stderr
    job_id = stderr.split("cancelling job ", 1)[1].split()[0]
    assert "error: interrupted" in stderr
    assert broker_json(network, f"/v1/jobs/{job_id}")["status"] == "cancelled"


def test_ctrl_c_during_a_batch_cancels_it_and_names_it(network: Network, tmp_path: Path) -> None:
    network.backend.configure(hang=True)
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(["one", "two", "three"]))
    submit = start(network, "job", "submit", "-m", "m", "-i", str(prompts))
    said = read_stderr_until(submit, "batch batch_")
    batch_id = said.split("batch ", 1)[1].split(":")[0]
    submit.send_signal(signal.SIGINT)
    stdout, stderr = submit.communicate(timeout=20)
    assert submit.returncode == 130, stderr
    assert f"cancelled batch {batch_id}" in stderr and stdout == ""
    wait_until(
        lambda: broker_json(network, f"/v1/batches/{batch_id}")["status"] == "cancelled",
        timeout_s=10,
        what="the batch to be cancelled",
    )


async def test_cancelling_map_cancels_the_jobs_it_queued(network: Network) -> None:
    network.backend.configure(hang=True)
    async with AsyncClient(network.url, network.user_key) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.5):
                await client.map("m", ["one", "two", "three"], progress=False)
        jobs = (await client.list()).data
    assert len(jobs) == 3 and {job.status.value for job in jobs} == {"cancelled"}


# batch ids


def test_garage_batch_list_status_result_cancel(network: Network, tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(["alpha", "beta"]))
    [batch_id] = garage(
        network, "job", "submit", "-m", "m", "-i", str(prompts), "--no-wait"
    ).stdout.split()
    out = tmp_path / "out.jsonl"
    result = garage(network, "batch", "result", batch_id, "-o", str(out), "--timeout", "20")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == ["item-0", "item-1"]
    assert [line["response"]["body"]["choices"][0]["message"]["content"] for line in lines] == [
        "echo: alpha",
        "echo: beta",
    ]
    env = {"GARAGE_URL": network.url, "GARAGE_API_KEY": network.user_key, "COLUMNS": "80"}
    listing = CliRunner().invoke(main, ["batch", "list"], env=env, catch_exceptions=False)
    assert batch_id in listing.output and "completed" in listing.output
    assert garage(network, "batch", "status", batch_id).stdout.startswith(
        f"{batch_id}  completed  2 completed, 0 failed of 2"
    )
    ended = garage(network, "batch", "cancel", batch_id)
    assert ended.exit_code == 0 and ended.stdout.strip() == f"{batch_id}  completed"
    for command in ("status", "result", "cancel"):
        wrong_door = garage(network, "job", command, batch_id)
        assert wrong_door.exit_code == 2
        assert (
            f"{batch_id} is a batch: see `garage batch {command} {batch_id}`" in wrong_door.stderr
        )
    missing = garage(network, "batch", "status", "batch_nope")
    assert missing.exit_code == 5 and "no batch 'batch_nope'" in missing.stderr


# prompts from stdin and files


def test_chat_reads_the_prompt_from_stdin_or_a_file(network: Network, tmp_path: Path) -> None:
    long_prompt = "many words " * 2_000  # past what anyone types as an argument
    env = {"GARAGE_URL": network.url, "GARAGE_API_KEY": network.user_key}
    runner = CliRunner()
    piped = runner.invoke(main, ["chat", "-m", "m"], input=long_prompt, env=env)
    assert piped.exit_code == 0, piped.output
    assert piped.stdout == f"echo: {long_prompt.strip()}\n"
    dashed = runner.invoke(main, ["chat", "-m", "m", "-"], input="from a pipe", env=env)
    assert dashed.stdout == "echo: from a pipe\n"
    question = tmp_path / "q.txt"
    question.write_text("from a file")
    from_file = runner.invoke(main, ["chat", "-m", "m", "-f", str(question)], env=env)
    assert from_file.stdout == "echo: from a file\n"
    empty = runner.invoke(main, ["chat", "-m", "m"], input="  \n", env=env)
    assert empty.exit_code == 2 and "the prompt is empty" in empty.stderr
    both = runner.invoke(main, ["chat", "-m", "m", "-f", str(question), "hi"], env=env)
    assert both.exit_code == 2 and "not both" in both.stderr
    assert len(jobs_on_broker(network)) == 3  # the two refused sent nothing


# output for logs and terminals


def test_progress_in_a_log_is_lines_not_a_bar(network: Network, tmp_path: Path) -> None:
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps(["a", "b", "c"]))
    log = tmp_path / "log.txt"
    env = {**os.environ, "GARAGE_URL": network.url, "GARAGE_API_KEY": network.user_key}
    with log.open("w") as stderr:
        done = subprocess.run(
            [GARAGE, "job", "submit", "-m", "m", "-i", str(prompts)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            timeout=60,
        )
    assert done.returncode == 0
    text = log.read_text()
    assert "\r" not in text
    assert "batch: 3/3 req\n" in text and "3 succeeded, 0 failed\n" in text


def test_errors_are_red_on_a_terminal_unless_no_color(network: Network) -> None:
    env = {"GARAGE_URL": network.url, "GARAGE_API_KEY": network.user_key}
    runner = CliRunner()
    coloured = runner.invoke(main, ["job", "status", "job_nope"], env=env, color=True)
    assert coloured.stderr.startswith(click.style("error:", fg="red", bold=True))
    plain = runner.invoke(
        main, ["job", "status", "job_nope"], env={**env, "NO_COLOR": "1"}, color=True
    )
    assert plain.stderr.startswith("error: no job 'job_nope'")
    piped = runner.invoke(main, ["job", "status", "job_nope"], env=env)  # not a terminal
    assert piped.stderr.startswith("error: no job")


# help


def test_every_command_has_an_example_and_the_basics_work() -> None:
    def leaves(command: click.Command, path: tuple[str, ...]) -> list[tuple[str, ...]]:
        if isinstance(command, click.Group):
            return [p for name, sub in command.commands.items() for p in leaves(sub, (*path, name))]
        return [path]

    runner = CliRunner()
    for path in leaves(main, ()):
        shown = runner.invoke(main, [*path, "--help"])
        assert shown.exit_code == 0 and "Example" in shown.stdout, path
    version = runner.invoke(main, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("garage, version ")
    script = runner.invoke(main, ["completion", "bash"])
    assert script.exit_code == 0 and "_GARAGE_COMPLETE=bash_complete" in script.stdout
    completed = subprocess.run(
        [GARAGE],
        env={
            **os.environ,
            "COMP_WORDS": "garage ba",
            "COMP_CWORD": "1",
            "_GARAGE_COMPLETE": "bash_complete",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert completed.stdout.split() == ["plain,batch"]
