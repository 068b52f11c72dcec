"""The `garage` command: one click group per noun, each in its own module."""

from __future__ import annotations

import click

from .admin import admin
from .broker import broker
from .chat import chat
from .fleet import workers
from .job import job
from .models import models
from .up import up
from .worker import worker

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="garage-ai", prog_name="garage")
def main() -> None:
    """garage: a pull-based job network that turns GPUs behind NAT into one LLM service."""


main.add_command(up)
main.add_command(broker)
main.add_command(chat)
main.add_command(admin)
main.add_command(job)
main.add_command(models)
main.add_command(worker)
main.add_command(workers)
