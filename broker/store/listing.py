"""Newest-first pages of an index sorted set (one owner's jobs, all jobs, one owner's
batches), with the records behind them.

An index scores each id by its creation ms, and Redis orders equal scores by member, so
the order is (ms, id). Many jobs are made in the same millisecond: a page resumes within
the previous page's last millisecond, after its id, never at the next millisecond (which
would skip the rest of that one). Ids whose record has expired (retention) are dropped
from the index by the listing that finds them gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["newest_first"]

T = TypeVar("T")


async def newest_first(
    redis: Any,
    index: str,
    record_key: Callable[[str], str],
    build: Callable[[dict[str, str]], T | None],
    *,
    limit: int,
    after: str | None,
    chunk: int,
    max_scan: int = 10_000,
) -> tuple[list[T], bool]:
    """Up to `limit` records newest first, after the id `after`, and whether there are
    more. `build` turns a record's hash into an item, or None to skip it (a filter);
    at most `max_scan` index entries are read."""
    upper = "+inf"
    resume: tuple[float, str] | None = None  # (score, id) of the previous page's last
    if after:
        score = await redis.zscore(index, after)
        if score is None:
            return [], False
        upper = f"{score:.0f}" if score == int(score) else f"{score}"
        resume = (score, after)
    found: list[T] = []
    gone: list[str] = []
    offset = 0
    while len(found) <= limit and offset < max_scan:
        scored = await redis.zrevrangebyscore(
            index, upper, "-inf", start=offset, num=chunk, withscores=True
        )
        if not scored:
            break
        offset += len(scored)
        ids = [
            member
            for member, score in scored
            if resume is None or score < resume[0] or member < resume[1]
        ]
        async with redis.pipeline(transaction=False) as pipe:
            for member in ids:
                pipe.hgetall(record_key(member))
            rows = await pipe.execute()
        for member, row in zip(ids, rows, strict=True):
            if not row:
                gone.append(member)
            elif (item := build(row)) is not None:
                found.append(item)
        if len(scored) < chunk:
            break
    if gone:
        await redis.zrem(index, *gone)
    return found[:limit], len(found) > limit
