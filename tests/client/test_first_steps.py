"""A new user's first steps: the server's base URL works, a down server is reported, opening is cheap."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import mikro
from tests.fixtures_servers import free_port, process_env

pytestmark = pytest.mark.anyio


async def test_the_servers_base_url_reaches_its_graphql_endpoint(mikro_server: Any, alice_token: str) -> None:
    base = mikro_server.url.removesuffix("/graphql")
    for url in (base, base + "/"):
        async with mikro.connect(url, token=alice_token) as m:
            assert m.config.url == mikro_server.url
            assert (await m.me()).username.startswith("alice-")


async def test_a_wrong_path_says_where_the_endpoint_is(mikro_server: Any, alice_token: str) -> None:
    base = mikro_server.url.removesuffix("/graphql")
    async with mikro.connect(base + "/api", token=alice_token, retries=0) as m:
        with pytest.raises(mikro.HTTPStatusError, match=r"HTTP 404 .*/api: .*base URL \+ /graphql"):
            await m.me()


async def test_connecting_is_lazy_the_first_call_names_the_down_server() -> None:
    # Documented choice: entering sends no request (so it costs nothing and works offline); the first
    # call raises ConnectError naming the URL once its retries are spent.
    url = f"http://127.0.0.1:{free_port()}/graphql"
    async with mikro.connect(url, token="t", retries=0, timeout=5) as m:
        with pytest.raises(mikro.ConnectError, match=f"could not connect to {url}"):
            await m.list_samples()


_WARM_UP_SCRIPT = """
import sys
import threading

import anyio

import mikro
from mikro.datalayer import _warmup

gate = threading.Event()
sys.modules["builtins"].mikro_test_gate = gate
# The warm-up imports this module first; it blocks until the script lets it go.
_warmup._MODULES = ("gated_pixels", *_warmup._MODULES)
_warmup._modules.cache_clear()


async def main() -> None:
    async with mikro.connect() as m:
        assert not _warmup.pixel_stack_imported()
        sample = await m.create_sample("metadata only")   # never waits for the warm-up
        assert [s.id for s in await m.list_samples(ids=[sample])] == [sample.id]
        assert not _warmup.pixel_stack_imported()
        print("metadata done while warming up", flush=True)
        gate.set()
        import numpy as np
        rep = await m.create_representation(np.ones((8, 8), np.uint8), name="px")  # waits, then uploads
        assert _warmup.pixel_stack_imported()
        print("pixels", int(await m.compute(rep.data.sum())), flush=True)


anyio.run(main, backend=sys.argv[1])
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_opening_a_session_does_not_wait_for_the_pixel_stack(
    backend: str, mikro_server: Any, alice_token: str, tmp_path: Path
) -> None:
    (tmp_path / "gated_pixels.py").write_text("import builtins\nbuiltins.mikro_test_gate.wait()\n")
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(_WARM_UP_SCRIPT))
    env = process_env(MIKRO_URL=mikro_server.url, MIKRO_TOKEN=alice_token, PYTHONPATH=str(tmp_path))
    result = subprocess.run(
        [sys.executable, str(script), backend],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["metadata done while warming up", "pixels 64"]
