"""`garage admin key create|list|rotate|revoke|limits`: key management."""

from __future__ import annotations

import click

from garage.client import AsyncClient
from garage.contract import KeyInfo, KeyLimitsUpdate, Role

from ._common import broker_options, print_json, print_rows, run_async

__all__ = ["admin"]


@click.group()
def admin() -> None:
    """Administer the broker (needs an admin key)."""


@admin.group()
def key() -> None:
    """Create, list and revoke API keys, and set their limits."""


@key.command("create")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    required=True,
    help="user submits jobs; worker serves them; admin does everything.",
)
@click.option("--name", required=True, help="A name to recognise the key by.")
@click.option(
    "--owner",
    default=None,
    metavar="KEY_ID",
    help="A worker key's owner: the user key id credited with what its rigs contribute.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the key, alone on stdout.")
@click.option("--json", "as_json", is_flag=True, help="Print the key record as JSON.")
@broker_options
@run_async
async def create(
    role: str,
    name: str,
    owner: str | None,
    quiet: bool,
    as_json: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """Create a key; its secret is shown this once.

    \b
    Examples:
      garage admin key create --role worker --name rig-1 --quiet
      garage admin key create --role user --name alice
      garage admin key create --role worker --name alices-rig --owner key_01JD...
    """
    async with AsyncClient(url, api_key) as client:
        created = await client.create_key(role, name, owner=owner)
    if quiet:
        click.echo(created.key)
    elif as_json:
        print_json(created)
    else:
        click.echo(f"created {created.role.value} key {created.id} ({created.name}):")
        click.echo(created.key)


@key.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
@broker_options
@run_async
async def list_keys(as_json: bool, url: str | None, api_key: str | None) -> None:
    """List every key: id, role, name, created, its own limits ("default": the broker's)
    and a worker key's owner. Secrets are never shown.

    \b
    Examples:
      garage admin key list
      garage admin key list --json
    """
    async with AsyncClient(url, api_key) as client:
        found = await client.keys()
    if as_json:
        print_json([k.model_dump(mode="json") for k in found])
        return
    rows = [_row(k) for k in found]
    print_rows(["ID", "ROLE", "NAME", "CREATED", "SUBMITS/MIN", "ACTIVE JOBS", "OWNER"], rows)


def _row(info: KeyInfo) -> list[str]:
    created = info.created_at.strftime("%Y-%m-%d %H:%M") if info.created_at else ""
    return [
        info.id,
        info.role.value,
        info.name,
        created,
        _limit(info.limits.requests_per_minute),
        _limit(info.limits.max_active_jobs),
        info.owner or "",
    ]


def _limit(value: int | None) -> str:
    if value is None:
        return "default"
    return "none" if value == 0 else str(value)


@key.command("rotate")
@click.argument("key_id")
@click.option("--quiet", "-q", is_flag=True, help="Print only the new key, alone on stdout.")
@broker_options
@run_async
async def rotate(key_id: str, quiet: bool, url: str | None, api_key: str | None) -> None:
    """Give a key a new secret, shown this once; the old one stops working on every
    broker at once. The id stays, so the key's jobs, usage and limits stay its own.

    \b
    Example:
      garage admin key rotate key_01JD... --quiet > rig-1.key
    """
    async with AsyncClient(url, api_key) as client:
        rotated = await client.rotate_key(key_id)
    if quiet:
        click.echo(rotated.key)
    else:
        click.echo(f"rotated {rotated.role.value} key {rotated.id} ({rotated.name}):")
        click.echo(rotated.key)


@key.command("revoke")
@click.argument("key_id")
@broker_options
@run_async
async def revoke(key_id: str, url: str | None, api_key: str | None) -> None:
    """Revoke a key: every broker refuses it within a second.

    \b
    Example:
      garage admin key revoke key_01JD...
    """
    async with AsyncClient(url, api_key) as client:
        await client.revoke_key(key_id)
    click.echo(f"revoked {key_id}")


@key.command("limits")
@click.argument("key_id")
@click.option(
    "--requests-per-minute",
    "--rpm",
    type=click.IntRange(min=0),
    help="Job submits a minute (a batch is one); 0: no limit. Left out: the broker's default.",
)
@click.option(
    "--max-active-jobs",
    type=click.IntRange(min=0),
    help="Jobs queued or running at once; 0: no limit. Left out: the broker's default.",
)
@click.option(
    "--models",
    help="A worker key's: the only models its workers may serve, comma-separated. Left out: any.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key as JSON.")
@broker_options
@run_async
async def limits(
    key_id: str,
    requests_per_minute: int | None,
    max_active_jobs: int | None,
    models: str | None,
    as_json: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """Set a key's own limits; a limit left out goes back to the broker's default. Every
    broker applies them from the key's next request.

    \b
    Examples:
      garage admin key limits key_01JD... --rpm 60 --max-active-jobs 1000
      garage admin key limits key_01JE... --models llama3.1:8b,qwen2.5:7b   # a worker key
      garage admin key limits key_01JD...            # back to the defaults
    """
    served = [m.strip() for m in models.split(",") if m.strip()] if models is not None else None
    update = KeyLimitsUpdate(
        requests_per_minute=requests_per_minute, max_active_jobs=max_active_jobs, models=served
    )
    async with AsyncClient(url, api_key) as client:
        info = await client.set_key_limits(key_id, update)
    if as_json:
        print_json(info)
        return
    served_text = ", ".join(info.limits.models) if info.limits.models is not None else "any"
    click.echo(
        f"{info.id} ({info.name}): submits/min {_limit(info.limits.requests_per_minute)}, "
        f"active jobs {_limit(info.limits.max_active_jobs)}, models {served_text}"
    )
