"""Configuration of the reference server (environment ``MIKRO_*`` and ``mikro serve`` flags)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["MIN_ADMIN_TOKEN_LENGTH", "MIN_STS_SECONDS", "Settings"]

MIN_ADMIN_TOKEN_LENGTH = 16
#: The shortest credentials STS hands out (AssumeRole's DurationSeconds).
MIN_STS_SECONDS = 900


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
    # The S3 server enforces the ``aws:CurrentTime`` condition of STS session policies (AWS S3 does;
    # moto does not). Only then may a grant on S3 live less than STS's minimum of 15 minutes: every grant's
    # policy ends its credentials at ``expiresAt``, and nothing else could.
    s3_enforces_session_time: bool = False
    max_string_length: int = Field(default=10_000, ge=1)
    max_page_size: int = Field(default=1000, ge=1)
    event_retention: float = Field(default=7 * 24 * 3600.0, ge=0)
    idempotency_ttl: float = Field(default=24 * 3600.0, ge=0)
    # Reserved stores never finished after this long are deleted with their objects (a client died
    # mid-upload, or never gave its reservations back). Longer than any upload may take.
    abandoned_upload_age: float = Field(default=2 * 24 * 3600.0, ge=0)
    # Seconds between maintenance runs (event and idempotency pruning, abandoned uploads, sweeping).
    maintenance_interval: float = Field(default=3600.0, gt=0)
    # Bytes of finished arrays (uncompressed: elements x item size) one user may keep; None: no quota.
    storage_quota_bytes: int | None = Field(default=None, ge=0)
    io_threads: int = Field(default=8, ge=1)
    # Events a subscriber may fall behind by before it is cut off and catches up from the event table.
    pubsub_buffer: int = Field(default=1024, ge=1)
    # Seconds between reads of the event table for events committed by other processes on SQLite
    # (their latency to a watch on this process); PostgreSQL wakes watches by NOTIFY instead.
    event_poll_interval: float = Field(default=0.1, gt=0)
    # Seconds a process trusts a looked-up token without asking the database again (0: always ask).
    # Revocations on the same data dir reach it at once anyway; see mikro/server/_auth.py.
    auth_cache_ttl: float = Field(default=30.0, ge=0)
    auth_cache_size: int = Field(default=4096, ge=0)
    log_level: str = "info"
    # Mounts /bench-floor/* (unauthenticated: for benchmarks/per_request.py only, never on a real server).
    bench_floor: bool = False

    # What one request may cost the shared server (see mikro/server/_limits.py). A refused request gets
    # a BAD_USER_INPUT error naming the setting.
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_query_tokens: int = Field(default=10_000, ge=100)
    max_query_depth: int = Field(default=10, ge=2)
    max_query_aliases: int = Field(default=100, ge=0)
    # Values (numbers, strings ...) in a request's variables, and how deeply they may nest: an ROI of
    # 50,000 points is 250,000 values.
    max_input_values: int = Field(default=500_000, ge=1)
    max_input_depth: int = Field(default=64, ge=4)
    # Estimated objects an operation may resolve: a list multiplies what is below it by its page size,
    # or by ``list_cost_estimate`` for a nested list without pagination (a sample's images ...).
    max_query_cost: int = Field(default=1_500_000, ge=1)
    list_cost_estimate: int = Field(default=10, ge=1)
    # Seconds a request may run; past it, it is cancelled and answered with an error.
    request_timeout: float = Field(default=30.0, gt=0)
    # Bytes (estimated) of parsed and validated documents kept to skip parsing repeated queries.
    query_cache_bytes: int = Field(default=32 * 1024 * 1024, ge=0)

    # Server processes (`mikro serve --workers N`) sharing the port, the database and the store.
    workers: int = Field(default=1, ge=1)
    # At start, drop idempotency keys left pending by requests a dead server never finished. Off in
    # the workers of `--workers N`: the parent does it once, before any worker serves requests (a
    # worker restarted later would otherwise drop the keys of its siblings' requests in flight).
    recover_interrupted: bool = True

    @field_validator("admin_token")
    @classmethod
    def _strong_admin_token(cls, token: SecretStr | None) -> SecretStr | None:
        # The admin token reaches everyone's data: refuse one that could be guessed.
        if token is not None and len(token.get_secret_value()) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(
                f"MIKRO_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LENGTH} characters "
                "(unset it to have one generated)"
            )
        return token

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, level: str) -> str:
        if level.upper() not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "TRACE"):
            raise ValueError(f"unknown log level {level!r} (debug, info, warning, error, critical)")
        return level

    @model_validator(mode="after")
    def _credentials_end_at_expiry(self) -> Settings:
        if self.uses_s3 and self.grant_ttl < MIN_STS_SECONDS and not self.s3_enforces_session_time:
            raise ValueError(
                f"MIKRO_GRANT_TTL={self.grant_ttl} is shorter than the {MIN_STS_SECONDS} s STS credentials "
                "live at least: on S3 a grant's credentials would outlive its expiresAt. Use at least "
                f"{MIN_STS_SECONDS}, or set MIKRO_S3_ENFORCES_SESSION_TIME=true if your S3 server enforces "
                "the aws:CurrentTime condition of session policies (AWS S3 does)"
            )
        return self

    @property
    def credential_lifetime(self) -> int:
        """Seconds a storage credential may stay valid after it was issued: ``grant_ttl`` (on S3 the STS
        duration when that is at least 15 minutes, else the session policy's time condition)."""
        return self.grant_ttl

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

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file in the data dir (None when a database URL is configured)."""
        return None if self.database_url else (self.data_dir / "mikro.sqlite3").resolve()

    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL: SQLite in the data dir unless a database URL is configured."""
        if not self.database_url:
            return f"sqlite+aiosqlite:///{self.sqlite_path}"
        url = self.database_url
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url[len(plain) :]
        if url.startswith("sqlite://") and not url.startswith("sqlite+"):
            return "sqlite+aiosqlite://" + url[len("sqlite://") :]
        return url
