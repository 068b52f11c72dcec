"""Loads the Lua scripts, each one state transition, and registers them once per client.

Every script is prefixed with `lib.lua` (shared helpers and the key map) and has its key
prefixes filled in from `keys.py` and its error codes from `garage.contract.ErrorCode`, so
neither is spelled twice. Each is called through redis-py's `AsyncScript`: EVALSHA, and on
NOSCRIPT (a fresh or restarted Redis) it loads the script and calls again. Calls go over
the store's `ScriptChannel` (`script_channel.py`) when it has one; calls queued in a
pipeline (`client=`) go through redis-py's pool.
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from garage.contract import ErrorCode, JobErrorType

from . import keys
from .contributions import lua_placeholders as contribution_placeholders
from .quotas import lua_placeholders as quota_placeholders
from .stats import lua_placeholders as stats_placeholders
from .usage import lua_placeholders as usage_placeholders

if TYPE_CHECKING:
    from .script_channel import ScriptChannel

__all__ = ["NAMES", "Script", "Scripts", "source"]

NAMES = ("submit", "claim", "report", "complete", "fail", "cancel", "watch", "reap",
         "claim_batch", "stage_batch", "commit_batch")  # fmt: skip

_PLACEHOLDERS = {
    "__JOB_PREFIX__": keys.JOB_PREFIX,
    "__EVENTS_SUFFIX__": keys.EVENTS_SUFFIX,
    "__QUEUE_PREFIX__": keys.QUEUE_PREFIX,
    "__LEASES__": keys.LEASES,
    "__START_DEADLINES__": keys.START_DEADLINES,
    "__WAKE_CHANNEL__": keys.WAKE_CHANNEL,
    "__ENDED_CHANNEL__": keys.ENDED_CHANNEL,
    "__BATCH_PREFIX__": keys.BATCH_PREFIX,
    "__BATCHES_TO_FINALIZE__": keys.BATCHES_TO_FINALIZE,
    "__EVENTS_CHANNEL_PREFIX__": keys.EVENTS_CHANNEL_PREFIX,
    "__BATCH_CHANNEL_PREFIX__": keys.BATCH_CHANNEL_PREFIX,
    **{f"__CODE_{code.name.upper()}__": code.value for code in ErrorCode},
    **{f"__TYPE_{kind.name.upper()}__": kind.value for kind in JobErrorType},
    **stats_placeholders(),
    **usage_placeholders(),
    **quota_placeholders(),
    **contribution_placeholders(),
}


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The full text of script `name` (e.g. "claim"), prelude and keys filled in."""
    text = _read("lib.lua") + "\n" + _read(f"{name}.lua")
    for placeholder, value in _PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    return text


class Script:
    """One script: over the channel when there is one, else (and in pipelines) redis-py's."""

    __slots__ = ("_channel", "_registered", "sha", "source")

    def __init__(self, redis: Any, name: str, channel: ScriptChannel | None) -> None:
        self.source = source(name)
        self._registered = redis.register_script(self.source)
        self.sha: str = self._registered.sha
        self._channel = channel
        if channel is not None:
            channel.register(self.sha, self.source)

    def __call__(self, *, args: list[Any], client: Any = None) -> Awaitable[Any]:
        if client is None and self._channel is not None:
            return self._channel.call(self.sha, self.source, args)
        return self._registered(args=args, client=client)


class Scripts:
    """The registered scripts, as explicit attributes. `in_order`: each call is written to
    Redis before it returns, and runs there after every call made before it (the channel)."""

    def __init__(self, redis: Any, channel: ScriptChannel | None = None) -> None:
        self.in_order = channel is not None

        def script(name: str) -> Script:
            return Script(redis, name, channel)

        self.submit = script("submit")
        self.claim = script("claim")
        self.report = script("report")
        self.complete = script("complete")
        self.fail = script("fail")
        self.cancel = script("cancel")
        self.watch = script("watch")
        self.reap = script("reap")
        self.claim_batch = script("claim_batch")
        self.stage_batch = script("stage_batch")
        self.commit_batch = script("commit_batch")
