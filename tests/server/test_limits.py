"""Request limits: the abuse requests of issue 13 are refused with an error naming the limit while an
honest client of the same server keeps getting answers; mikro's own documents stay within the limits."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from graphql import GraphQLSchema, build_schema, parse, validate
from strawberry.extensions import MaxAliasesLimiter, QueryDepthLimiter

import mikro
from mikro.api import Operation, all_operations
from mikro.server import Settings
from mikro.server._limits import QueryCache, query_cost
from tests.fixtures_servers import ServerFactory
from tests.server._helpers import Api, make_representation

pytestmark = pytest.mark.anyio

SCHEMA_FILE = Path(mikro.__file__).parent / "schema.graphql"


def _fan_out(levels: int, page: int = 100) -> str:
    """``samples { representations { sample { representations { ... } } } }``, ``levels`` deep."""
    inner = "id name"
    for level in reversed(range(levels)):
        inner = f"sample {{ id {inner} }}" if level % 2 else f"representations {{ id {inner} }}"
    return f"{{ samples(pagination: {{limit: {page}}}) {{ id {inner} }} }}"


def _aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(count)) + " }"


# (what, body, HTTP status, the Settings field the error must name)
ABUSE: list[tuple[str, bytes, int, str]] = [
    # 655,360 aliases, 10 MiB: refused before it is decoded.
    ("alias flood", json.dumps({"query": _aliases(655_360)}).encode(), 413, "max_request_bytes"),
    # 60,000 aliases, 1 MiB: parsing stops at the token limit.
    ("token flood", json.dumps({"query": _aliases(60_000)}).encode(), 200, "max_query_tokens"),
    ("many aliases", json.dumps({"query": _aliases(150)}).encode(), 200, "max_query_aliases"),
    ("deep fan-out", json.dumps({"query": _fan_out(12)}).encode(), 200, "max_query_depth"),
    ("wide fan-out", json.dumps({"query": _fan_out(6, page=1000)}).encode(), 200, "max_query_cost"),
    ("huge body", b'{"query": "{ me { id } }", "x": "' + b"x" * (17 << 20) + b'"}', 413, "max_request_bytes"),
]
BAD_BODIES: list[tuple[str, bytes]] = [
    ("not UTF-8", b'{"query": "{ me { id } }", "x": "\xff\xfe"}'),
    ("deep JSON", b'{"query": "{ me { id } }", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("not JSON", b"{ me { id } }"),
]


async def _post(api: Api, body: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"}
    return await api.client.post(api.url, content=body, headers=headers, timeout=120)


async def test_abuse_is_refused_while_an_honest_client_is_answered(new_api: Callable[..., Api]) -> None:
    attacker, honest = new_api("attacker"), new_api("honest")
    me = (await honest.data("{ me { id } }"))["me"]
    refusals: dict[str, tuple[int, dict[str, Any]]] = {}
    answers: list[dict[str, Any]] = []
    done = anyio.Event()

    async def attack() -> None:
        for what, body, _status, _limit in ABUSE:
            response = await _post(attacker, body)
            refusals[what] = (response.status_code, response.json()["errors"][0])
        done.set()

    async def ask() -> None:
        while not done.is_set():
            answers.append((await honest.data("{ me { id } }"))["me"])

    async with anyio.create_task_group() as tg:
        tg.start_soon(attack)
        tg.start_soon(ask)

    for what, _body, status, limit in ABUSE:
        got_status, error = refusals[what]
        assert got_status == status, (what, error)
        assert error["extensions"]["code"] == "BAD_USER_INPUT", (what, error)
        assert limit in error["message"], (what, error)
    assert answers and all(answer == me for answer in answers)


@pytest.mark.parametrize("what, body", BAD_BODIES, ids=[what for what, _ in BAD_BODIES])
async def test_malformed_bodies_get_a_graphql_error(api: Api, what: str, body: bytes) -> None:
    response = await _post(api, body)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert (await api.data("{ me { id } }"))["me"]


@pytest.mark.slow
async def test_a_request_past_its_deadline_is_stopped(server_factory: ServerFactory) -> None:
    # Limits off but the deadline: a fan-out of 10 images 12 levels deep resolves ~10^6 objects.
    server = await anyio.to_thread.run_sync(
        lambda: server_factory.start(request_timeout=1, max_query_depth=50, max_query_cost=10**12)
    )
    token = await anyio.to_thread.run_sync(server.add_user, "fan")
    async with httpx.AsyncClient(timeout=120) as client:
        api = Api(client, server.url, token)
        sample = (await api.data('mutation { createSample(input: {name: "s"}) { id } }'))["createSample"]
        for i in range(10):
            await make_representation(api, f"image-{i}", sample=sample["id"])
        error = await api.error(_fan_out(12))
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "request_timeout" in error["message"]
        assert (await api.data("{ me { username } }"))["me"]["username"] == "fan"


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return build_schema(SCHEMA_FILE.read_text())


@pytest.mark.parametrize("op", all_operations(), ids=lambda op: op.name)
def test_client_documents_are_within_the_default_limits(schema: GraphQLSchema, op: Operation) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    rules = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_query_aliases).validation_rules,
    ]
    document = parse(op.document, max_tokens=settings.max_query_tokens)
    assert not validate(schema, document, rules)
    # The largest page a client may ask for.
    variables = {"pagination": {"offset": 0, "limit": settings.max_page_size}}
    cost = query_cost(schema, document, None, variables, settings.list_cost_estimate)
    assert cost <= settings.max_query_cost


async def test_the_document_cache_is_bounded_in_bytes() -> None:
    cache = QueryCache(max_bytes=4 << 20, max_tokens=10**6)
    # 40 distinct ~10 KiB documents (parsed off the loop): more than the cache may hold.
    queries = [f"{{ me {{ id }} }} # {i} " + "x" * 10_000 for i in range(40)]
    for query in queries:
        await cache.prepare(query)
    assert 0 < cache.bytes <= 4 << 20
    last = await cache.prepare(queries[-1])
    assert last is await cache.prepare(queries[-1])
    assert last.document is not None


@pytest.mark.parametrize(
    "body, code",
    [
        (json.dumps({"query": f'{{ sample(id: "{2**63}") {{ id }} }}'}), "NOT_FOUND"),
        (json.dumps({"query": f'{{ samples(filter: {{ids: ["{2**64}"]}}) {{ id }} }}'}), "NOT_FOUND"),
        # A lone surrogate (JSON's \ud800 escape) in a variable.
        (
            '{"query": "mutation($n: String!) { createSample(input: {name: $n}) { id } }",'
            ' "variables": {"n": "\\udc00x"}}',
            "BAD_USER_INPUT",
        ),
        (json.dumps({"query": "{ me { id } }", "variables": [1]}), "BAD_USER_INPUT"),
        (json.dumps({"query": 1}), "BAD_USER_INPUT"),
        (json.dumps([{"query": "{ me { id } }"}]), "BAD_USER_INPUT"),
        (json.dumps({"query": "{ me { id } }", "operationName": "Nope"}), "BAD_USER_INPUT"),
    ],
    ids=[
        "id 2**63",
        "filter id 2**64",
        "lone surrogate",
        "variables list",
        "query int",
        "batch",
        "operation",
    ],
)
async def test_bad_ids_strings_and_bodies_get_a_code(api: Api, body: str, code: str) -> None:
    response = await _post(api, body.encode())
    assert response.status_code < 500
    assert response.json()["errors"][0]["extensions"]["code"] == code


async def test_punctuation_in_strings_and_comments_is_not_taken_for_tokens(api: Api) -> None:
    """Documents too long to parse blindly are refused from a count of their punctuation before parsing;
    what strings, block strings and comments hold does not count."""
    braces = "{}:()" * 1_800  # 9,000 characters of punctuation per string: 27,000 in all
    query = (
        f'# {braces}\nmutation {{ createSample(input: {{name: "{braces}", description: """{braces}"""}}) '
        "{ name description } }"
    )
    sample = (await api.data(query))["createSample"]
    assert sample == {"name": braces, "description": braces}
    # The same punctuation outside strings is refused, naming the limit.
    error = await api.error("{ me { id } }" + "{}" * 6_000)
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "max_query_tokens" in error["message"]


async def test_elements_in_strings_are_not_taken_for_values(api: Api) -> None:
    """Bodies too long to decode blindly are refused from a count of their commas before decoding; commas
    inside strings do not count."""
    commas = "," * 9_000
    body = {
        "query": "mutation($n: String!, $d: String) { createSample(input: {name: $n, description: $d}) "
        "{ id } }",
        "variables": {"n": commas, "d": commas},
        "extensions": {"padding": [commas] * 60},
    }
    response = await _post(api, json.dumps(body).encode())
    assert "errors" not in response.json(), response.text


@pytest.mark.parametrize("value", [2**70 + 1, -(2**65) - 1], ids=["beyond 64 bits", "below -2**64"])
async def test_integers_beyond_64_bits_are_decoded(api: Api, value: int) -> None:
    """The body decoder's fast path (orjson) turns integers beyond 64 bits into floats; such bodies are
    decoded again the slower way, every digit kept."""
    rep = await make_representation(api)
    body = {
        "query": "mutation($i: MetricInput!) { createMetric(input: $i) { value } }",
        "variables": {"i": {"representation": rep["id"], "key": "big", "value": {"n": value}}},
    }
    response = await _post(api, json.dumps(body).encode())
    assert type(response.json()["data"]["createMetric"]["value"]["n"]) is int
    assert response.json() == {"data": {"createMetric": {"value": {"n": value}}}}
