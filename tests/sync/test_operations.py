"""The blocking session against the reference server: every family of operations, on both portal backends."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import mikro
import mikro.sync


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_crud_of_samples_returns_the_async_sessions_models(session: mikro.sync.SyncMikro) -> None:
    name = unique("sample")
    created = session.create_sample(name, description="made by a script", tags=["sync"])
    assert isinstance(created, mikro.Sample)
    assert created.name == name and created.tags == ["sync"]

    fetched = session.get_sample(created.id)
    assert (fetched.id, fetched.name, fetched.description) == (created.id, name, "made by a script")

    updated = session.update_sample(created, description="changed")
    assert updated.description == "changed"
    assert [s.id for s in session.list_samples(name_contains=name)] == [created.id]
    assert [s.id for s in session.search_samples(name)] == [created.id]

    assert session.delete_sample(created) == created.id
    with pytest.raises(mikro.NotFoundError):
        session.get_sample(created.id)


def test_relations_of_datasets_and_experiments(session: mikro.sync.SyncMikro) -> None:
    parent = session.create_dataset(unique("parent"))
    child = session.create_dataset(unique("child"), parent=parent)
    assert child.parent is not None and child.parent.id == parent.id
    assert [d.id for d in session.list_datasets(parent=parent)] == [child.id]
    renamed = session.update_dataset(child, name=child.name + "-renamed")
    assert renamed.name.endswith("-renamed")
    assert session.get_dataset(child.id).parent.id == parent.id  # type: ignore[union-attr]

    experiment = session.create_experiment(unique("exp"), tags=["t1"])
    assert session.get_experiment(experiment.id).tags == ["t1"]
    assert session.update_experiment(experiment, tags=["t2"]).tags == ["t2"]
    assert [e.id for e in session.search_experiments(experiment.name)] == [experiment.id]
    assert [e.id for e in session.list_experiments(tags=["t2"], name_contains=experiment.name)] == [
        experiment.id
    ]
    for deleted in (session.delete_experiment(experiment), session.delete_dataset(child)):
        assert deleted
    assert session.search_datasets(child.name) == []


def test_iter_pages_through_everything_from_a_plain_for_loop(session: mikro.sync.SyncMikro) -> None:
    prefix = unique("paged")
    made = [session.create_sample(f"{prefix}-{i}") for i in range(5)]

    seen = [s.id for s in session.iter_samples(name_contains=prefix, page_size=2)]  # three pages

    assert sorted(seen) == sorted(s.id for s in made)
    assert all(isinstance(s, mikro.Sample) for s in session.iter_samples(name_contains=prefix))


def test_an_error_while_paging_reaches_the_for_loop_with_its_type(session: mikro.sync.SyncMikro) -> None:
    samples = session.iter_samples(page_size=0)  # raised by the async generator, on the session's loop
    with pytest.raises(mikro.ValidationError, match="page_size"):
        next(samples)
    assert list(samples) == []  # the failed iteration is over
    assert session.me().username.startswith("sync-")


def test_an_iterator_left_early_is_closed_and_the_session_goes_on(session: mikro.sync.SyncMikro) -> None:
    prefix = unique("early")
    for i in range(4):
        session.create_sample(f"{prefix}-{i}")

    with session.iter_samples(name_contains=prefix, page_size=1) as samples:
        first = next(samples)
    assert first.name.startswith(prefix)
    assert list(samples) == []  # closed: iteration is over
    assert len(session.list_samples(name_contains=prefix)) == 4


def test_errors_keep_their_type_in_the_callers_thread(
    mikro_server: Any, session: mikro.sync.SyncMikro, portal_backend: str
) -> None:
    with pytest.raises(mikro.NotFoundError) as not_found:
        session.get_representation("987654321")
    assert not_found.value.code == "NOT_FOUND"

    with (
        mikro.sync.connect(mikro_server.url, token="not-a-token", backend=portal_backend) as stranger,
        pytest.raises(mikro.AuthenticationError),
    ):
        stranger.me()

    assert session.me().username.startswith("sync-")  # the failures left the session usable


def test_one_session_serves_several_threads_at_once(session: mikro.sync.SyncMikro) -> None:
    prefix = unique("threads")
    with ThreadPoolExecutor(max_workers=4) as pool:
        made = list(pool.map(lambda i: session.create_sample(f"{prefix}-{i}"), range(12)))
    assert len({s.id for s in made}) == 12
    assert len(session.list_samples(name_contains=prefix)) == 12


def test_raw_graphql_and_the_upload_grant_operations(session: mikro.sync.SyncMikro) -> None:
    assert session.execute("query { me { username } }")["me"]["username"] == session.me().username
    grant = session.request_upload()
    assert isinstance(grant, mikro.Grant)
    assert grant.write and grant.store_id


def test_connect_passes_the_clients_settings_through(mikro_server: Any, sync_token: str) -> None:
    with mikro.sync.connect(mikro_server.url, token=sync_token, timeout=7.5, retries=0) as m:
        assert (m.config.timeout, m.config.retries) == (7.5, 0)  # the async session's own config
        assert m.me().username.startswith("sync-")
