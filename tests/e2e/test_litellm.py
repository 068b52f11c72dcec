"""A LiteLLM proxy with the broker as an `openai/` model endpoint streams chat through it
(the setup of docs/integrations.md)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from ..conftest import Network
from ..support import free_port, spawn, wait_until

pytestmark = pytest.mark.slow

MASTER_KEY = "sk-garage-e2e-master-key-0123456789"


@pytest.fixture
def litellm_proxy(network: Network, tmp_path: Path):
    binary = shutil.which("litellm") or str(Path(sys.executable).parent / "litellm")
    config = {
        "model_list": [
            {
                "model_name": "garage-m",
                "litellm_params": {
                    "model": "openai/m",
                    "api_base": f"{network.url}/v1",
                    "api_key": network.user_key,
                },
            }
        ]
    }
    (tmp_path / "litellm.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp_path / "litellm.log"
    process = spawn(
        [
            binary,
            "--config",
            str(tmp_path / "litellm.yaml"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env={
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network fetch at start
            "LITELLM_TELEMETRY": "False",
        },
        log=log,
    )
    url = f"http://127.0.0.1:{port}"

    def alive() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"litellm exited:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/health/liveliness", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(alive, timeout_s=90, what="the LiteLLM proxy")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_litellm_proxy_streams_chat_from_the_broker(litellm_proxy: str, network: Network) -> None:
    network.backend.configure(tokens_per_s=40)
    client = openai.OpenAI(base_url=f"{litellm_proxy}/v1", api_key=MASTER_KEY, max_retries=0)
    stream = client.chat.completions.create(
        model="garage-m",
        messages=[{"role": "user", "content": "through the proxy and back"}],
        stream=True,
    )
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1
    assert "".join(pieces) == "echo: through the proxy and back"
    plain = client.chat.completions.create(
        model="garage-m", messages=[{"role": "user", "content": "not streamed"}]
    )
    assert plain.choices[0].message.content == "echo: not streamed"
