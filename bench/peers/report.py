"""The figures of a run, summed up across its repeats: the median of each figure and its
spread (lowest to highest run), never the best run; and the tables printed from them.

A run's raw figures, per peer (as `peers_run.py` records them):

    latency_ms    every timed round trip, in milliseconds
    queued_per_s  jobs/s queued
    drain         {"jobs", "seconds", "per_s"}
    recovery      one `Recovery` (as a dict, with its "mode": defaults or tuned) per mode
                  and kill target
"""

from __future__ import annotations

import statistics
from typing import Any

from roundtrip import pct

__all__ = [
    "Spread",
    "latency_figures",
    "recoveries",
    "recovery_cells",
    "spread",
    "tables",
    "targets",
]

Spread = tuple[float, float, float]  # median, lowest, highest


def spread(values: list[float]) -> Spread:
    return statistics.median(values), min(values), max(values)


def latency_figures(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50": statistics.median(samples),
        "p90": pct(samples, 0.9),
        "p99": pct(samples, 0.99),
    }


def _cell(figure: Spread, digits: int, runs: int) -> str:
    median, low, high = figure
    if runs == 1:
        return f"{median:.{digits}f}"
    return f"{median:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def recovery_cells(recoveries: list[dict[str, Any]]) -> str:
    """One kill target's recoveries across the runs, as a table cell."""
    limit = max(r["limit_s"] for r in recoveries)
    seconds = [r["seconds"] for r in recoveries if r["seconds"] is not None]
    missing = len(recoveries) - len(seconds)
    if not seconds:
        return f"none within {limit:g} s"
    text = _cell(spread(seconds), 2, len(seconds))
    if missing:
        text += f"; {missing} of {len(recoveries)} runs: none within {limit:g} s"
    return text


def tables(runs: list[dict[str, dict[str, Any]]]) -> str:
    """The speed table and the recovery table, in Markdown, from every run's figures."""
    names = list(runs[0])
    count = len(runs)
    speed = [
        "| peer | latency p50 / p90 / p99 (ms) | timed round trips | drained (jobs/s) "
        "| queued (jobs/s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in names:
        figures = [latency_figures(run[name]["latency_ms"]) for run in runs]
        quantiles = " / ".join(
            _cell(spread([f[q] for f in figures]), 2, count) for q in ("p50", "p90", "p99")
        )
        rounds = "-".join(sorted({str(f["n"]) for f in figures}))
        drained = _cell(spread([run[name]["drain"]["per_s"] for run in runs]), 0, count)
        queued = _cell(spread([run[name]["queued_per_s"] for run in runs]), 0, count)
        speed.append(f"| {name} | {quantiles} | {rounds} | {drained} | {queued} |")
    recovery = [
        "| peer | killed | recovery, defaults (s) | recovery, tuned (s) | ran again on |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in names:
        for target in targets(runs, name):
            cells = []
            where = set()
            for mode in ("defaults", "tuned"):
                these = recoveries(runs, name, mode, target)
                cells.append(recovery_cells(these) if these else "not run")
                where |= {_where(r) for r in these if r["seconds"] is not None}
            place = ", ".join(sorted(where)) or "-"
            recovery.append(f"| {name} | {target} | {cells[0]} | {cells[1]} | {place} |")
    return "\n".join([*speed, "", *recovery])


def targets(runs: list[dict[str, dict[str, Any]]], name: str) -> list[str]:
    """The kill targets a peer's recoveries were measured for, in the order run."""
    return list(dict.fromkeys(r["target"] for r in runs[0][name]["recovery"]))


def recoveries(
    runs: list[dict[str, dict[str, Any]]], name: str, mode: str, target: str
) -> list[dict[str, Any]]:
    """One peer's recoveries in `mode` for `target`, one per run."""
    return [
        r
        for run in runs
        for r in run[name]["recovery"]
        if (r["mode"], r["target"]) == (mode, target)
    ]


def _where(recovery: dict[str, Any]) -> str:
    if recovery["rerun_worker"] is None:
        return "?"
    return (
        "the same worker"
        if recovery["rerun_worker"] == recovery["killed_worker"]
        else ("the other worker")
    )
