"""bench/peers_run.py's quick profile runs end to end (garage through its shipped processes,
and every peer from its own package), so the comparison cannot rot. Nothing about speed
is asserted: timings on a shared machine say nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
# One setup of each package (CI's time is short); the other setups of Celery and arq only
# change settings these runs already pass through.
PEERS = ["garage", "celery-solo", "rq", "arq-poll-0.01", "dramatiq"]


def test_the_quick_profile_measures_every_peer(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "bench/peers_run.py",
            "--quick",
            "--out",
            str(tmp_path),
            "--peers",
            ",".join(PEERS),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    document = json.loads((tmp_path / "peers.json").read_text())
    text = json.dumps(document)
    for peer in PEERS:
        assert f'"{peer}"' in text, peer
        assert f"| {peer} |" in done.stdout, peer
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "latency.png", "recovery.png", "throughput.png"
    ]  # fmt: skip
