"""The upstream spelling: MikroApp, ``with app:`` / ``async with app:`` and module-level functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mikro
import mikro.sync

from .conftest import portal_threads


@pytest.fixture
def configured_by_env(mikro_server: Any, sync_token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIKRO_URL", mikro_server.url)
    monkeypatch.setenv("MIKRO_TOKEN", sync_token)


@pytest.fixture(scope="module")
def image_id(mikro_server: Any, sync_token: str) -> str:
    with mikro.sync.connect(mikro_server.url, token=sync_token) as m:
        pixels = np.arange(2 * 32 * 48, dtype=np.uint16).reshape(2, 32, 48)
        return m.create_representation(pixels, name="seed-image", dims=("z", "y", "x")).id


def test_the_seed_example_sync_half_runs_verbatim(configured_by_env: None, image_id: str) -> None:
    from mikro import MikroApp, get_representation

    app = MikroApp()  # configured like connect(): args, env, config file
    with app:  # or: app.connect(); ...; app.disconnect()
        g = get_representation(image_id)
        peak = g.data.max().compute()

    assert int(peak) == 2 * 32 * 48 - 1
    assert portal_threads() == []  # leaving `with app:` stopped the session's thread


@pytest.mark.anyio
async def test_the_seed_example_async_half_runs_verbatim(configured_by_env: None, image_id: str) -> None:
    from mikro import MikroApp, aget_representation

    app = MikroApp()
    async with app:  # inside asyncio or trio
        g = await aget_representation(image_id)

    assert g.id == image_id and g.shape == [2, 32, 48]
    assert portal_threads() == []  # the async form runs in the caller's loop, no extra thread


def test_connect_and_disconnect_without_with(
    configured_by_env: None, image_id: str, portal_backend: str
) -> None:
    app = mikro.MikroApp(backend=portal_backend)
    session = app.connect()
    try:
        assert app.connect() is session  # idempotent while connected
        assert mikro.get_representation(image_id).name == "seed-image"
        assert [r.id for r in mikro.list_representations(ids=[image_id])] == [image_id]
        assert len(portal_threads()) == 1
    finally:
        app.disconnect()
    assert portal_threads() == []
    with pytest.raises(mikro.NotConnectedError):
        mikro.get_representation(image_id)


def test_the_innermost_with_block_is_the_current_session(
    mikro_server: Any, sync_token: str, portal_backend: str
) -> None:
    admin = mikro.MikroApp(mikro_server.url, token=mikro_server.admin_token, backend=portal_backend)
    user = mikro.MikroApp(mikro_server.url, token=sync_token, backend=portal_backend)
    with admin:
        assert mikro.me().is_admin
        with user:
            assert not mikro.me().is_admin
        assert mikro.me().is_admin


def test_configured_from_a_config_file(
    mikro_server: Any, sync_token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MIKRO_URL", raising=False)
    monkeypatch.delenv("MIKRO_TOKEN", raising=False)
    (tmp_path / "mikro.yaml").write_text(f"url: {mikro_server.url}\ntoken: {sync_token}\n")
    monkeypatch.chdir(tmp_path)
    with mikro.MikroApp():
        assert mikro.me().username.startswith("sync-")


def test_without_configuration_the_error_says_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MIKRO_URL", "MIKRO_TOKEN", "MIKRO_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(mikro.ConfigurationError, match="MIKRO_URL"):
        mikro.MikroApp().connect()
    assert portal_threads() == []  # the failed connect did not leave its thread running


@pytest.mark.anyio
async def test_sync_functions_inside_async_with_app_point_to_the_async_ones(configured_by_env: None) -> None:
    async with mikro.MikroApp():
        with pytest.raises(mikro.NotConnectedError, match="aget_representation"):
            mikro.get_representation("1")
