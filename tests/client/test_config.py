"""Where connect() finds the server: arguments, else environment, else a config file, else a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

import mikro
from mikro._config import load_config


def test_nothing_configured_says_what_to_set() -> None:
    with pytest.raises(mikro.ConfigurationError) as info:
        mikro.connect()
    message = str(info.value)
    assert "MIKRO_URL" in message and "url=" in message and "mikro.yaml" in message


def test_missing_token_says_what_to_set() -> None:
    with pytest.raises(mikro.ConfigurationError, match="MIKRO_TOKEN"):
        mikro.connect("http://127.0.0.1:1/graphql")


def test_arguments_win_over_environment_over_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (Path.cwd() / "mikro.yaml").write_text("url: http://file:1/graphql\ntoken: file-token\nretries: 7\n")
    config = load_config()
    assert (config.url, config.token.get_secret_value() if config.token else None, config.retries) == (
        "http://file:1/graphql",
        "file-token",
        7,
    )
    monkeypatch.setenv("MIKRO_URL", "http://env:2/graphql")
    monkeypatch.setenv("MIKRO_TIMEOUT", "4.5")
    config = load_config()
    assert (config.url, config.timeout, config.retries) == ("http://env:2/graphql", 4.5, 7)
    assert config.token is not None and config.token.get_secret_value() == "file-token"
    config = load_config(url="http://arg:3/graphql", token="arg-token")
    assert config.url == "http://arg:3/graphql" and config.token is not None
    assert config.token.get_secret_value() == "arg-token"
    assert config.ws_url == "ws://arg:3/graphql"
    assert "arg-token" not in repr(config)


def test_toml_and_mikro_section(monkeypatch: pytest.MonkeyPatch) -> None:
    (Path.cwd() / "mikro.toml").write_text('[mikro]\nurl = "https://lab.example/graphql"\ntoken = "t"\n')
    config = load_config()
    assert config.url == "https://lab.example/graphql" and config.ws_url == "wss://lab.example/graphql"


def test_upstream_fakts_yaml() -> None:
    (Path.cwd() / "fakts.yaml").write_text(
        "mikro:\n  endpoint_url: http://lab:8080/graphql\n  token: fakts-token\nherre:\n  client_id: x\n"
    )
    config = load_config()
    assert config.url == "http://lab:8080/graphql"
    assert config.token is not None and config.token.get_secret_value() == "fakts-token"


def test_first_file_wins_and_mikro_config_names_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (Path.cwd() / "mikro.yml").write_text("url: http://yml:1/graphql\ntoken: a\n")
    (Path.cwd() / "fakts.yaml").write_text("mikro:\n  endpoint_url: http://fakts:1/graphql\n  token: b\n")
    assert load_config().url == "http://yml:1/graphql"
    elsewhere = tmp_path / "lab.yaml"
    elsewhere.write_text("url: http://named:1/graphql\ntoken: c\n")
    monkeypatch.setenv("MIKRO_CONFIG", str(elsewhere))
    assert load_config().url == "http://named:1/graphql"
    monkeypatch.setenv("MIKRO_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(mikro.ConfigurationError, match=r"missing\.yaml"):
        load_config()


def test_bad_values_are_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    (Path.cwd() / "mikro.yaml").write_text("url: [not, a, url\n")
    with pytest.raises(mikro.ConfigurationError, match=r"mikro\.yaml"):
        load_config()
    (Path.cwd() / "mikro.yaml").write_text("url: http://x/graphql\ntoken: t\n")
    monkeypatch.setenv("MIKRO_TIMEOUT", "soon")
    with pytest.raises(mikro.ConfigurationError, match="timeout"):
        load_config()
    monkeypatch.delenv("MIKRO_TIMEOUT")
    with pytest.raises(mikro.ConfigurationError, match="http"):
        load_config(url="ftp://x")
