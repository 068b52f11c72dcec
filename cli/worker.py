"""`garage worker run|gpus`: the daemon on each rig, and its GPU probe."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import click

from ._common import EXIT_AUTH, fail, run_loop
from .logs import configure_logging, log_options
from .worker_install import install

__all__ = ["worker"]


@click.group()
def worker() -> None:
    """Run a worker on this rig, or look at what it would report."""


worker.add_command(install)


def _worker_imports() -> Any:
    try:
        from garage.worker import daemon, gpu, settings
    except ImportError as exc:
        raise click.ClickException(
            f"the worker needs the worker extra: pip install 'garage-ai[worker]' ({exc})"
        ) from exc
    return daemon, gpu, settings


@worker.command("run")
@click.option("--broker", help="Broker URL [env GARAGE_WORKER_BROKER, GARAGE_URL].")
@click.option("--token", help="Worker API key [env GARAGE_WORKER_TOKEN, GARAGE_API_KEY].")
@click.option(
    "--backend",
    type=click.Choice(["ollama", "openai", "demo"]),
    help="API of the local server: ollama (native) or openai (vLLM, llama.cpp, "
    "TGI, SGLang, LM Studio, cloud); demo is no model at all: it echoes prompts, for "
    "trying garage and for benchmarks [env GARAGE_WORKER_BACKEND; ollama].",
)
@click.option(
    "--backend-url",
    help="Base URL of the local server [env GARAGE_WORKER_BACKEND_URL; http://127.0.0.1:11434].",
)
@click.option("--backend-api-key", help="Key for the backend [env GARAGE_WORKER_BACKEND_API_KEY].")
@click.option(
    "--demo-tokens-per-s",
    type=click.FloatRange(min=0),
    help="Words a second the demo backend streams; 0 sends them at once "
    "[env GARAGE_WORKER_DEMO_TOKENS_PER_S; 40].",
)
@click.option(
    "--slots",
    type=click.IntRange(1, 1024),
    help="Jobs run at once; vLLM batches, so it can be large [env GARAGE_WORKER_SLOTS; 4].",
)
@click.option("--name", help="Name in the fleet view [env GARAGE_WORKER_NAME; hostname].")
@click.option(
    "--models",
    help="Comma-separated models to serve; default: all the backend "
    "lists [env GARAGE_WORKER_MODELS, a JSON list].",
)
@click.option(
    "--fallback-after",
    "fallback_after_s",
    type=click.FloatRange(min=0),
    help="Take only jobs that waited this many seconds with no other worker taking "
    "them (a cloud fallback) [env GARAGE_WORKER_FALLBACK_AFTER_S].",
)
@click.option(
    "--drain-grace",
    "drain_grace_s",
    type=click.FloatRange(min=0),
    help="On SIGTERM, seconds to finish running jobs before handing them back "
    "[env GARAGE_WORKER_DRAIN_GRACE_S; 30].",
)
@click.option(
    "--temp-critical",
    "temp_critical_c",
    type=float,
    help="GPU °C at which the worker stops pulling [env GARAGE_WORKER_GPU__TEMP_CRITICAL_C; 90].",
)
@click.option(
    "--temp-warn",
    "temp_warn_c",
    type=float,
    help="GPU °C at which it warns [env GARAGE_WORKER_GPU__TEMP_WARN_C; 85].",
)
@log_options("GARAGE_WORKER_LOG_LEVEL")
def run(
    log_level: str,
    log_format: str,
    temp_critical_c: float | None,
    temp_warn_c: float | None,
    models: str | None,
    **options: Any,
) -> None:
    """Pull jobs from the broker and run them on the local backend, until SIGTERM.

    \b
    Examples:
      garage worker run --broker https://broker.example --token gk-w-... \\
          --backend ollama --backend-url http://127.0.0.1:11434 --slots 4
      garage worker run ... --backend openai --backend-url http://127.0.0.1:8000 --slots 64
    """
    daemon, gpu, settings_module = _worker_imports()
    configure_logging(log_level, log_format)
    given = {k: v for k, v in options.items() if v is not None}
    if models:
        given["models"] = [m.strip() for m in models.split(",") if m.strip()]
    thresholds = {"temp_critical_c": temp_critical_c, "temp_warn_c": temp_warn_c}
    try:
        settings = settings_module.WorkerSettings(**given)
        if any(v is not None for v in thresholds.values()):
            merged = {
                **settings.gpu.model_dump(),
                **{k: v for k, v in thresholds.items() if v is not None},
            }
            settings = settings.model_copy(update={"gpu": gpu.GpuThresholds(**merged)})
    except ValueError as exc:
        fail(f"bad worker settings: {exc}", 2)
    if settings.token is None:
        fail("no worker key: pass --token or set GARAGE_WORKER_TOKEN", 2)
    from garage.client import AuthError, Conflict, RateLimited

    try:
        run_loop(_serve(settings, daemon, gpu))
    except AuthError as exc:
        fail(f"the broker at {settings.broker} refused the worker key: {exc}", EXIT_AUTH)
    except (Conflict, RateLimited) as exc:  # its fleet entry: another name or key helps
        fail(f"the broker at {settings.broker} refused this worker: {exc.message}", 2)


async def _serve(settings: Any, daemon: Any, gpu: Any) -> None:
    from garage.client import WorkerAPI, http_client
    from garage.worker.backends import make_backend

    backend_http = http_client(
        settings.backend_url,
        timeout_s=settings.backend_timeout_s,
        max_connections=settings.slots + 8,
    )
    api = WorkerAPI(settings.broker, settings.token.get_secret_value(), timeout_s=60)
    backend_key = settings.backend_api_key.get_secret_value() if settings.backend_api_key else None
    backend = make_backend(
        settings.backend,
        settings.backend_url,
        backend_http,
        backend_key,
        demo_tokens_per_s=settings.demo_tokens_per_s,
    )
    probe = gpu.NvmlProbe()
    rig = daemon.Worker(settings, api=api, backend=backend, gpu=probe)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, rig.request_stop)
    try:
        await rig.run()
    finally:
        probe.close()
        await backend_http.aclose()
        await api.aclose()


@worker.command("gpus")
@click.option("--json", "as_json", is_flag=True, help="Print the readings as JSON.")
def gpus(as_json: bool) -> None:
    """Read the GPUs through NVML and print what the worker would report.

    \b
    Example:
      garage worker gpus --json
    """
    _, gpu, settings_module = _worker_imports()
    thresholds = settings_module.WorkerSettings().gpu
    with gpu.NvmlProbe() as probe:
        readings, health = probe.check(thresholds)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "gpus": [g.model_dump(mode="json") for g in readings],
                    "health": health.model_dump(mode="json"),
                },
                indent=2,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not readings:
        console.print("no NVIDIA GPU found (the worker reports none and still works)")
    else:
        table = Table(
            "#", "name", "memory MiB", "util %", "temp °C", "power W", "throttle", "ECC unc."
        )
        for g in readings:
            table.add_row(
                str(g.index),
                g.name,
                f"{_num(g.memory_used_mib)} / {_num(g.memory_total_mib)}",
                _num(g.utilization_pct),
                _num(g.temperature_c),
                f"{_num(g.power_w)} / {_num(g.power_limit_w)}",
                ", ".join(g.throttle_reasons) or "-",
                _num(g.ecc_uncorrectable),
            )
        console.print(table)
    console.print(f"health: {health.state.value}" + "".join(f"\n  - {r}" for r in health.reasons))


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
