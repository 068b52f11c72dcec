"""`garage chat`: one prompt, the answer streamed to the terminal."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from garage.client import AsyncClient
from garage.client.errors import GarageError

from ._common import EXIT_USAGE, broker_options, fail, run_async, say
from ._stream import print_stream

__all__ = ["chat"]


@click.command("chat")
@click.option("-m", "--model", required=True, help="Model to ask.")
@click.option("-s", "--system", default=None, help="A system message to send first.")
@click.option(
    "-f",
    "--file",
    "prompt_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Read the prompt from this file.",
)
@click.option("--max-tokens", type=click.IntRange(min=1), default=None)
@click.option("--temperature", type=click.FloatRange(0, 2), default=None)
@click.argument("prompt", required=False)
@broker_options
@run_async
async def chat(
    model: str,
    system: str | None,
    prompt_file: Path | None,
    max_tokens: int | None,
    temperature: float | None,
    prompt: str | None,
    url: str | None,
    api_key: str | None,
) -> None:
    """Ask MODEL one PROMPT and stream the answer.

    PROMPT `-` (or no PROMPT with input piped in) reads the prompt from stdin. Ctrl-C
    cancels the job and says its id.

    \b
    Examples:
      garage chat -m llama3 "Why pull work instead of pushing it?"
      git diff | garage chat -m llama3 -s "Review this change."
      garage chat -m llama3 -f question.txt --max-tokens 200
    """
    text = _prompt(prompt, prompt_file)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    request: dict = {"messages": messages}
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    if temperature is not None:
        request["temperature"] = temperature
    async with AsyncClient(url, api_key) as client:
        job = await client.submit(model, request)
        try:
            await print_stream(client, job.id)
        except asyncio.CancelledError:  # Ctrl-C: nobody reads the answer any more
            say(f"\ncancelling job {job.id}")
            try:
                await client.cancel(job.id)
            except GarageError as exc:
                say(f"could not cancel job {job.id}: {exc}")
            raise


def _prompt(prompt: str | None, prompt_file: Path | None) -> str:
    if prompt_file is not None and prompt is not None:
        fail("give a PROMPT or --file, not both", EXIT_USAGE)
    if prompt_file is not None:
        try:
            text = prompt_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"{prompt_file}: cannot read it: {exc}", EXIT_USAGE)
    elif prompt == "-" or (prompt is None and not sys.stdin.isatty()):
        text = sys.stdin.read()
    elif prompt is None:
        fail("give a PROMPT, - to read it from stdin, or --file", EXIT_USAGE)
    else:
        text = prompt
    if not text.strip():
        fail("the prompt is empty", EXIT_USAGE)
    return text
