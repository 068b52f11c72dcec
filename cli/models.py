"""`garage models`: what the fleet serves now."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from garage.client import AsyncClient

from ._common import broker_options, print_json, run_async

__all__ = ["models"]


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@broker_options
@run_async
async def models(as_json: bool, url: str | None, api_key: str | None) -> None:
    """List the models live workers serve, with how many workers serve each.

    \b
    Example:
      garage models --json
    """
    async with AsyncClient(url, api_key) as client:
        served = await client.models()
    if as_json:
        print_json(served)
        return
    if not served.data:
        click.echo("no live worker serves any model yet")
        return
    table = Table("model", "workers")
    for card in served.data:
        table.add_row(card.id, str(card.workers))
    Console().print(table)
