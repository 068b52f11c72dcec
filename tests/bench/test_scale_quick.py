"""bench/idle_scale.py and bench/stream_scale.py in their quick profiles run end to end (the
shipped broker and workers, simulated pollers, stream readers through the public client),
so the benchmarks cannot rot. Nothing about speed is asserted: timings on a shared machine
say nothing. What is asserted holds at any speed: every job is leased once, an enqueue
answers one poll, and every token reaches its stream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]


def _quick(script: str, out: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, f"bench/{script}", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_idle_scale_leases_each_job_once_and_wakes_one_poll(tmp_path: Path) -> None:
    done = _quick("idle_scale.py", tmp_path / "idle.json")
    [figures] = json.loads((tmp_path / "idle.json").read_text())["runs"]["50"]
    assert figures["listed"] == 50
    assert figures["never_leased"] == 0 and figures["leased_twice"] == 0
    for lane in ("interactive", "batch"):
        assert len(figures[f"{lane}_lease_ms"]) == 20
        assert figures[f"{lane}_answered_per_enqueue"] == [1] * 20
    assert figures["redis_connections"] >= 1
    assert "| broker RSS, MB |" in done.stdout


def test_stream_scale_delivers_every_token(tmp_path: Path) -> None:
    done = _quick("stream_scale.py", tmp_path / "streams.json")
    [figures] = json.loads((tmp_path / "streams.json").read_text())["runs"]
    assert figures["streams_complete"] == figures["streams"] == 20
    assert figures["tokens"] == figures["tokens_expected"] == 20 * 20
    assert not figures["errors"]
    assert len(figures["first_token_ms"]) == 20
    assert "| tokens delivered / expected |" in done.stdout
