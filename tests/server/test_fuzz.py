"""A GraphQL fuzzer that is not ours (hypothesis-graphql) against the live server: whatever queries and
mutations it makes up, valid or not, the server answers with a GraphQL body (errors with a code), never
a 5xx, and stays up."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import nodes
from hypothesis_graphql import strategies as gql

import mikro
from tests.fixtures_servers import MikroServer

SCHEMA = (Path(mikro.__file__).parent / "schema.graphql").read_text()

CUSTOM_SCALARS: dict[str, Any] = {
    "DateTime": st.datetimes().map(lambda d: d.isoformat()).map(nodes.String),
    "Base64": st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()).map(nodes.String),
    "JSON": st.one_of(st.integers(), st.text(max_size=20)).map(
        lambda v: nodes.Int(v) if isinstance(v, int) else nodes.String(v)
    ),
}
DOCUMENTS = st.one_of(
    gql.queries(SCHEMA, custom_scalars=CUSTOM_SCALARS),
    gql.mutations(SCHEMA, custom_scalars=CUSTOM_SCALARS),
    gql.queries(SCHEMA, custom_scalars=CUSTOM_SCALARS, mode=gql.Mode.NEGATIVE),
)


@pytest.fixture(scope="module")
def fuzz_client(mikro_server: MikroServer) -> Any:
    token = mikro_server.add_user("fuzzer")
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.mark.slow
def test_made_up_documents_never_get_a_5xx(mikro_server: MikroServer, fuzz_client: httpx.Client) -> None:
    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(document=DOCUMENTS)
    def check(document: str) -> None:
        response = fuzz_client.post(mikro_server.url, json={"query": document})
        assert response.status_code < 500, (document, response.text)
        body = response.json()
        for error in body.get("errors") or []:
            assert error["extensions"]["code"] != "INTERNAL_SERVER_ERROR", (document, error)

    check()
    assert mikro_server.running
    assert fuzz_client.post(mikro_server.url, json={"query": "{ me { id } }"}).json()["data"]["me"]["id"]
