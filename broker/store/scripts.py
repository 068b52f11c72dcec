"""Loads the Lua scripts, each one state transition, and registers them once per client.

Every script is prefixed with `lib.lua` (shared helpers and the key map) and has its key
prefixes filled in from `keys.py`. Each connection loads every script when it opens
(`connections.py`), so a call is one EVALSHA; on NOSCRIPT redis-py's `register_script`
loads the script and calls again. Calls go over the command channel
(`command_channel.py`) when the store has one.
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from . import keys

if TYPE_CHECKING:
    from .command_channel import CommandChannel

__all__ = ["NAMES", "Script", "Scripts", "source"]

NAMES = ("submit", "claim", "report", "complete", "fail", "cancel", "watch", "reap",
         "claim_batch")  # fmt: skip

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
    """One script. Called without `client`, it goes over the command channel when there
    is one (written at once, run in call order), else through redis-py's pool."""

    __slots__ = ("_channel", "_script")

    def __init__(self, script: Any, channel: CommandChannel | None) -> None:
        self._script = script
        self._channel = channel

    def __call__(self, *, args: list[Any], client: Any = None) -> Awaitable[Any]:
        if client is not None or self._channel is None:
            return self._script(args=args, client=client)
        return self._reply(self._channel.send("EVALSHA", self._script.sha, 0, *args), args)

    async def _reply(self, sent: Awaitable[Any], args: list[Any]) -> Any:
        try:
            return await sent
        except NoScriptError:
            # Redis lost its script cache under a live connection (SCRIPT FLUSH); a new
            # connection loads every script, this call loads this one and runs again.
            return await self._script(args=args)


class Scripts:
    """The registered scripts, as explicit attributes. `in_order`: calls run in Redis in
    the order they are made, each written before its call returns (the command channel)."""

    def __init__(self, redis: Any, channel: CommandChannel | None = None) -> None:
        self.in_order = channel is not None

        def script(name: str) -> Script:
            return Script(redis.register_script(source(name)), channel)

        self.submit = script("submit")
        self.claim = script("claim")
        self.report = script("report")
        self.complete = script("complete")
        self.fail = script("fail")
        self.cancel = script("cancel")
        self.watch = script("watch")
        self.reap = script("reap")
        self.claim_batch = script("claim_batch")
