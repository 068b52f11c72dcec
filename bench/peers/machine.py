"""The machine line of a run, read when the run starts: cores and CPU, memory, the OS,
Python, the redis-server the run uses, and the version of every package measured."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

import redis

__all__ = ["PACKAGES", "describe", "line"]

PACKAGES = ("garage-ai", "celery", "kombu", "rq", "arq", "dramatiq", "redis", "hiredis")


def _proc_field(path: str, name: str) -> str | None:
    try:
        for text in Path(path).read_text().splitlines():
            key, _, value = text.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe(redis_url: str) -> dict[str, Any]:
    memory = _proc_field("/proc/meminfo", "MemTotal")  # "24576000 kB"
    with redis.Redis.from_url(redis_url) as client:
        redis_version = client.info("server")["redis_version"]
    return {
        "cores": os.cpu_count(),
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or None,
        "memory_gib": round(int(memory.split()[0]) / 2**20, 1) if memory else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "redis_server": redis_version,
        "load_average": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
        "packages": {name: _version(name) for name in PACKAGES},
    }


def line(machine: dict[str, Any]) -> str:
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items()
                         if version)  # fmt: skip
    return (
        f"{machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"{machine['os']}, Python {machine['python']}, redis-server {machine['redis_server']}, "
        f"load average at start {machine['load_average']}; {packages}"
    )
