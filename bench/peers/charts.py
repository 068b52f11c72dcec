"""The PNGs of a run, drawn from the same figures as the tables: each bar is the median of
the runs and its whisker the spread (lowest to highest run).

    latency.png     p50, p90 and p99 of the round trip per peer (log scale)
    throughput.png  jobs/s drained per peer
    recovery.png    seconds from the kill to the job's second start, defaults and tuned,
                    per peer and kill target (log scale); a hatched bar at the limit
                    waited where the job did not start again
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .report import Spread, latency_figures, recoveries, spread, targets

__all__ = ["draw"]


def _bars(axes: Any, x: list[float], figures: list[Spread], **style: Any) -> None:
    medians = [m for m, _, _ in figures]
    below = [m - low for m, low, _ in figures]
    above = [high - m for m, _, high in figures]
    axes.bar(x, medians, yerr=[below, above], capsize=3, **style)


def draw(runs: list[dict[str, dict[str, Any]]], folder: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    names = list(runs[0])
    positions = list(range(len(names)))
    written = []

    figure, axes = pyplot.subplots(figsize=(10, 4.5))
    for offset, quantile in zip((-0.27, 0, 0.27), ("p50", "p90", "p99"), strict=True):
        figures = [
            spread([latency_figures(run[name]["latency_ms"])[quantile] for run in runs])
            for name in names
        ]
        _bars(axes, [p + offset for p in positions], figures, width=0.27, label=quantile)
    axes.set_yscale("log")
    axes.set_ylabel("round trip (ms, log scale)")
    _finish(axes, positions, names, f"One job at a time, submit to result - {title}")
    written.append(_save(figure, folder / "latency.png", pyplot))

    figure, axes = pyplot.subplots(figsize=(10, 4.5))
    figures = [spread([run[name]["drain"]["per_s"] for run in runs]) for name in names]
    _bars(axes, positions, figures, width=0.6)
    axes.set_ylabel("jobs/s drained by two workers")
    _finish(axes, positions, names, f"Queued jobs drained - {title}", legend=False)
    written.append(_save(figure, folder / "throughput.png", pyplot))

    rows = [(name, target) for name in names for target in targets(runs, name)]
    figure, axes = pyplot.subplots(figsize=(11, 4.8))
    for offset, mode in zip((-0.2, 0.2), ("defaults", "tuned"), strict=True):
        color = "tab:blue" if mode == "defaults" else "tab:orange"
        for x, (name, target) in enumerate(rows):
            these = recoveries(runs, name, mode, target)
            if not these:
                continue
            seconds = [r["seconds"] for r in these if r["seconds"] is not None]
            label = mode if x == 0 else None
            if seconds:
                _bars(axes, [x + offset], [spread(seconds)], width=0.4, color=color, label=label)
            else:
                limit = max(r["limit_s"] for r in these)
                axes.bar([x + offset], [limit], width=0.4, color="white", edgecolor=color,
                         hatch="//", label=label)  # fmt: skip
                axes.text(x + offset, limit, f"none in\n{limit:g} s", ha="center",
                          va="bottom", fontsize=7)  # fmt: skip
    labels = [name if target == "worker" else f"{name}\n({target})" for name, target in rows]
    axes.set_yscale("log")
    low, high = axes.get_ylim()
    axes.set_ylim(low, high * 3)  # room for the "none in" labels
    axes.set_ylabel("kill to second start (s, log scale)")
    _finish(axes, list(range(len(rows))), labels, f"Job recovery after SIGKILL - {title}")
    written.append(_save(figure, folder / "recovery.png", pyplot))
    return written


def _finish(axes: Any, positions: list[int], labels: list[str], title: str,
            legend: bool = True) -> None:  # fmt: skip
    axes.set_xticks(positions, labels, rotation=20, ha="right", fontsize=8)
    axes.set_title(title, fontsize=10)
    axes.grid(axis="y", alpha=0.3)
    if legend:
        axes.legend(fontsize=8)


def _save(figure: Any, path: Path, pyplot: Any) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path
