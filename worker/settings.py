"""Worker settings: flags override `GARAGE_WORKER_*` environment variables.

The broker URL and key fall back on the client's `GARAGE_URL` and `GARAGE_API_KEY`.
"""

from __future__ import annotations

import socket

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .backends import BackendKind
from .gpu import GpuThresholds

__all__ = ["WorkerSettings"]


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GARAGE_WORKER_",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
    )

    broker: str = Field(
        "http://127.0.0.1:8080",
        validation_alias=AliasChoices("GARAGE_WORKER_BROKER", "GARAGE_URL"),
        description="Base URL of the broker.",
    )
    token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("GARAGE_WORKER_TOKEN", "GARAGE_API_KEY"),
        description="The worker's API key (role worker).",
    )
    backend: BackendKind = Field("ollama", description="API the local backend speaks.")
    backend_url: str = Field(
        "http://127.0.0.1:11434", description="Base URL of the local inference server."
    )
    backend_api_key: SecretStr | None = Field(
        None, description="Bearer key for the backend (cloud OpenAI-compatible APIs)."
    )
    demo_tokens_per_s: float = Field(
        40.0,
        ge=0,
        description="Words a second the demo backend streams (0: all at once, as benchmarks "
        "use it).",
    )
    slots: int = Field(4, ge=1, le=1024, description="Jobs run at once.")
    name: str = Field(default_factory=socket.gethostname, description="Name in the fleet view.")
    models: list[str] | None = Field(
        None, description="Serve only these models (default: all the backend lists)."
    )
    fallback_after_s: float | None = Field(
        None, ge=0, description="Take only jobs that waited this many seconds (fallback)."
    )
    poll_wait_s: float = Field(25.0, gt=0, le=60, description="Longest a poll parks, seconds.")
    heartbeat_s: float = Field(
        5.0, gt=0, description="Seconds between heartbeats of a job with no new text."
    )
    health_interval_s: float = Field(
        5.0, gt=0, description="Seconds between checks of the backend and the GPUs."
    )
    models_refresh_s: float = Field(
        60.0, gt=0, description="Seconds between re-reads of the backend's model list."
    )
    drain_grace_s: float = Field(
        30.0, ge=0, description="On SIGTERM, seconds to finish running jobs before handing back."
    )
    backend_timeout_s: float = Field(
        600.0, gt=0, description="Longest silence from the backend mid-job, seconds."
    )
    gpu: GpuThresholds = Field(default_factory=GpuThresholds, description="GPU thresholds.")
