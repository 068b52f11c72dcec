"""`garage completion SHELL`: the shell completion script, from click's own completion."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

__all__ = ["completion"]

_SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(_SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL; load it from your shell's start-up file.

    \b
    Examples:
      echo 'eval "$(garage completion bash)"' >> ~/.bashrc
      echo 'eval "$(garage completion zsh)"' >> ~/.zshrc
      garage completion fish > ~/.config/fish/completions/garage.fish
    """
    root = ctx.find_root()
    completer = get_completion_class(shell)
    assert completer is not None  # every choice is one click ships
    click.echo(completer(root.command, {}, "garage", "_GARAGE_COMPLETE").source())
