"""Prints a job's text to the terminal as it streams, with attempts kept apart."""

from __future__ import annotations

import click

from garage.client import AsyncClient
from garage.client.errors import JobError
from garage.contract import Job

__all__ = ["print_stream"]


async def print_stream(client: AsyncClient, job_id: str) -> Job:
    """Echoes the job's deltas; on a restart it says so and starts a fresh line, since text
    already on the terminal cannot be taken back. Returns the finished job."""
    async for event in client.events(job_id):
        if event.type == "delta":
            click.echo(event.text, nl=False)
        elif event.type == "restart":
            click.echo(f"\n[{event.reason}; attempt {event.attempt} starts over]", err=True)
        elif event.type == "error":
            click.echo()
            raise JobError(f"job {job_id} {event.status.value}: {event.error.message}")
    click.echo()
    return await client.wait(job_id, timeout_s=30)
