"""cli/templates/garage-worker.service: restarts that stop on config errors, a stop that
waits out the drain, and hardening that still lets NVML reach /dev/nvidia*."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pytest

from garage.cli._common import EXIT_AUTH, EXIT_USAGE
from garage.cli.worker_install import ENV_FILE, render_unit
from garage.worker.settings import WorkerSettings

from ..support import ROOT
from .compose_files import duration_s

HAND_BACK_S = 10  # after the drain, how long the worker tries to hand jobs back (daemon.py)
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
}
# Each of these turns on a device allow-list, which would hide /dev/nvidia* from NVML.
HIDES_GPUS = {"PrivateDevices", "DeviceAllow", "DevicePolicy", "ProtectClock"}


def template() -> str:
    return resources.files("garage.cli").joinpath("templates/garage-worker.service").read_text()


def sections(text: str) -> dict[str, dict[str, str]]:
    parsed: dict[str, dict[str, str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            parsed[current] = {}
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key not in parsed[current], f"{key} set twice"
            parsed[current][key] = value
    return parsed


def test_the_template_ships_in_the_wheel() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "templates/*" in project["tool"]["setuptools"]["package-data"]["garage.cli"]


def test_it_restarts_on_failure_but_not_on_a_config_error() -> None:
    unit = sections(template())
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert duration_s(service["RestartSec"]) >= 1
    assert int(unit["Unit"]["StartLimitBurst"]) >= 1
    assert int(unit["Unit"]["StartLimitIntervalSec"]) > 0
    # the CLI's documented codes for bad settings (2) and a refused key (4)
    prevented = {int(code) for code in service["RestartPreventExitStatus"].split()}
    assert prevented == {EXIT_USAGE, EXIT_AUTH}


def test_stopping_sends_sigterm_and_waits_out_the_drain() -> None:
    service = sections(template())["Service"]
    assert service["KillSignal"] == "SIGTERM"
    grace_s = WorkerSettings.model_fields["drain_grace_s"].default
    assert duration_s(service["TimeoutStopSec"]) > grace_s + HAND_BACK_S


def test_it_reads_its_settings_from_the_file_install_writes() -> None:
    service = sections(template())["Service"]
    assert service["EnvironmentFile"] == str(ENV_FILE)
    assert service["ExecStart"].endswith(" worker run")
    assert service["User"] == "garage"
    assert service["StateDirectory"] == "garage"  # ProtectSystem=strict: the one writable place


def test_it_is_hardened_without_hiding_the_gpus() -> None:
    service = sections(template())["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == value, key
    assert not HIDES_GPUS & set(service), sorted(HIDES_GPUS & set(service))


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (systemd)"
)
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this venv's garage.
    garage = Path(sys.executable).with_name("garage")
    unit = tmp_path / "garage-worker.service"
    unit.write_text(render_unit(template(), user="garage", garage=str(garage)))
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    complaints = [
        line for line in (verified.stdout + verified.stderr).splitlines() if unit.name in line
    ]
    assert verified.returncode == 0 and not complaints, verified.stdout + verified.stderr
