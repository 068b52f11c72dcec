"""The docker/ files parse and point at things that exist (no Docker engine runs in CI)."""

from __future__ import annotations

import tomllib

import yaml
from dockerfile_parse import DockerfileParser

from ..support import ROOT

DOCKER = ROOT / "docker"


def test_dockerfile_copies_what_exists_and_runs_garage() -> None:
    parser = DockerfileParser(path=str(DOCKER / "Dockerfile"))
    instructions = parser.structure
    assert [i["instruction"] for i in instructions].count("FROM") == 2
    copied = set()
    for item in instructions:
        if item["instruction"] == "COPY" and "--from" not in item["value"]:
            *sources, _ = item["value"].split()
            for source in sources:
                assert (ROOT / source).exists(), source
            copied.update(sources)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(project["tool"]["setuptools"]["package-dir"].values())
    assert folders <= copied, f"the image's wheel would lack {sorted(folders - copied)}"
    entry = next(i for i in instructions if i["instruction"] == "ENTRYPOINT")
    assert "garage" in entry["value"]
    assert any(i["instruction"] == "USER" for i in instructions)  # not root


def test_compose_file_is_well_formed() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"redis", "broker"} <= set(services)
    broker = services["broker"]
    assert (ROOT / "docker" / broker["build"]["context"] / broker["build"]["dockerfile"]).exists()
    assert broker["environment"]["GARAGE_BROKER_REDIS_URL"].startswith("redis://redis:")
    assert "redis" in broker["depends_on"]
    for volume in services["redis"].get("volumes", []):
        assert volume.split(":")[0] in compose["volumes"]
