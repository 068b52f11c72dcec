"""`garage workers`: the fleet with its GPU health."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from garage.client import AsyncClient

from ._common import broker_options, print_json, run_async

__all__ = ["workers"]


@click.command("workers")
@click.option("--json", "as_json", is_flag=True, help="Print the fleet as JSON.")
@broker_options
@run_async
async def workers(as_json: bool, url: str | None, api_key: str | None) -> None:
    """List live workers: models, slots, health and GPUs.

    \b
    Example:
      garage workers --json
    """
    async with AsyncClient(url, api_key) as client:
        fleet = await client.workers()
    if as_json:
        print_json(fleet)
        return
    table = Table("worker", "models", "slots", "health", "GPUs")
    for w in fleet.data:
        gpus = (
            "\n".join(
                f"{g.index}: {g.name} {g.temperature_c or '-'}°C "
                f"{g.utilization_pct if g.utilization_pct is not None else '-'}%"
                for g in w.gpus
            )
            or "-"
        )
        health = w.health.state.value + "".join(f"\n{r}" for r in w.health.reasons)
        slots = f"{w.slots_total - w.slots_free}/{w.slots_total} busy"
        table.add_row(w.name, ", ".join(w.models) or "-", slots, health, gpus)
    Console().print(table)
