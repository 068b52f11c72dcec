"""The OpenAI-compatible endpoints' request bodies, as far as garage reads them.

`POST /v1/chat/completions`, `/v1/completions` and `/v1/embeddings` take OpenAI's bodies
whole: garage reads the model and whether to stream, and hands every other field to the
backend as it came (the job's request), so a field a newer OpenAI client sends is passed
on, not refused.
"""

from __future__ import annotations

from pydantic import Field

from ._base import Open

__all__ = ["InferenceRequest", "StreamOptions"]


class StreamOptions(Open):
    include_usage: bool = Field(False, description="End the stream with a usage chunk.")


class InferenceRequest(Open):
    """An OpenAI request body; fields beyond these go to the backend unchanged."""

    model: str = Field(min_length=1, max_length=256, description="A model some worker serves.")
    stream: bool = Field(False, description="Answer as server-sent chunks (not embeddings).")
    stream_options: StreamOptions | None = None

    def backend_body(self) -> dict[str, object]:
        """The body the backend gets: everything but the streaming fields (the worker
        decides how it talks to its backend)."""
        return self.model_dump(exclude={"stream", "stream_options"}, exclude_unset=True)
