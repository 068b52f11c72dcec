"""`garage up`: a whole local network in one command.

A broker on the embedded store plus a worker on whatever local backend answers (Ollama on
11434, an OpenAI-compatible server on 8000), or on the demo backend, said plainly, when
none does. Keys are made once and kept in the data folder, so a restart keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import tempfile
from pathlib import Path
from typing import Any

import click
import httpx

from garage.client import http_client

from ._common import colour, run_loop

__all__ = ["up"]

_OLLAMA_URL = "http://127.0.0.1:11434"
_OPENAI_URL = "http://127.0.0.1:8000"
_TRY_PROMPTS = [
    "What is a GPU?",
    "Name three things a garage holds.",
    "Why pull work instead of pushing it?",
    "Say hello in French.",
    "What does NAT stand for?",
]


@click.command("up")
@click.option("--host", default="127.0.0.1", show_default=True, help="Broker address.")
@click.option("--port", type=int, default=8080, show_default=True, help="Broker port (0: any).")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path(".garage/up"),
    show_default=True,
    help="Where the store and the keys are kept.",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "ollama", "openai", "demo"]),
    default="auto",
    show_default=True,
    help="auto: Ollama on 11434, else an OpenAI-compatible server on 8000, else "
    "the demo backend (no model: it echoes prompts).",
)
@click.option("--backend-url", default=None, help="URL of the backend (for ollama/openai).")
@click.option("--slots", type=click.IntRange(1, 1024), default=4, show_default=True)
@click.option(
    "--try",
    "try_it",
    is_flag=True,
    help="Once up, stream one chat answer and run a 5-prompt batch.",
)
@click.option("--once", is_flag=True, help="Stop after --try instead of serving on.")
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def up(log_level: str, **options: Any) -> None:
    """Start a broker and a local worker; Ctrl-C stops both.

    \b
    Examples:
      garage up --try                     # and show a chat and a batch through it
      garage up --backend ollama --slots 2
      garage up --backend demo --port 0   # the echoing demo backend, any free port
    """
    try:
        import garage.broker.server
        import garage.worker.daemon  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(
            f"garage up needs the broker and worker extras: "
            f"pip install 'garage-ai[broker,worker]' ({exc})"
        ) from exc
    from .logs import configure_logging

    configure_logging(log_level)
    options["data_dir"].mkdir(mode=0o700, parents=True, exist_ok=True)  # keys and prompts
    run_loop(_up(**options))


async def _up(
    host: str,
    port: int,
    data_dir: Path,
    backend: str,
    backend_url: str | None,
    slots: int,
    try_it: bool,
    once: bool,
) -> None:
    from garage.broker.server import BrokerServer
    from garage.broker.settings import BrokerSettings
    from garage.client import WorkerAPI
    from garage.contract import Role
    from garage.worker.backends import make_backend
    from garage.worker.daemon import Worker
    from garage.worker.gpu import NvmlProbe
    from garage.worker.settings import WorkerSettings

    keys = _local_keys(data_dir)
    kind, url, note = await _find_backend(backend, backend_url)
    settings = BrokerSettings(
        host=host,
        port=port,
        data_dir=data_dir / "store",
        admin_key=keys["admin"],
        log_level="warning",
    )
    async with BrokerServer(settings) as broker, http_client(url, timeout_s=600) as backend_http:
        assert broker.store is not None
        for role in (Role.user, Role.worker):
            if await broker.store.apikeys.lookup(keys.get(role.value, "")) is None:
                keys[role.value] = (await broker.store.apikeys.create(role, f"up-{role}")).key
        _save_keys(data_dir, keys)

        worker_settings = WorkerSettings(
            broker=broker.url,
            token=keys["worker"],
            backend=kind,
            backend_url=url,
            slots=slots,
            name="local",
            drain_grace_s=5,
        )
        probe = NvmlProbe()
        api = WorkerAPI(broker.url, keys["worker"])
        worker = Worker(
            worker_settings,
            api=api,
            backend=make_backend(kind, url, backend_http),
            gpu=probe,
        )
        working = asyncio.create_task(worker.run())
        for _ in range(100):
            if worker.models or working.done():
                break
            await asyncio.sleep(0.05)
        _banner(broker.url, keys["user"], kind, url, note, worker.models, data_dir)
        try:
            if try_it and worker.models:
                await _try(broker.url, keys["user"], worker.models[0])
            if not once:
                await _until_stopped(working)
        finally:
            worker.request_stop()
            await working
            await api.aclose()
            probe.close()
    click.echo("garage stopped.", err=True)


async def _find_backend(backend: str, url: str | None) -> tuple[str, str, str]:
    """The backend kind and URL to use, and a line that says why."""
    if backend == "demo":
        return "demo", "", "the demo backend, as asked"
    if backend in ("ollama", "openai"):
        default = _OLLAMA_URL if backend == "ollama" else _OPENAI_URL
        return backend, url or default, f"{backend} at {url or default}, as asked"
    async with http_client(_OLLAMA_URL, timeout_s=1.5) as http:
        for kind, candidate, path in (
            ("ollama", _OLLAMA_URL, "/api/tags"),
            ("openai", _OPENAI_URL, "/v1/models"),
        ):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(candidate + path)).is_success:
                    return kind, candidate, f"found {kind} at {candidate}"
    return (
        "demo",
        "",
        (
            f"no backend found (nothing answered at {_OLLAMA_URL} for Ollama or "
            f"{_OPENAI_URL}/v1 for an OpenAI-compatible server), so this runs the DEMO backend: "
            "its model 'garage-demo' only echoes your prompt; it is not a language model"
        ),
    )


def _local_keys(data_dir: Path) -> dict[str, str]:
    path = data_dir / "keys.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"admin": f"gk-a-{secrets.token_urlsafe(32)}"}


def _save_keys(data_dir: Path, keys: dict[str, str]) -> None:
    """Writes keys.json 0600 from its creation (mkstemp's mode), never readable for a
    moment, and whole: the new file replaces the old in one step."""
    fd, temp = tempfile.mkstemp(prefix=".keys-", suffix=".json", dir=data_dir)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps(keys, indent=2))
        os.replace(temp, data_dir / "keys.json")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _banner(
    url: str,
    user_key: str,
    kind: str,
    backend_url: str,
    note: str,
    models: list[str],
    data_dir: Path,
) -> None:
    click.echo(f"{colour('garage is up', fg='green', bold=True)} at {colour(url, bold=True)}")
    click.echo(f"  worker backend: {colour(note, fg='yellow') if kind == 'demo' else note}")
    click.echo(
        f"  models:         {', '.join(models) or '(none yet: is the backend serving any?)'}"
    )
    click.echo(f"  data:           {data_dir} (keys in {data_dir / 'keys.json'})")
    click.echo(f"  dashboard:      {url}/#key={user_key}")
    click.echo("  use it from another terminal:")
    click.echo(colour(f"    export GARAGE_URL={url} GARAGE_API_KEY={user_key}", fg="cyan"))
    model = models[0] if models else "MODEL"
    click.echo(f'    garage chat -m {model} "Hello!"')
    click.echo("  Ctrl-C stops the broker and the worker.")


async def _try(url: str, user_key: str, model: str) -> None:
    from garage.client import AsyncClient

    from ._stream import print_stream

    async with AsyncClient(url, user_key) as client:
        prompt = "Hello garage, who is answering?"
        click.echo(f"\nchat with {model}> {prompt}")
        job = await client.submit(model, {"messages": [{"role": "user", "content": prompt}]})
        await print_stream(client, job.id)

        click.echo(f"\nbatch of {len(_TRY_PROMPTS)} prompts on {model}:")
        outcomes = await client.map(model, _TRY_PROMPTS, timeout_s=300)
        for prompt_text, outcome in zip(_TRY_PROMPTS, outcomes, strict=True):
            answer = outcome.text if outcome.ok else f"error: {outcome.error}"
            click.echo(f"  {prompt_text}\n    -> {(answer or '').strip()[:160]}")
        click.echo("batch finished.")


async def _until_stopped(working: asyncio.Task[None]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({stopped, working}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
