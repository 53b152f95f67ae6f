"""Configuration of the reference server (environment ``MIKRO_*`` and ``mikro serve`` flags)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Every knob of the server. Environment variables are ``MIKRO_<FIELD>`` (e.g. ``MIKRO_DATA_DIR``)."""

    # The client reads other MIKRO_* variables (URL, token): ignore what is not ours.
    model_config = SettingsConfigDict(env_prefix="MIKRO_", extra="ignore")

    data_dir: Path = Path("mikro-data")
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str | None = None
    admin_token: SecretStr | None = None

    s3_endpoint: str | None = None
    s3_bucket: str | None = None
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    s3_role_arn: str = "arn:aws:iam::000000000000:role/mikro-grants"
    sts_endpoint: str | None = None

    grant_ttl: int = Field(default=3600, ge=1, le=43200)
    max_string_length: int = Field(default=10_000, ge=1)
    max_page_size: int = Field(default=1000, ge=1)
    event_retention: float = Field(default=7 * 24 * 3600.0, ge=0)
    idempotency_ttl: float = Field(default=24 * 3600.0, ge=0)
    # Reserved stores never finished after this long are deleted with their objects (a client died
    # mid-upload, or never gave its reservations back). Longer than any upload may take.
    abandoned_upload_age: float = Field(default=2 * 24 * 3600.0, ge=0)
    io_threads: int = Field(default=8, ge=1)
    # Events a subscriber may fall behind by before it is cut off and catches up from the event table.
    pubsub_buffer: int = Field(default=1024, ge=1)
    # Seconds a process trusts a looked-up token without asking the database again (0: always ask).
    # Revocations on the same data dir reach it at once anyway; see mikro/server/_auth.py.
    auth_cache_ttl: float = Field(default=30.0, ge=0)
    auth_cache_size: int = Field(default=4096, ge=0)
    log_level: str = "info"
    # Mounts /bench-floor/* (unauthenticated: for benchmarks/per_request.py only, never on a real server).
    bench_floor: bool = False

    @property
    def objects_dir(self) -> Path:
        return (self.data_dir / "objects").resolve()

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin-token"

    @property
    def auth_epoch_file(self) -> Path:
        """Touched whenever users or tokens change, so every server on this data dir drops its token cache."""
        return self.data_dir / "auth-epoch"

    @property
    def uses_s3(self) -> bool:
        return bool(self.s3_endpoint or self.s3_bucket)

    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL: SQLite in the data dir unless a database URL is configured."""
        if not self.database_url:
            return f"sqlite+aiosqlite:///{(self.data_dir / 'mikro.sqlite3').resolve()}"
        url = self.database_url
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        if url.startswith("sqlite://") and not url.startswith("sqlite+"):
            return "sqlite+aiosqlite://" + url[len("sqlite://") :]
        return url
