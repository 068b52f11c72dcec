"""The package as users get it: a wheel built from this tree, installed in a clean venv."""

from __future__ import annotations

import shutil
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
import garage.broker, garage.worker, garage.client, garage.contract, garage.cli
for root in (garage.contract, garage.broker, garage.worker, garage.client, garage.cli):
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
    # Built from the tracked files alone, so nothing left in build/ or untracked can leak in.
    source = tmp_path / "source"
    for name in run("git", "ls-files", "-z", cwd=ROOT).split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source)
    [wheel] = dist.glob("garage_ai-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "garage/broker/store/claim.lua" in names
    assert "garage/contract/__init__.py" in names and "garage/cli/__init__.py" in names
    top = ("tests/", "broker/", "client/", "worker/", "contract/", "cli/", "bench/")
    assert not any(name.startswith(top) for name in names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", f"{wheel}[broker,worker]")
    # Outside the source tree, so only the installed package can be imported.
    assert "imports ok" in run(python, "-c", CHECK, cwd=tmp_path)
    assert "broker" in run(env_dir / "bin" / "garage", "--help", cwd=tmp_path)
    assert "--redis-url" in run(env_dir / "bin" / "garage", "broker", "run", "--help")
