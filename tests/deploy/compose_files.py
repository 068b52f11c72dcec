"""Reading docker/'s compose files as Compose would: services, their bind mounts, and the
repository file behind a path inside a container."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ..support import ROOT

__all__ = [
    "CENTRAL",
    "DOCKER",
    "RIG",
    "bind_mounts",
    "duration_s",
    "host_path",
    "load",
    "runs",
]

DOCKER = ROOT / "docker"
CENTRAL = DOCKER / "compose.yaml"
RIG = DOCKER / "rig.compose.yaml"

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict) and document.get("services"), path
    return document


def runs(service: dict[str, Any], *words: str) -> bool:
    """Whether the service's command starts with `words` (`runs(s, "broker", "run")`)."""
    command = service.get("command", [])
    if isinstance(command, str):
        command = command.split()
    return list(command[: len(words)]) == list(words)


def bind_mounts(service: dict[str, Any], base: Path) -> dict[str, Path]:
    """Container path -> host path of each bind mount (short syntax), relative to `base`."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith((".", "/")):
            mounts[target] = (base / source).resolve()
    return mounts


def host_path(service: dict[str, Any], base: Path, inside: str) -> Path | None:
    """The host file a container sees at `inside`, through the service's bind mounts."""
    for target, source in bind_mounts(service, base).items():
        if inside == target or inside.startswith(target.rstrip("/") + "/"):
            return source / inside[len(target) :].lstrip("/")
    return None


def duration_s(text: str) -> float:
    """Compose's and systemd's durations ("1m30s", "60s", "10m") in seconds."""
    parts = _DURATION.findall(text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * _UNIT_S[u] for n, u in parts)
