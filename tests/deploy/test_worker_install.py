"""`garage worker install --root DIR`: the unit and a 0600 environment file that the
worker's own settings read back, a masked dry run, and refusals with the CLI's codes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from garage.cli import main
from garage.cli._common import EXIT_AUTH, EXIT_USAGE
from garage.worker.settings import WorkerSettings

KEY = "gk-w-4f1c2b9e0d7a6c5b"
BROKER = "https://broker.example.com"
UNIT = Path("etc/systemd/system/garage-worker.service")
ENV = Path("etc/garage/worker.env")


def install(root: Path, *args: str, key: str | None = KEY) -> Result:
    options = ["--broker-url", BROKER, "--root", str(root), *args]
    if key is not None:
        options += ["--key", key]
    return CliRunner().invoke(main, ["worker", "install", *options], env={"NO_COLOR": "1"})


@pytest.fixture(autouse=True)
def _no_worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GARAGE_"):
            monkeypatch.delenv(name)


def test_it_writes_the_unit_and_a_0600_env_file_the_worker_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_chmod(*args: object, **kwargs: object) -> None:
        raise AssertionError("the mode is set when the file is created, never after")

    monkeypatch.setattr(os, "chmod", no_chmod)
    monkeypatch.setattr(os, "fchmod", no_chmod)
    umask = os.umask(0)  # the 0600 must not come from the umask
    try:
        result = install(tmp_path, "--backend", "openai", "--slots", "64", "--user", "gpu")
    finally:
        os.umask(umask)
    assert result.exit_code == 0, result.output
    assert "systemctl daemon-reload" in result.stdout
    assert "systemctl enable --now garage-worker" in result.stdout

    env_file = tmp_path / ENV
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert f"GARAGE_WORKER_TOKEN={KEY}\n" in env_file.read_text()
    unit = (tmp_path / UNIT).read_text()
    assert "\nUser=gpu\n" in unit and "\nEnvironmentFile=/etc/garage/worker.env\n" in unit
    [exec_start] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    program, *args = exec_start.removeprefix("ExecStart=").split()
    assert Path(program).is_file() and args == ["worker", "run"]
    assert not [p.name for p in env_file.parent.iterdir() if p.name != "worker.env"]

    settings = WorkerSettings(_env_file=env_file)  # the names are the ones it reads
    assert settings.broker == BROKER and settings.token is not None
    assert settings.token.get_secret_value() == KEY
    assert (settings.backend, settings.backend_url, settings.slots) == (
        "openai",
        "http://127.0.0.1:8000",
        64,
    )


def test_dry_run_masks_the_key_and_writes_nothing(tmp_path: Path) -> None:
    result = install(tmp_path, "--dry-run")
    assert result.exit_code == 0, result.output
    assert KEY not in result.output
    assert "GARAGE_WORKER_TOKEN=gk-w-********" in result.stdout
    assert "GARAGE_WORKER_BACKEND_URL=http://127.0.0.1:11434" in result.stdout
    assert "ExecStart=" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_a_second_run_needs_force_to_replace_the_env_file(tmp_path: Path) -> None:
    assert install(tmp_path).exit_code == 0
    before = (tmp_path / ENV).read_bytes()

    refused = install(tmp_path, key="gk-w-another")
    assert refused.exit_code == EXIT_USAGE
    assert refused.stderr.startswith("error: ") and "--force" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert (tmp_path / ENV).read_bytes() == before

    forced = install(tmp_path, "--force", key="gk-w-another")
    assert forced.exit_code == 0, forced.output
    assert "GARAGE_WORKER_TOKEN=gk-w-another\n" in (tmp_path / ENV).read_text()
    assert (tmp_path / ENV).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--broker-url", "broker.example.com"], "bad --broker-url"),
        (["--backend-url", "ftp://127.0.0.1"], "bad --backend-url"),
        (["--user", "no body"], "bad --user"),
    ],
)
def test_bad_input_is_refused_with_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = install(tmp_path, *args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.stderr == f"{result.stderr.splitlines()[0]}\n" and message in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_key_that_would_break_the_env_file_is_refused(tmp_path: Path) -> None:
    result = install(tmp_path, key="gk-w-abc\nGARAGE_WORKER_BROKER=http://evil")
    assert result.exit_code == EXIT_USAGE and "bad --key" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_without_a_key_or_a_terminal_it_says_how_to_give_one(tmp_path: Path) -> None:
    result = install(tmp_path, key=None)
    assert result.exit_code == EXIT_USAGE
    assert "GARAGE_WORKER_TOKEN" in result.stderr


def test_writing_to_the_real_etc_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_write(*args: object, **kwargs: object) -> None:
        raise AssertionError("it tried to write to the real /etc")

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "open", no_write)  # a test run as root must not install
    monkeypatch.setattr(os, "mkdir", no_write)
    result = install(Path("/"))
    assert result.exit_code == EXIT_AUTH
    assert result.stderr.startswith("error: writing to /etc needs root")
