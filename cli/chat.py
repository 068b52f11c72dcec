"""`garage chat`: one prompt, the answer streamed to the terminal."""

from __future__ import annotations

import click

from garage.client import AsyncClient

from ._common import broker_options, run_async
from ._stream import print_stream

__all__ = ["chat"]


@click.command("chat")
@click.option("-m", "--model", required=True, help="Model to ask.")
@click.option("-s", "--system", default=None, help="A system message to send first.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None)
@click.option("--temperature", type=click.FloatRange(0, 2), default=None)
@click.argument("prompt")
@broker_options
@run_async
async def chat(
    model: str,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    prompt: str,
    url: str | None,
    api_key: str | None,
) -> None:
    """Ask MODEL one PROMPT and stream the answer."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    request: dict = {"messages": messages}
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    if temperature is not None:
        request["temperature"] = temperature
    async with AsyncClient(url, api_key) as client:
        job = await client.submit(model, request)
        await print_stream(client, job.id)
