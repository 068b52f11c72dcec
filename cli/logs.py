"""Logging setup for the CLI; library code only creates loggers.

garage's own records carry a stable event name as their message (`job.submitted`,
`worker.health`) and their facts as `extra` fields (`job_id`, `worker_id`, ...). On a
terminal they print as `time level event key=value ...`; elsewhere (a container, systemd's
journal, a file shipped to Loki) as one JSON object per line with the same fields, so a
query can select on `event` and `job_id` without parsing text. Records of other libraries
(uvicorn) keep their text under `message`, with `event` "log".
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

__all__ = ["configure_logging", "log_options"]

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
_F = TypeVar("_F", bound=Callable[..., Any])


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class _TextFormatter(logging.Formatter):
    """`time level event key=value ...`: the event name plus the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname.lower():7} "
        line += f"{record.getMessage()} {extras}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, event and the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if record.name.startswith("garage"):
            entry["event"] = record.getMessage()
        else:
            entry["event"] = "log"
            entry["message"] = record.getMessage()
        for key, value in _extras(record).items():
            entry.setdefault(key, value)  # an extra never hides the fields above
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Logs to stderr at `level`: as text (`fmt` "text", or "auto" on a terminal) or as
    JSON lines ("json", or "auto" anywhere else)."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if as_json else _TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_options(level_envvar: str) -> Callable[[_F], _F]:
    """The `--log-level` and `--log-format` options of a long-running command."""

    def decorate(command: _F) -> _F:
        command = click.option(
            "--log-format",
            envvar="GARAGE_LOG_FORMAT",
            default="auto",
            show_default=True,
            type=click.Choice(["auto", "text", "json"]),
            help="Text lines, or JSON lines (one object per line, for Loki and friends); "
            "auto: text on a terminal, JSON elsewhere.",
        )(command)
        return click.option(
            "--log-level",
            envvar=level_envvar,
            default="info",
            show_default=True,
            type=click.Choice(["debug", "info", "warning", "error"]),
        )(command)

    return decorate
