"""`garage job submit|status|result|cancel|list`, `garage chat` and `garage models`, in
process with click's runner, against the session's broker and a worker thread."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from garage.cli import main

from ..conftest import Network

GOOD_LINE = (
    json.dumps(
        {"custom_id": "a", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user"}]}}
    )
    + "\n"
)


def garage(network: Network, *args: str) -> Result:
    env = {"GARAGE_URL": network.url, "GARAGE_API_KEY": network.user_key}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def jobs_on_broker(network: Network) -> list[dict]:
    return json.loads(garage(network, "job", "list", "--json").stdout)["data"]


def test_submit_a_json_array_of_prompts(network: Network, tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text(json.dumps(["alpha", "beta gamma", "delta"]))
    out = tmp_path / "results.jsonl"
    result = garage(network, "job", "submit", "-m", "m", "--input", str(data), "-o", str(out))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == ["item-0", "item-1", "item-2"]
    texts = [line["response"]["body"]["choices"][0]["message"]["content"] for line in lines]
    assert texts == ["echo: alpha", "echo: beta gamma", "echo: delta"]
    assert all(line["response"]["status_code"] == 200 and line["error"] is None for line in lines)
    assert all(line["id"].startswith("batch_req_job_") for line in lines)
    assert "3 succeeded, 0 failed" in result.output
    assert {j["lane"] for j in jobs_on_broker(network)} == {"batch"}


def test_submit_chat_requests_and_openai_batch_jsonl(network: Network, tmp_path: Path) -> None:
    chats = tmp_path / "chats.json"
    chats.write_text(json.dumps([{"messages": [{"role": "user", "content": "hi"}]}]))
    result = garage(network, "job", "submit", "-m", "m", "-i", str(chats))
    assert result.exit_code == 0
    first = json.loads(result.stdout.splitlines()[0])
    assert first["response"]["body"]["choices"][0]["message"]["content"] == "echo: hi"

    batch = tmp_path / "batch.jsonl"
    batch.write_text(
        "\n".join(
            json.dumps(line)
            for line in [
                {
                    "custom_id": "c1",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": "m", "messages": [{"role": "user", "content": "one"}]},
                },
                {
                    "custom_id": "e1",
                    "method": "POST",
                    "url": "/v1/embeddings",
                    "body": {"model": "m", "input": "vec"},
                },
                {
                    "custom_id": "p1",
                    "method": "POST",
                    "url": "/v1/completions",
                    "body": {"prompt": "two"},
                },
            ]
        )
        + "\n"
    )
    result = garage(network, "job", "submit", "-m", "m", "-i", str(batch), "--lane", "interactive")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["custom_id"] for line in lines] == ["c1", "e1", "p1"]
    assert lines[1]["response"]["body"]["object"] == "list"
    assert lines[2]["response"]["body"]["choices"][0]["text"] == "echo: two"


def test_failed_items_are_written_and_exit_1(network: Network, tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    image = {"type": "image_url", "image_url": {"url": "http://x/y.png"}}
    data.write_text(json.dumps(["fine", {"messages": [{"role": "user", "content": [image]}]}]))
    result = garage(network, "job", "submit", "-m", "m", "-i", str(data))
    assert result.exit_code == 1
    ok, bad = (json.loads(line) for line in result.stdout.splitlines())
    assert ok["error"] is None and ok["response"]["status_code"] == 200
    assert bad["response"]["status_code"] == 400
    assert bad["response"]["body"]["error"]["type"] == "backend_rejected"
    assert "1 succeeded, 1 failed" in result.output


@pytest.mark.parametrize(
    ("content", "name", "says"),
    [
        ('["a", "b"', "data.json", "data.json line 1 column 10: not valid JSON"),
        ('["a", 5]', "data.json", "data.json item 1: expected a prompt"),
        ('[{"prompt": 1}]', "data.json", "data.json item 0: request.prompt: must be"),
        ("[]", "data.json", "non-empty JSON array"),
        ("", "data.json", "the file is empty"),
        (
            GOOD_LINE + '{"custom_id": "b", "url": "/v1/images", "body": {}}\n',
            "b.jsonl",
            "b.jsonl line 2: 'url' must be one of",
        ),
        (
            GOOD_LINE + "{not json}\n",
            "b.jsonl",
            "b.jsonl line 2: not valid JSON at column 2",
        ),
        (
            GOOD_LINE + GOOD_LINE,
            "b.jsonl",
            "b.jsonl line 2: custom_id 'a' already used on line 1",
        ),
        (
            '{"custom_id": "a", "url": "/v1/chat/completions",'
            ' "body": {"model": "other", "messages": []}}\n',
            "b.jsonl",
            "b.jsonl line 1: body.model 'other' differs from 'm'",
        ),
        (
            GOOD_LINE.replace("/v1/chat/completions", "/v1/completions"),
            "b.jsonl",
            "b.jsonl line 1: a completion request needs a 'prompt' field",
        ),
    ],
)
def test_malformed_input_names_the_place_and_submits_nothing(
    network: Network, tmp_path: Path, content: str, name: str, says: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    result = garage(network, "job", "submit", "-m", "m", "-i", str(path))
    assert result.exit_code == 2
    assert says in result.output
    assert jobs_on_broker(network) == []


def test_no_wait_then_status_result_list_cancel(network: Network, tmp_path: Path) -> None:
    data = tmp_path / "data.json"
    data.write_text(json.dumps(["quick"]))
    batch = garage(network, "job", "submit", "-m", "m", "-i", str(data), "--no-wait")
    assert batch.exit_code == 0 and batch.stdout.startswith("batch_")
    submitted = garage(
        network, "job", "submit", "-m", "m", "-i", str(data), "--no-wait", "--lane", "interactive"
    )
    assert submitted.exit_code == 0
    [job_id] = submitted.stdout.split()
    result = garage(network, "job", "result", job_id, "--timeout", "10")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["choices"][0]["message"]["content"] == "echo: quick"
    status = garage(network, "job", "status", job_id)
    assert status.output.startswith(f"{job_id}  succeeded  attempt 1")
    env = {"GARAGE_URL": network.url, "GARAGE_API_KEY": network.user_key, "COLUMNS": "80"}
    listing = CliRunner().invoke(main, ["job", "list"], env=env, catch_exceptions=False)
    assert job_id in listing.output  # whole, on an 80-column terminal, so it can be copied

    network.backend.configure(hang=True)
    hung = garage(
        network, "job", "submit", "-m", "m", "-i", str(data), "--no-wait", "--lane", "interactive"
    )
    [hung_id] = hung.stdout.split()
    cancelled = garage(network, "job", "cancel", hung_id)
    assert cancelled.exit_code == 0 and cancelled.output.strip() == f"{hung_id}  cancelled"
    gone = garage(network, "job", "result", hung_id)
    assert gone.exit_code == 1 and "cancelled" in gone.output
    missing = garage(network, "job", "status", "job_nope")
    assert missing.exit_code == 5 and "no job" in missing.output


def test_chat_streams_and_models_lists(network: Network) -> None:
    chat = garage(network, "chat", "-m", "m", "hello from the terminal")
    assert chat.exit_code == 0 and chat.stdout == "echo: hello from the terminal\n"
    models = json.loads(garage(network, "models", "--json").stdout)
    assert models["data"] == [
        {"id": "m", "object": "model", "created": 0, "owned_by": "garage", "workers": 1}
    ]
    assert "m" in garage(network, "models").output
    unserved = garage(network, "chat", "-m", "ghost", "hi")
    assert unserved.exit_code == 6 and "no live worker serves model 'ghost'" in unserved.output


def test_items_unfinished_at_the_timeout_get_an_error_line_and_exit_1(
    network: Network, tmp_path: Path
) -> None:
    network.backend.configure(hang=True)
    data = tmp_path / "data.json"
    data.write_text(json.dumps(["never", "answered"]))
    result = garage(network, "job", "submit", "-m", "m", "-i", str(data), "--timeout", "0.5")
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["custom_id"] for line in lines] == ["item-0", "item-1"]
    assert all(line["response"] is None for line in lines)
    assert {line["error"]["code"] for line in lines} == {"unfinished"}
    assert "0 succeeded, 2 failed" in result.output
    batch_id = lines[0]["error"]["message"].rsplit(" ", 1)[-1]
    cancelled = httpx.post(
        f"{network.url}/v1/batches/{batch_id}/cancel",
        headers={"Authorization": f"Bearer {network.user_key}"},
    )
    assert cancelled.status_code == 200  # leaves no job hanging on the worker


def test_no_key_says_how_to_give_one(network: Network) -> None:
    env = {"GARAGE_URL": network.url, "GARAGE_API_KEY": ""}
    result = CliRunner().invoke(main, ["job", "list"], env=env, catch_exceptions=False)
    assert result.exit_code == 4
    assert "set GARAGE_API_KEY or pass --api-key" in result.output
    wrong = garage(network, "job", "list", "--api-key", "gk-u-wrong")
    assert wrong.exit_code == 4 and "invalid API key" in wrong.output
