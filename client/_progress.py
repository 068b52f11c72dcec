"""Progress of many requests: a bar where someone watches, lines where a log is written.

A notebook gets tqdm's widget and a terminal its bar. Where stderr is a file or a pipe (a
log, CI), a bar's carriage returns would pile up on one line, so the progress is a line
every few seconds instead, and one at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol

__all__ = ["Progress", "progress"]

_LINE_EVERY_S = 5.0


class Progress(Protocol):
    n: int

    def update(self, n: int = 1) -> object: ...

    def write(self, text: str, file: Any = None) -> object:
        """Prints a line (to stderr here; tqdm's default is stdout) without breaking
        the bar."""

    def close(self) -> object: ...


def progress(total: int, desc: str, unit: str, *, enabled: bool = True) -> Progress:
    # Imported only here, so importing the client stays light.
    from tqdm.auto import tqdm as auto
    from tqdm.autonotebook import tqdm as chosen
    from tqdm.std import tqdm as plain

    in_notebook = chosen is not plain
    if enabled and not in_notebook and not sys.stderr.isatty():
        return _Lines(total, desc, unit)
    return auto(total=total, desc=desc, unit=unit, disable=not enabled)


class _Lines:
    """`desc: 12/20 req` on stderr at most every few seconds, and once at the end."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.n = 0
        self._total, self._desc, self._unit = total, desc, unit
        self._printed_at = time.monotonic()
        self._printed_n = -1

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._printed_at >= _LINE_EVERY_S:
            self._print()

    def write(self, text: str, file: Any = None) -> None:
        print(text, file=file or sys.stderr, flush=True)

    def close(self) -> None:
        if self._printed_n != self.n:
            self._print()

    def _print(self) -> None:
        self.write(f"{self._desc}: {self.n}/{self._total} {self._unit}")
        self._printed_at, self._printed_n = time.monotonic(), self.n

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
