"""Broker settings: flags override `GARAGE_BROKER_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BrokerSettings"]


class BrokerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GARAGE_BROKER_", extra="ignore", populate_by_name=True
    )

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port to listen on (0: any free).")
    redis_url: str | None = Field(
        None,
        description="Redis URL (redis://, rediss:// for TLS, unix://, or "
        "redis+sentinel://[:password@]host:port[,host:port]/master[/db] for a primary "
        "behind Sentinel); when unset the broker runs an embedded redis-server.",
    )
    redis_max_connections: int = Field(
        256, ge=8, description="Redis connections this process opens at most; more wait."
    )
    data_dir: Path = Field(
        Path(".garage/broker"), description="Folder of the embedded store's append-only file."
    )
    admin_key: SecretStr | None = Field(
        None,
        validation_alias="GARAGE_ADMIN_KEY",
        description="A bootstrap admin key accepted as is (from GARAGE_ADMIN_KEY).",
    )
    embedded_max_memory_mb: int = Field(
        1024,
        ge=16,
        description="The embedded redis-server's maxmemory, in MiB (policy noeviction: "
        "nothing is ever dropped; new work is refused past store_full_at of it).",
    )
    store_full_at: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Fraction of Redis's maxmemory past which new jobs, batches and files "
        "are refused (507) while running work finishes; a Redis with no maxmemory is never "
        "full.",
    )
    lease_s: float = Field(30.0, gt=0, description="Seconds a lease lasts unless renewed.")
    retention_s: float = Field(
        7 * 86400.0, gt=0, description="Seconds finished jobs and their events are kept."
    )
    poll_wait_max_s: float = Field(
        30.0, gt=0, le=60, description="Longest a worker's long-poll is parked, in seconds."
    )
    max_workers_per_key: int = Field(
        64,
        ge=0,
        description="Live workers one worker key may have in the fleet view; a poll for "
        "one more is refused (429). 0: no limit.",
    )
    worker_alive_s: float = Field(
        60.0, gt=0, description="Seconds since its last poll that a worker counts as live."
    )
    reap_interval_s: float = Field(
        1.0, gt=0, description="Seconds between reaper passes in this process."
    )
    finalize_interval_s: float = Field(
        1.0, gt=0, description="Seconds between looks for finished batches to write out."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest request body accepted, in bytes."
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds a client has to send a request's head (request line and headers), "
        "counted from connecting or from the first byte of a later request on the connection; "
        "then the connection is closed.",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Seconds a request body may stall (no byte arriving) while the broker "
        "reads it; then the answer is 408 and the connection is closed. Long-polls and "
        "streamed answers are not limited: only the reading of the request is.",
    )
    default_start_timeout_s: float = Field(
        86400.0,
        ge=0,
        description="Seconds a queued job waits for a worker to start it when it names no "
        "start_timeout_s; then it expires, so forgotten work cannot fill the store. 0: it "
        "waits for ever.",
    )
    default_requests_per_minute: int = Field(
        600,
        ge=0,
        description="Job submits a minute a key may make, unless an admin set its own "
        "(a batch is one; a minute's worth may come at once); 0: no limit.",
    )
    default_max_active_jobs: int = Field(
        100_000,
        ge=0,
        description="Jobs a key may have queued or running at once, unless an admin set "
        "its own (a batch's jobs count); 0: no limit.",
    )
    key_cache_s: float = Field(
        5.0, ge=0, description="Seconds an authenticated key is cached in memory."
    )
    log_level: str = Field("info", description="Log level of the broker process.")

    @property
    def lease_ms(self) -> int:
        return round(self.lease_s * 1000)

    @property
    def retention_ms(self) -> int:
        return round(self.retention_s * 1000)

    @property
    def worker_alive_ms(self) -> int:
        return round(self.worker_alive_s * 1000)
