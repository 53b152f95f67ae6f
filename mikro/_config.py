"""Where the server is and how to talk to it: arguments, else environment, else a config file.

Keys (the same in every source; environment variables carry the ``MIKRO_`` prefix):

=================  ====================  ==========================================================
key                environment           meaning
=================  ====================  ==========================================================
``url``            ``MIKRO_URL``         ``http://host:8080/graphql`` (a bare base URL gets ``/graphql``)
``token``          ``MIKRO_TOKEN``       bearer token (``mikro user add NAME`` prints one)
``timeout``        ``MIKRO_TIMEOUT``     seconds per request, and the retry budget (default 30)
``retries``        ``MIKRO_RETRIES``     extra attempts for retry-safe requests (default 8; 0 = off)
``max_connections`` ``MIKRO_MAX_CONNECTIONS`` HTTP connection pool size (default 20)
``max_threads``    ``MIKRO_MAX_THREADS``  worker threads for pixel I/O and compute (default 8)
``token_file``     ``MIKRO_TOKEN_FILE``  a file holding the token (read when no ``token`` is given)
=================  ====================  ==========================================================

Config files are looked for in the working directory, first match wins: ``mikro.yaml``,
``mikro.yml``, ``mikro.toml``, then ``fakts.yaml`` (the upstream convention). ``MIKRO_CONFIG`` names a
file explicitly. The keys may sit at the top level or under a ``mikro`` section; for upstream
``fakts.yaml`` files ``mikro.endpoint_url`` is read as ``url``::

    # mikro.yaml                      # fakts.yaml
    url: http://127.0.0.1:8080/graphql    mikro:
    token: 5f0c...                          endpoint_url: http://127.0.0.1:8080/graphql
                                            token: 5f0c...
"""

from __future__ import annotations

import os
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mikro._exceptions import ConfigurationError

__all__ = ["CONFIG_FILES", "ClientConfig", "cores", "find_config_file", "load_config"]


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and ``taskset`` narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on macOS or Windows
        return os.cpu_count() or 1


CONFIG_FILES = ("mikro.yaml", "mikro.yml", "mikro.toml", "fakts.yaml")
_UPSTREAM_KEYS = {"endpoint_url": "url"}


def find_config_file(directory: Path | None = None) -> Path | None:
    """The config file ``MIKRO_CONFIG`` names, else the first of :data:`CONFIG_FILES` in ``directory``."""
    explicit = os.environ.get("MIKRO_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"MIKRO_CONFIG names {path}, which is not a file")
        return path
    directory = directory or Path.cwd()
    for name in CONFIG_FILES:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def read_config_file(path: Path) -> dict[str, Any]:
    """The client keys in ``path`` (YAML or TOML), top level or under a ``mikro`` section."""
    try:
        text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (OSError, yaml.YAMLError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the mikro config file {path}: {exc}") from exc
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"the mikro config file {path} must hold a mapping of keys to values")
    section = raw.get("mikro")
    values: dict[str, Any] = dict(section) if isinstance(section, dict) else {}
    for key, value in raw.items():
        if key != "mikro" and not isinstance(value, dict):
            values.setdefault(key, value)
    return {_UPSTREAM_KEYS.get(k, k): v for k, v in values.items()}


class _ConfigFileSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], directory: Path | None) -> None:
        super().__init__(settings_cls)
        path = find_config_file(directory)
        self.path = path
        self._values = read_config_file(path) if path is not None else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._values.items() if k in self.settings_cls.model_fields}


class ClientConfig(BaseSettings):
    """Resolved client settings; precedence: arguments > ``MIKRO_*`` environment > config file."""

    model_config = SettingsConfigDict(env_prefix="MIKRO_", extra="ignore")

    url: str | None = None
    token: SecretStr | None = None
    timeout: float = pydantic.Field(default=30.0, gt=0)
    # Waits of 0.25, 0.5, 1, 2, 4, 8, 8, 8 s: about half a minute (within ``timeout``), longer than a
    # server takes to restart, so a script rides out a restart instead of failing mid-upload.
    retries: int = pydantic.Field(default=8, ge=0)
    max_connections: int = pydantic.Field(default=20, ge=1)
    max_threads: int = pydantic.Field(default=8, ge=1)
    token_file: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ConfigFileSource(settings_cls, None))

    @property
    def ws_url(self) -> str:
        """The websocket URL of the same endpoint (subscriptions)."""
        url = self.url or ""
        if url.startswith("https://"):
            return "wss://" + url[len("https://") :]
        if url.startswith("http://"):
            return "ws://" + url[len("http://") :]
        return url


_MISSING_HELP = (
    "pass it to mikro.connect({arg}=...), set the environment variable {env}, or put `{arg}: ...` in a "
    "mikro.yaml in the working directory (see mikro._config for all keys and files)"
)


def _read_token_file(path: Path) -> SecretStr:
    path = path.expanduser()
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ConfigurationError(f"cannot read the token file {path}: {exc.strerror or exc}") from exc


def _graphql_endpoint(url: str) -> str:
    """The server's base URL (``http://host:8080`` or ``.../``) means its GraphQL endpoint there."""
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/"):
        return urllib.parse.urlunsplit(parts._replace(path="/graphql"))
    return url


def load_config(**overrides: Any) -> ClientConfig:
    """Resolve the settings; arguments given as ``None`` fall through to the environment and files."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        config = ClientConfig(**given)
    except pydantic.ValidationError as exc:
        raise ConfigurationError(f"invalid mikro configuration: {exc}") from exc
    if not config.url:
        raise ConfigurationError("no mikro server URL: " + _MISSING_HELP.format(arg="url", env="MIKRO_URL"))
    if not config.url.startswith(("http://", "https://")):
        raise ConfigurationError(
            f"the mikro server URL must start with http:// or https://, got {config.url!r}"
        )
    config.url = _graphql_endpoint(config.url)
    if config.token is None and config.token_file is not None:
        config.token = _read_token_file(config.token_file)
    if config.token is None or not config.token.get_secret_value():
        raise ConfigurationError("no mikro token: " + _MISSING_HELP.format(arg="token", env="MIKRO_TOKEN"))
    return config
