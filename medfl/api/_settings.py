"""The service's settings: MEDFL_* environment variables (pydantic-settings), or
given to ``create_app`` directly (tests)."""

from __future__ import annotations

import secrets
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from medfl.errors import UsageError

# Secrets someone copied from an example and never changed.
PLACEHOLDERS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "token", "password", "placeholder",
     "example", "test", "medfl", "replace-me", "xxx", "todo", "default"}
)  # fmt: skip
MIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """Where the service keeps its state, which sites it serves, who may call it."""

    model_config = SettingsConfigDict(env_prefix="MEDFL_", extra="ignore")

    data_dir: Path = Field(
        default=Path("medfl-data"), description="the database file (SQLite) and the run folders"
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql+psycopg://...); default: sqlite in data_dir",
    )
    api_token: SecretStr | None = Field(
        default=None, description="the bearer token; unset: one is generated at start-up"
    )
    development: bool = Field(
        default=False, description="allows a placeholder token (never in production)"
    )
    sites_file: Path | None = Field(
        default=None,
        description="YAML mapping site names to data sources (and policy files); "
        "default: the heart-disease demo's four hospitals",
    )
    max_upload_bytes: int = Field(default=256 * 1024, ge=1024, description="YAML uploads, JSON")
    kubernetes: bool = Field(
        default=False, description="offer the kubernetes backend (the kube context's cluster)"
    )
    kubernetes_namespace: str | None = Field(
        default=None, description="where the kubernetes backend creates FederatedExperiments"
    )
    kubernetes_poll_s: float = Field(
        default=2.0, gt=0, description="how often a FederatedExperiment's status is read"
    )

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    def url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'medfl.db').resolve()}"


def checked_token(settings: Settings) -> tuple[str, bool]:
    """The token to require, and whether it was generated here (then the caller says
    it once). A placeholder or short secret is refused outside development mode."""
    if settings.api_token is None:
        return secrets.token_urlsafe(32), True
    token = settings.api_token.get_secret_value()
    if not settings.development:
        if token.strip().lower() in PLACEHOLDERS:
            raise UsageError(
                "MEDFL_API_TOKEN is a placeholder; set a random secret "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
                "or unset it to have one generated"
            )
        if len(token) < MIN_TOKEN_LENGTH:
            raise UsageError(
                f"MEDFL_API_TOKEN is {len(token)} characters; use at least {MIN_TOKEN_LENGTH}"
            )
    return token, False
