"""What every CLI command shares: broker options, the client, and error exits.

Exit codes scripts can rely on: 0 ok, 1 the job or request failed, 2 bad usage or input,
3 the broker could not be reached, 4 authentication or permission refused, 5 not found,
6 no capacity (no live worker serves the model; 503), 130 interrupted (Ctrl-C; what the
command started is cancelled first, unless Ctrl-C comes twice).

Colour only on a terminal, and never with `NO_COLOR` set (no-color.org).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click

from garage.client.errors import (
    APIError,
    AuthError,
    BrokerUnreachable,
    GarageError,
    NotFound,
    RateLimited,
    Unavailable,
)
from garage.contract import ErrorCode

__all__ = [
    "broker_options",
    "colour",
    "event_loop_factory",
    "fail",
    "print_json",
    "print_rows",
    "run_async",
    "run_loop",
    "say",
    "unserved",
]

T = TypeVar("T")

EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH, EXIT_NOT_FOUND, EXIT_NO_CAPACITY = range(1, 7)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def broker_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--url` and `--api-key`, falling back on GARAGE_URL and GARAGE_API_KEY."""
    func = click.option(
        "--api-key", envvar="GARAGE_API_KEY", default=None, help="Bearer key [env GARAGE_API_KEY]."
    )(func)
    return click.option(
        "--url", envvar="GARAGE_URL", default=None, help="Broker URL [env GARAGE_URL]."
    )(func)


def colour(text: str, **style: Any) -> str:
    """`text` styled (click.style) unless NO_COLOR is set; click.echo drops the styling
    by itself where the output is not a terminal."""
    return text if os.environ.get("NO_COLOR") else click.style(text, **style)


def say(message: str) -> None:
    """A note for the person at the terminal, on stderr (stdout stays the command's
    output)."""
    click.echo(message, err=True)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"{colour('error:', fg='red', bold=True)} {message}", err=True)
    raise SystemExit(code)


def unserved(model: str, hint: str = "") -> str:
    """What the CLI says when no live worker serves `model`."""
    return (
        f"no live worker serves model {model!r} (`garage models` lists the models served now){hint}"
    )


def run_async(coro_fn: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Runs an async command body and turns garage errors into messages and exit codes."""

    @functools.wraps(coro_fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(coro_fn(*args, **kwargs))  # type: ignore[arg-type]
        except AuthError as exc:
            if not kwargs.get("api_key"):  # nothing was sent: say how to send one
                fail("no API key: set GARAGE_API_KEY or pass --api-key", EXIT_AUTH)
            fail(exc.message, EXIT_AUTH)
        except NotFound as exc:
            fail(exc.message, EXIT_NOT_FOUND)
        except Unavailable as exc:
            model = kwargs.get("model")
            if exc.code == ErrorCode.model_not_served and model:
                can_wait = "wait_for_worker" in kwargs  # the command has --wait-for-worker
                hint = "; --wait-for-worker queues the work anyway" if can_wait else ""
                fail(unserved(model, hint), EXIT_NO_CAPACITY)
            if exc.code == ErrorCode.model_not_served:
                fail(exc.message, EXIT_NO_CAPACITY)
            # the broker answers but cannot serve now (its Redis is down): as unreachable
            fail(exc.message, EXIT_UNREACHABLE)
        except RateLimited as exc:  # the client waited out what it could
            fail(f"{exc.message} (HTTP 429)", EXIT_FAILED)
        except APIError as exc:
            fail(f"{exc.message} (HTTP {exc.status})", EXIT_FAILED if exc.status >= 500 else 2)
        except BrokerUnreachable as exc:
            fail(str(exc), EXIT_UNREACHABLE)  # it names the broker and why
        except GarageError as exc:
            fail(str(exc), EXIT_FAILED)
        except KeyboardInterrupt:  # the command cancelled what it started, and said so
            fail("interrupted", EXIT_INTERRUPTED)

    return wrapper


def print_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Rows in columns as wide as their widest cell, never cut (`kubectl get` style), so
    every id can be copied whole whatever the terminal's width."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_json(value: Any) -> None:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    click.echo(json.dumps(value, indent=2))


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed (the broker and worker extras bring it)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_loop(main: Awaitable[T]) -> T:
    """Runs a long-lived service (broker, worker, `up`) on the fastest loop at hand."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(main)  # type: ignore[arg-type]
