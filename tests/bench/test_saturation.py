"""bench/saturation.py's quick profile runs end to end (the shipped broker and worker, the
fake engine, the openai SDK), so the benchmark cannot rot. Nothing about speed is asserted:
timings on a shared machine say nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_profile_streams_every_token_both_ways(tmp_path: Path) -> None:
    figures = tmp_path / "saturation.json"
    done = subprocess.run(
        [sys.executable, "bench/saturation.py", "--quick", "--json", str(figures)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    levels = json.loads(figures.read_text())
    assert [level["streams"] for level in levels] == [4, 16]
    for level in levels:
        paths = [wave["path"] for wave in level["waves"]]
        assert paths == ["direct", "garage"] * 2
        for wave in level["waves"]:
            assert wave["tokens"] == level["streams"] * 20
            assert len(wave["ttft_ms"]) == level["streams"]
    assert "| 16 |" in done.stdout
