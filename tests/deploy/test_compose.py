"""docker/compose.yaml (the central box) and docker/rig.compose.yaml (a rig), read with
PyYAML: pinned images, files that exist, and the shape each deployment needs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices

from garage.worker.settings import WorkerSettings

from ..support import ROOT
from .compose_files import CENTRAL, DOCKER, RIG, bind_mounts, duration_s, host_path, load, runs

COMPOSE_FILES = [CENTRAL, RIG]
PINNED = re.compile(r"^[\w./-]+:(?!latest\b)[\w.-]*\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?$")
REQUIRED = re.compile(r"^\$\{(\w+):\?.+\}$")  # ${NAME:?message}: Compose stops if unset
HAND_BACK_S = 10  # after the drain, how long the worker tries to hand jobs back (daemon.py)


def _services(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from load(path)["services"].items()


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_image_is_pinned_and_every_build_exists(path: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, service in _services(path):
        image = service.get("image")
        assert image and PINNED.match(image), f"{name}: {image!r} is not pinned"
        if "build" in service:
            build = service["build"]
            dockerfile = (path.parent / build["context"] / build["dockerfile"]).resolve()
            assert dockerfile.is_file(), f"{name}: {dockerfile}"
            assert image.startswith("garage-") and image.endswith(f":{version}"), image


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_mounted_file_exists_and_every_volume_is_declared(path: Path) -> None:
    document = load(path)
    for name, service in document["services"].items():
        for target, source in bind_mounts(service, path.parent).items():
            assert source.exists(), f"{name}: {source} (mounted at {target})"
            assert source.is_relative_to(DOCKER), f"{name}: {source} is outside docker/"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in document.get("volumes", {}), f"{name}: volume {source}"
        for secret in service.get("secrets", []):
            assert secret in document.get("secrets", {}), f"{name}: secret {secret}"


# the central box


def test_redis_persists_every_write_to_a_volume() -> None:
    redis = load(CENTRAL)["services"]["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert any(v.split(":")[1] == "/data" for v in redis["volumes"])
    assert "CMD" in redis["healthcheck"]["test"]


def test_two_broker_replicas_share_redis_and_need_the_admin_key() -> None:
    services = load(CENTRAL)["services"]
    brokers = {name: s for name, s in services.items() if runs(s, "broker", "run")}
    assert len(brokers) == 2, sorted(brokers)
    for name, broker in brokers.items():
        env = broker["environment"]
        assert env["GARAGE_BROKER_REDIS_URL"].startswith("redis://redis:6379/"), name
        required = REQUIRED.match(env["GARAGE_ADMIN_KEY"])
        assert required and required.group(1) == "GARAGE_ADMIN_KEY", name
        assert broker["depends_on"]["redis"]["condition"] == "service_healthy"
        assert broker["build"]["dockerfile"] == "docker/broker.Dockerfile"
        assert "ports" not in broker, f"{name}: only Caddy faces the network"


def test_caddy_fronts_both_brokers_with_tls_and_streams_unbuffered() -> None:
    services = load(CENTRAL)["services"]
    caddy = services["caddy"]
    assert caddy["image"].startswith("caddy:")
    assert host_path(caddy, DOCKER, "/etc/caddy/Caddyfile") == DOCKER / "Caddyfile"
    assert REQUIRED.match(caddy["environment"]["GARAGE_DOMAIN"])
    assert {"80:80", "443:443"} <= set(caddy["ports"])
    brokers = {f"{n}:8080" for n, s in services.items() if runs(s, "broker", "run")}

    text = (DOCKER / "Caddyfile").read_text()
    assert re.search(r"^\{\$GARAGE_DOMAIN\} \{$", text, re.MULTILINE), "the site address"
    [upstreams] = re.findall(r"^\s*reverse_proxy (.+) \{$", text, re.MULTILINE)
    assert set(upstreams.split()) == brokers
    assert re.search(r"^\s*flush_interval -1$", text, re.MULTILINE)
    for timeout in ("read_timeout", "write_timeout"):
        [value] = re.findall(rf"^\s*{timeout} (\S+)$", text, re.MULTILINE)
        assert duration_s(value) > 60, f"{timeout} {value} would cut a 60 s poll"
    assert not re.search(r"^\s*(write|read_body) ", text, re.MULTILINE), (
        "a server write or read_body timeout spans the whole response: it cuts SSE streams"
    )


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy not installed (apt install caddy)")
def test_caddy_reads_the_caddyfile_as_intended(tmp_path: Path) -> None:
    adapted = subprocess.run(
        ["caddy", "adapt", "--adapter", "caddyfile", "--config", str(DOCKER / "Caddyfile")],
        env={**os.environ, "GARAGE_DOMAIN": "broker.example.com", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert adapted.returncode == 0, adapted.stderr
    assert '"warn"' not in adapted.stderr, adapted.stderr  # unformatted input, say
    config = json.loads(adapted.stdout)
    [server] = config["apps"]["http"]["servers"].values()
    assert server["listen"] == [":443"] and "write_timeout" not in server
    assert {"host": ["broker.example.com"]} in server["routes"][0]["match"]
    [proxy] = [n for n in _walk(config) if n.get("handler") == "reverse_proxy"]
    assert proxy["flush_interval"] == -1
    assert [u["dial"] for u in proxy["upstreams"]] == ["broker-1:8080", "broker-2:8080"]
    assert proxy["health_checks"]["active"]["uri"] == "/readyz"
    assert proxy["transport"]["read_timeout"] >= 60 * 10**9  # nanoseconds


def test_monitoring_is_an_opt_in_profile() -> None:
    services = load(CENTRAL)["services"]
    profiled = {name for name, s in services.items() if s.get("profiles")}
    assert profiled == {"prometheus", "grafana"}
    assert all(services[name]["profiles"] == ["monitoring"] for name in profiled)
    for name in profiled:  # on loopback only: reach them through an SSH tunnel
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"])


def test_prometheus_scrapes_one_broker_with_the_admin_key_from_a_secret() -> None:
    document = load(CENTRAL)
    prometheus = document["services"]["prometheus"]
    config_path = host_path(prometheus, DOCKER, "/etc/prometheus/prometheus.yml")
    assert config_path is not None
    config = yaml.safe_load(config_path.read_text())
    for rule_file in config["rule_files"]:
        found = host_path(prometheus, DOCKER, rule_file)
        assert found is not None and found.is_file(), rule_file
    [job] = config["scrape_configs"]
    [targets] = [c["targets"] for c in job["static_configs"]]
    brokers = {f"{n}:8080" for n, s in document["services"].items() if runs(s, "broker", "run")}
    assert len(targets) == 1 and targets[0] in brokers, "one broker: the values are fleet-wide"
    assert job["metrics_path"] == "/metrics"
    credentials = job["authorization"]["credentials_file"]
    secret = credentials.removeprefix("/run/secrets/")
    assert secret in prometheus["secrets"]
    assert document["secrets"][secret] == {"environment": "GARAGE_ADMIN_KEY"}


def test_grafana_provisions_the_datasource_and_the_dashboard() -> None:
    grafana = load(CENTRAL)["services"]["grafana"]
    datasources = host_path(grafana, DOCKER, "/etc/grafana/provisioning/datasources")
    providers = host_path(grafana, DOCKER, "/etc/grafana/provisioning/dashboards")
    assert datasources is not None and providers is not None
    [source] = yaml.safe_load((datasources / "prometheus.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    [provider] = yaml.safe_load((providers / "garage.yml").read_text())["providers"]
    folder = host_path(grafana, DOCKER, provider["options"]["path"])
    assert folder is not None and (folder / "garage.json").is_file()
    dashboard = json.loads((folder / "garage.json").read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {source["uid"]}


# a rig


def _worker_env_names() -> set[str]:
    """Every environment variable WorkerSettings reads."""
    prefix = WorkerSettings.model_config["env_prefix"]
    names = set()
    for name, field in WorkerSettings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str) and c.isupper()}
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def _has_gpus(service: dict[str, Any]) -> bool:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {})
    return any(
        d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])
        for d in devices.get("devices", [])
    )


def test_each_rig_profile_is_a_worker_beside_one_gpu_server() -> None:
    services = dict(_services(RIG))
    by_profile: dict[str, dict[str, dict[str, Any]]] = {}
    for name, service in services.items():
        [profile] = service.get("profiles", [None])  # no service starts without a profile
        by_profile.setdefault(profile, {})[name] = service
    assert set(by_profile) == {"ollama", "vllm"}
    images = {"ollama": "ollama/ollama:", "vllm": "vllm/vllm-openai:"}
    for profile, members in by_profile.items():
        [worker] = [n for n, s in members.items() if runs(s, "worker", "run")]
        [server] = [n for n in members if n != worker]
        assert members[server]["image"].startswith(images[profile])
        assert _has_gpus(members[server]), f"{server}: no NVIDIA GPU reservation"
        assert _has_gpus(members[worker]), f"{worker}: NVML needs the GPUs too"
        env = members[worker]["environment"]
        assert env["GARAGE_WORKER_BACKEND_URL"].startswith(f"http://{server}:")
        assert env["GARAGE_WORKER_BACKEND"] == ("ollama" if profile == "ollama" else "openai")
        assert server in members[worker]["depends_on"]


def test_the_worker_reads_its_broker_and_key_from_the_environment() -> None:
    known = _worker_env_names()
    workers = [s for _, s in _services(RIG) if runs(s, "worker", "run")]
    for worker in workers:
        env = worker["environment"]
        assert set(env) <= known, f"WorkerSettings reads none of {sorted(set(env) - known)}"
        for name in ("GARAGE_WORKER_BROKER", "GARAGE_WORKER_TOKEN"):
            required = REQUIRED.match(env[name])
            assert required and required.group(1) == name
        assert worker["build"]["dockerfile"] == "docker/worker.Dockerfile"


def test_stopping_a_worker_leaves_it_time_to_drain() -> None:
    grace_s = WorkerSettings.model_fields["drain_grace_s"].default
    for name, service in _services(RIG):
        if runs(service, "worker", "run"):
            assert duration_s(service["stop_grace_period"]) > grace_s + HAND_BACK_S, name
