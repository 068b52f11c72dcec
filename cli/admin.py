"""`garage admin key create`: key management."""

from __future__ import annotations

import click

from garage.client import AsyncClient
from garage.contract import Role

from ._common import broker_options, print_json, run_async

__all__ = ["admin"]


@click.group()
def admin() -> None:
    """Administer the broker (needs an admin key)."""


@admin.group()
def key() -> None:
    """Create API keys."""


@key.command("create")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    required=True,
    help="user submits jobs; worker serves them; admin does everything.",
)
@click.option("--name", required=True, help="A name to recognise the key by.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the key, alone on stdout.")
@click.option("--json", "as_json", is_flag=True, help="Print the key record as JSON.")
@broker_options
@run_async
async def create(
    role: str, name: str, quiet: bool, as_json: bool, url: str | None, api_key: str | None
) -> None:
    """Create a key; its secret is shown this once.

    \b
    Examples:
      garage admin key create --role worker --name rig-1 --quiet
      garage admin key create --role user --name alice
    """
    async with AsyncClient(url, api_key) as client:
        created = await client.create_key(role, name)
    if quiet:
        click.echo(created.key)
    elif as_json:
        print_json(created)
    else:
        click.echo(f"created {created.role.value} key {created.id} ({created.name}):")
        click.echo(created.key)
