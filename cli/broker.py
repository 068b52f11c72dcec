"""`garage broker run`: the broker service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._common import run_loop
from .logs import configure_logging, log_options

__all__ = ["broker"]


@click.group()
def broker() -> None:
    """Run the broker that queues, leases and streams jobs."""


@broker.command("run")
@click.option(
    "--host",
    envvar="GARAGE_BROKER_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on [env GARAGE_BROKER_HOST].",
)
@click.option(
    "--port",
    envvar="GARAGE_BROKER_PORT",
    type=int,
    default=8080,
    show_default=True,
    help="Port to listen on; 0 picks a free one [env GARAGE_BROKER_PORT].",
)
@click.option(
    "--redis-url",
    envvar="GARAGE_BROKER_REDIS_URL",
    default=None,
    help="Redis to keep state in: redis://, rediss:// (TLS), or "
    "redis+sentinel://host:port[,host:port]/master[/db] for a primary behind Sentinel. "
    "Without it the broker runs an embedded redis-server in --data-dir "
    "[env GARAGE_BROKER_REDIS_URL].",
)
@click.option(
    "--data-dir",
    envvar="GARAGE_BROKER_DATA_DIR",
    type=click.Path(path_type=Path),
    default=Path(".garage/broker"),
    show_default=True,
    help="Folder of the embedded store [env GARAGE_BROKER_DATA_DIR].",
)
@click.option(
    "--lease-s",
    envvar="GARAGE_BROKER_LEASE_S",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds a lease lasts unless renewed.",
)
@click.option(
    "--retention-s",
    envvar="GARAGE_BROKER_RETENTION_S",
    type=float,
    default=7 * 86400.0,
    show_default=True,
    help="Seconds finished jobs and their events are kept.",
)
@log_options("GARAGE_BROKER_LOG_LEVEL")
def run(log_format: str, **options: Any) -> None:
    """Serve the broker. GARAGE_ADMIN_KEY, if set, is accepted as an admin key.

    \b
    Examples:
      GARAGE_ADMIN_KEY=$(openssl rand -hex 32) garage broker run --host 0.0.0.0
      garage broker run --redis-url redis://10.0.0.5:6379/0 --port 8080
      garage broker run --redis-url redis+sentinel://s1:26379,s2:26379,s3:26379/main
    """
    try:
        from garage.broker.server import BrokerStartError, serve
        from garage.broker.settings import BrokerSettings
    except ImportError as exc:
        raise click.ClickException(
            f"the broker needs the broker extra: pip install 'garage-ai[broker]' ({exc})"
        ) from exc
    configure_logging(options["log_level"], log_format)
    settings = BrokerSettings(**options)

    def announce(url: str) -> None:
        click.echo(f"garage broker listening on {url}", err=True)

    try:
        run_loop(serve(settings, on_ready=announce))
    except BrokerStartError as exc:
        raise click.ClickException(str(exc)) from exc
