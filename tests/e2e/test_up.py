"""`garage up`: the README's first command, as a newcomer runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from ..support import garage_command, spawn, wait_until

pytestmark = pytest.mark.slow


def test_up_try_once_streams_a_chat_and_finishes_a_batch(tmp_path: Path) -> None:
    # As the README runs it: from a fresh folder, with the default (relative) data folder.
    done = subprocess.run(
        garage_command("up", "--port", "0", "--try", "--once"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "garage is up at http://127.0.0.1:" in out
    assert "DEMO backend" in out and "not a language model" in out
    assert "You said: Hello garage, who is answering?" in out
    assert out.count("-> [garage demo backend, not a model] You said:") == 5
    assert "batch finished." in out
    assert (tmp_path / ".garage" / "up" / "keys.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / ".garage" / "up").stat().st_mode & 0o777 == 0o700  # prompts, keys
    store = tmp_path / ".garage" / "up" / "store"
    assert (store / "appendonly.aof").exists() or (store / "appendonlydir").is_dir()


def test_up_serves_until_ctrl_c_and_keeps_its_keys(tmp_path: Path) -> None:
    data = tmp_path / "up"
    log = tmp_path / "up.log"
    process = spawn(
        garage_command("up", "--port", "0", "--data-dir", str(data)), log=log, own_group=True
    )
    try:
        banner = wait_until(
            lambda: re.search(r"export GARAGE_URL=(\S+) GARAGE_API_KEY=(\S+)", log.read_text()),
            timeout_s=60,
            what="the banner",
        )
        url, key = banner.group(1), banner.group(2)
        chat = subprocess.run(
            garage_command("chat", "-m", "garage-demo", "ping from the README"),
            env={"GARAGE_URL": url, "GARAGE_API_KEY": key, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert chat.returncode == 0, chat.stderr
        assert chat.stdout.strip().endswith("You said: ping from the README")
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        assert process.wait(timeout=30) == 0
        assert "Traceback" not in log.read_text()  # the store outlived the broker
    finally:
        if process.poll() is None:
            process.kill()

    again = subprocess.run(
        garage_command("up", "--port", "0", "--data-dir", str(data), "--try", "--once"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert f"GARAGE_API_KEY={key}" in again.stdout  # the same user key after a restart
