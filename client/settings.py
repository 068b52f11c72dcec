"""Client settings: arguments override `GARAGE_URL` and `GARAGE_API_KEY`."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ClientSettings"]


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GARAGE_", extra="ignore")

    url: str = Field("http://127.0.0.1:8080", description="Base URL of the broker.")
    api_key: SecretStr | None = Field(None, description="Bearer key for the broker.")
    timeout_s: float = Field(60.0, gt=0, description="Timeout of one HTTP request, seconds.")
