"""The package as users get it: a wheel built from this tree, installed in a clean venv."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from ..support import ROOT

pytestmark = pytest.mark.slow

CHECK = """
import importlib, pkgutil
import garage.broker, garage.worker, garage.client
for root in (garage.broker, garage.worker, garage.client):
    for info in pkgutil.walk_packages(root.__path__, root.__name__ + "."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
from garage.broker.store.scripts import source
for name in ("submit", "claim", "report", "complete", "fail", "cancel", "reap"):
    assert "redis.call" in source(name), name
print("imports ok")
"""


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_wheel_installs_and_runs_in_a_clean_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, ROOT)
    [wheel] = dist.glob("garage_ai-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "garage/broker/store/claim.lua" in names
    assert not any(name.startswith(("tests/", "broker/", "client/")) for name in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", f"{wheel}[broker,worker]")
    # Outside the source tree, so only the installed package can be imported.
    assert "imports ok" in run(python, "-c", CHECK, cwd=tmp_path)
    assert "broker" in run(env_dir / "bin" / "garage", "--help", cwd=tmp_path)
    assert "--redis-url" in run(env_dir / "bin" / "garage", "broker", "run", "--help")
