"""Fleet-wide job statistics: counters and histograms kept in Redis by the Lua scripts.

Every script that moves a job (submit, lease, report, end) adds to one hash in the same
atomic call, so the figures are exact and every broker replica reads the same ones: a
Prometheus behind a load balancer sees one series, not one per replica that happened to
answer. A field is `<family><SEP><labels...><SEP><model>` for a counter and
`<family><SEP><bucket index or "sum"><SEP><labels...><SEP><model>` for a histogram; the
model comes last, so a model name is never split. Buckets are counted one by one (the
Lua side finds the bucket) and made cumulative when read.

Model names are bounded: the first `MAX_MODELS` names seen get their own series, later
ones are counted under `OTHER_MODEL`, so a key submitting jobs for made-up models cannot
grow the hash or a scrape without end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import keys

__all__ = [
    "COUNTERS",
    "HISTOGRAMS",
    "OTHER_MODEL",
    "Histogram",
    "HistogramValue",
    "Stats",
    "StatsStore",
    "lua_placeholders",
    "parse",
]

SEP = "\x1f"  # ASCII unit separator: not found in model names, lanes or statuses
MAX_MODELS = 1000
OTHER_MODEL = "_other"

COUNTERS: dict[str, tuple[str, ...]] = {
    # family: labels before the model
    "submitted": ("lane",),
    "finished": ("status", "lane"),
    "retries": ("reason", "lane"),
    "lease_expiries": ("lane",),
    "cancelled": ("state", "lane"),
    "rate_limited": ("limit", "lane"),  # a batch's refusals have model ""
    "prompt_tokens": (),
    "completion_tokens": (),
    "fenced": (),  # a field with no labels and no model
}


@dataclass(frozen=True)
class Histogram:
    labels: tuple[str, ...]  # before the model
    bounds: tuple[float, ...]  # upper bounds of the finite buckets, ascending


_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
HISTOGRAMS: dict[str, Histogram] = {
    "queue_wait": Histogram(("lane",), _LATENCY),  # submit -> first lease
    "first_token": Histogram(("lane",), _LATENCY),  # submit -> first streamed text
    "duration": Histogram(
        ("status", "lane"), (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
    ),  # lease -> end, for jobs that ended while running
    "tokens_per_second": Histogram((), (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)),
}


def lua_placeholders() -> dict[str, str]:
    """What lib.lua's `__STATS_*__` placeholders stand for."""
    values = {
        "__STATS__": keys.STATS,
        "__STATS_MODELS__": keys.STATS_MODELS,
        "__STATS_MAX_MODELS__": str(MAX_MODELS),
        "__STATS_OTHER_MODEL__": OTHER_MODEL,
    }
    for name, histogram in HISTOGRAMS.items():
        bounds = ", ".join(repr(float(b)) for b in histogram.bounds)
        values[f"__BUCKETS_{name.upper()}__"] = "{" + bounds + "}"
    return values


@dataclass
class HistogramValue:
    counts: list[int]  # per bucket, not cumulative; the last one is +Inf
    sum: float = 0.0


@dataclass
class Stats:
    """One read of the hash: label tuples (the model last) to values."""

    counters: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)
    histograms: dict[str, dict[tuple[str, ...], HistogramValue]] = field(default_factory=dict)


class StatsStore:
    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def read(self) -> Stats:
        return parse(await self._redis.hgetall(keys.STATS))


def parse(fields: dict[str, str]) -> Stats:
    """The hash's fields as counters and histograms; fields of no known family are left
    out (a newer broker's, during a rolling upgrade)."""
    stats = Stats()
    for name, raw in fields.items():
        family, _, rest = name.partition(SEP)
        if family in COUNTERS:
            labels = tuple(rest.split(SEP, len(COUNTERS[family]))) if rest else ()
            stats.counters.setdefault(family, {})[labels] = float(raw)
        elif family in HISTOGRAMS:
            histogram = HISTOGRAMS[family]
            bucket, *labels = rest.split(SEP, len(histogram.labels) + 1)
            values = stats.histograms.setdefault(family, {})
            value = values.get(tuple(labels))
            if value is None:
                value = values[tuple(labels)] = HistogramValue([0] * (len(histogram.bounds) + 1))
            if bucket == "sum":
                value.sum = float(raw)
            elif bucket.isdigit() and 1 <= int(bucket) <= len(value.counts):
                value.counts[int(bucket) - 1] = int(raw)
    return stats
