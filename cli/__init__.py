"""The `garage` command: one click group per noun, each in its own module."""

from __future__ import annotations

import click

from .admin import admin
from .batch import batch
from .broker import broker
from .chat import chat
from .completion import completion
from .contributions import contributions
from .fleet import workers
from .job import job
from .models import models
from .up import up
from .usage import usage
from .worker import worker

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="garage-ai", prog_name="garage")
def main() -> None:
    """garage: a pull-based job network that turns GPUs behind NAT into one LLM service.

    Commands that talk to a broker read GARAGE_URL and GARAGE_API_KEY (or --url and
    --api-key). Exit codes: 0 ok, 1 a job or request failed, 2 bad usage or input, 3 broker
    unreachable, 4 key refused, 5 not found, 6 no live worker serves the model, 130
    interrupted. Each command's --help has examples.

    \b
    Examples:
      garage up --try                       # a local network, with a chat and a batch
      garage chat -m garage-demo "Hello!"
      garage job submit -m llama3 -i prompts.json -o results.jsonl
      eval "$(garage completion bash)"      # tab completion
    """


main.add_command(up)
main.add_command(broker)
main.add_command(chat)
main.add_command(admin)
main.add_command(job)
main.add_command(batch)
main.add_command(models)
main.add_command(worker)
main.add_command(workers)
main.add_command(usage)
main.add_command(contributions)
main.add_command(completion)
