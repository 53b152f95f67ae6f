"""Create, get, list, update and delete of every type over HTTP; filters, pagination and relations."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.server._helpers import (
    CREATE_REP,
    UPLOAD,
    Api,
    b64,
    db_rows,
    make_representation,
    png_bytes,
    upload_zarr,
)

pytestmark = pytest.mark.anyio

SAMPLE_FIELDS = "id name description tags createdAt creator { username } representations { id }"


@pytest.mark.parametrize("kind", ["Sample", "Experiment"])
async def test_sample_and_experiment_lifecycle(api: Api, kind: str) -> None:
    lower = kind.lower()
    created = (
        await api.data(
            f"mutation($i: {kind}Input!) {{ create{kind}(input: $i) {{ {SAMPLE_FIELDS} }} }}",
            {"i": {"name": "Liver 1", "description": "mouse", "tags": ["mouse", "liver", "mouse"]}},
        )
    )[f"create{kind}"]
    assert created["name"] == "Liver 1"
    assert created["tags"] == ["mouse", "liver"]  # order kept, duplicates dropped
    assert created["representations"] == []
    assert created["creator"]["username"].startswith("alice")
    got = (
        await api.data(f"query($id: ID!) {{ {lower}(id: $id) {{ {SAMPLE_FIELDS} }} }}", {"id": created["id"]})
    )[lower]
    assert got == created

    updated = (
        await api.data(
            f'mutation($id: ID!) {{ update{kind}(id: $id, input: {{name: "Liver 2", tags: ["x"]}}) '
            f"{{ name description tags }} }}",
            {"id": created["id"]},
        )
    )[f"update{kind}"]
    assert updated == {"name": "Liver 2", "description": "mouse", "tags": ["x"]}

    deleted = await api.data(f"mutation($id: ID!) {{ delete{kind}(id: $id) }}", {"id": created["id"]})
    assert deleted[f"delete{kind}"] == created["id"]
    error = await api.error(f"query($id: ID!) {{ {lower}(id: $id) {{ id }} }}", {"id": created["id"]})
    assert error["extensions"]["code"] == "NOT_FOUND"


async def test_list_filters_and_pagination(api: Api) -> None:
    ids = []
    for i, tags in enumerate([["a", "b"], ["a"], ["b"], ["a", "b", "c"], []]):
        name = f"Cell_{i}%" if i == 3 else f"cell {i}"
        sample = await api.data(
            "mutation($i: SampleInput!) { createSample(input: $i) { id createdAt } }",
            {"i": {"name": name, "tags": tags}},
        )
        ids.append(sample["createSample"]["id"])

    async def names(flt: dict[str, Any] | None = None, page: dict[str, int] | None = None) -> list[str]:
        data = await api.data(
            "query($f: BaseFilter, $p: OffsetPaginationInput) { samples(filter: $f, pagination: $p) { id } }",
            {"f": flt, "p": page},
        )
        return [s["id"] for s in data["samples"]]

    assert await names() == ids
    assert await names({"tags": ["a", "b"]}) == [ids[0], ids[3]]
    assert await names({"tags": ["c"]}) == [ids[3]]
    assert await names({"search": "CELL 1"}) == [ids[1]]
    # LIKE wildcards in a search are taken literally
    assert await names({"search": "_3%"}) == [ids[3]]
    assert await names({"ids": [ids[4], ids[2]]}) == [ids[2], ids[4]]
    assert await names(page={"offset": 1, "limit": 2}) == ids[1:3]
    assert await names(page={"offset": 10, "limit": 2}) == []
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert await names({"createdAfter": future}) == []
    assert await names({"createdBefore": future}) == ids


async def test_lists_show_only_own_objects(new_api: Any) -> None:
    alice, bob = new_api("alice"), new_api("bob")
    await alice.data('mutation { createExperiment(input: {name: "alice exp"}) { id } }')
    await bob.data('mutation { createExperiment(input: {name: "bob exp"}) { id } }')
    assert [e["name"] for e in (await alice.data("{ experiments { name } }"))["experiments"]] == ["alice exp"]
    assert [e["name"] for e in (await bob.data("{ experiments { name } }"))["experiments"]] == ["bob exp"]


async def test_dataset_tree(api: Api) -> None:
    create = "mutation($i: DatasetInput!) { createDataset(input: $i) { id parent { id } } }"
    root = (await api.data(create, {"i": {"name": "root"}}))["createDataset"]
    child = (await api.data(create, {"i": {"name": "child", "parent": root["id"]}}))["createDataset"]
    grandchild = (await api.data(create, {"i": {"name": "grandchild", "parent": child["id"]}}))[
        "createDataset"
    ]
    assert child["parent"] == {"id": root["id"]}

    tree = await api.data(
        "query($id: ID!) { dataset(id: $id) { name children { name children { name parent { name } } } } }",
        {"id": root["id"]},
    )
    assert tree["dataset"] == {
        "name": "root",
        "children": [{"name": "child", "children": [{"name": "grandchild", "parent": {"name": "child"}}]}],
    }
    children = await api.data("query($p: ID!) { datasets(filter: {parent: $p}) { id } }", {"p": child["id"]})
    assert children["datasets"] == [{"id": grandchild["id"]}]

    # A dataset cannot move under its own descendant.
    update = "mutation($id: ID!, $p: ID!) { updateDataset(id: $id, input: {parent: $p}) { id } }"
    assert await api.code(update, {"id": root["id"], "p": grandchild["id"]}) == "BAD_USER_INPUT"

    # A dataset that holds one is not deleted by accident; recursive deletes the subtree.
    delete = "mutation($id: ID!, $r: Boolean!) { deleteDataset(id: $id, recursive: $r) }"
    assert await api.code(delete, {"id": child["id"], "r": False}) == "CONFLICT"
    await api.data(delete, {"id": child["id"], "r": True})
    for gone in (child, grandchild):
        assert (
            await api.code("query($id: ID!) { dataset(id: $id) { id } }", {"id": gone["id"]}) == "NOT_FOUND"
        )
    assert (await api.data("query($id: ID!) { dataset(id: $id) { children { id } } }", {"id": root["id"]}))[
        "dataset"
    ]["children"] == []


async def test_representation_with_relations(api: Api) -> None:
    sample = (await api.data('mutation { createSample(input: {name: "s"}) { id } }'))["createSample"]["id"]
    exp1 = (await api.data('mutation { createExperiment(input: {name: "e1"}) { id } }'))["createExperiment"][
        "id"
    ]
    exp2 = (await api.data('mutation { createExperiment(input: {name: "e2"}) { id } }'))["createExperiment"][
        "id"
    ]
    dataset = (await api.data('mutation { createDataset(input: {name: "d"}) { id } }'))["createDataset"]["id"]
    origin = await make_representation(api, "raw", dataset=dataset)
    rep = await make_representation(
        api,
        "denoised",
        variety="MASK",
        sample=sample,
        experiments=[exp1, exp2],
        dataset=dataset,
        tags=["t1"],
        origins=[origin["id"]],
        channels=[{"name": "DAPI", "emissionWavelength": 461.0, "color": "#0000ff"}],
        physicalSize={"x": 0.2, "y": 0.2, "z": 1.0},
        acquisitionDate="2024-05-01T10:00:00+00:00",
    )
    assert rep["shape"] == [2, 16, 16] and rep["dims"] == ["z", "y", "x"] and rep["dtype"] == "uint16"
    assert rep["variety"] == "MASK"

    full = await api.data(
        """query($id: ID!) { representation(id: $id) {
            sample { name representations { id } } experiments { name } dataset { name }
            origins { name derived { name } } derived { id }
            channels { name emissionWavelength excitationWavelength color }
            physicalSize { x y z t } acquisitionDate store { populated dimensionNames }
        } }""",
        {"id": rep["id"]},
    )
    r = full["representation"]
    assert r["sample"] == {"name": "s", "representations": [{"id": rep["id"]}]}
    assert [e["name"] for e in r["experiments"]] == ["e1", "e2"]
    assert r["dataset"] == {"name": "d"}
    assert r["origins"] == [{"name": "raw", "derived": [{"name": "denoised"}]}]
    assert r["derived"] == []
    assert r["channels"] == [
        {"name": "DAPI", "emissionWavelength": 461.0, "excitationWavelength": None, "color": "#0000ff"}
    ]
    assert r["physicalSize"] == {"x": 0.2, "y": 0.2, "z": 1.0, "t": None}
    assert dt.datetime.fromisoformat(r["acquisitionDate"]) == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    assert r["store"] == {"populated": True, "dimensionNames": ["z", "y", "x"]}

    lists = await api.data(
        """query($s: ID!, $e: ID!, $d: ID!, $o: ID!) {
            bySample: representations(filter: {sample: $s}) { name }
            byExperiment: representations(filter: {experiment: $e}) { name }
            byDataset: representations(filter: {dataset: $d}) { name }
            derivedFrom: representations(filter: {derivedFrom: $o}) { name }
            masks: representations(filter: {variety: MASK, dataset: $d}) { name }
            tagged: representations(filter: {tags: ["t1"]}) { name }
            experiment(id: $e) { representations { name } }
        }""",
        {"s": sample, "e": exp2, "d": dataset, "o": origin["id"]},
    )
    assert lists["bySample"] == lists["byExperiment"] == lists["derivedFrom"] == [{"name": "denoised"}]
    assert lists["masks"] == lists["tagged"] == [{"name": "denoised"}]
    assert lists["byDataset"] == [{"name": "raw"}, {"name": "denoised"}]
    assert lists["experiment"]["representations"] == [{"name": "denoised"}]

    updated = await api.data(
        """mutation($id: ID!, $e: ID!) { updateRepresentation(id: $id, input: {
            name: "renamed", variety: LABEL, experiments: [$e], tags: ["t2"], channels: []
        }) { name variety experiments { id } tags channels { name } } }""",
        {"id": rep["id"], "e": exp1},
    )
    assert updated["updateRepresentation"] == {
        "name": "renamed",
        "variety": "LABEL",
        "experiments": [{"id": exp1}],
        "tags": ["t2"],
        "channels": [],
    }


async def test_store_cannot_hold_two_representations(api: Api) -> None:
    store = await upload_zarr(api)
    await api.data(CREATE_REP, {"input": {"store": store, "name": "first"}})
    error = await api.error(CREATE_REP, {"input": {"store": store, "name": "second"}})
    assert error["extensions"]["code"] == "CONFLICT"


async def test_unfinished_store_cannot_become_a_representation(api: Api) -> None:
    grant = (await api.data(UPLOAD, {"kind": "ZARR"}))["requestUpload"]
    code = await api.code(CREATE_REP, {"input": {"store": grant["storeId"], "name": "x"}})
    assert code == "BAD_USER_INPUT"


async def test_rois_and_metrics(api: Api) -> None:
    rep = await make_representation(api)
    roi = (
        await api.data(
            """mutation($r: ID!) { createRoi(input: {representation: $r, kind: RECTANGLE,
                vectors: [[0, 0, 0, 1, 1], [0, 0, 0, 5, 5]], label: "nucleus", tags: ["n"]}) {
                id kind vectors label tags representation { id } creator { username } } }""",
            {"r": rep["id"]},
        )
    )["createRoi"]
    assert roi["vectors"] == [[0, 0, 0, 1, 1], [0, 0, 0, 5, 5]]
    assert roi["representation"] == {"id": rep["id"]}
    updated = await api.data(
        'mutation($id: ID!) { updateRoi(id: $id, input: {kind: POINT, vectors: [[0,0,0,2,2]], label: "dot"}) '
        "{ kind vectors label tags } }",
        {"id": roi["id"]},
    )
    assert updated["updateRoi"] == {
        "kind": "POINT",
        "vectors": [[0, 0, 0, 2, 2]],
        "label": "dot",
        "tags": ["n"],
    }

    metric_query = "mutation($i: MetricInput!) { createMetric(input: $i) { id key value roi { id } } }"
    whole = await api.data(metric_query, {"i": {"representation": rep["id"], "key": "mean", "value": 12.5}})
    per_roi = await api.data(
        metric_query,
        {
            "i": {
                "representation": rep["id"],
                "roi": roi["id"],
                "key": "area",
                "value": {"px": 16, "ok": True},
            }
        },
    )
    assert whole["createMetric"]["value"] == 12.5
    assert per_roi["createMetric"]["value"] == {"px": 16, "ok": True}
    assert per_roi["createMetric"]["roi"] == {"id": roi["id"]}

    listed = await api.data(
        """query($r: ID!, $roi: ID!) {
            rois(filter: {representation: $r, kind: POINT}) { id }
            labelled: rois(filter: {search: "DO"}) { id }
            metrics(filter: {representation: $r}) { key }
            area: metrics(filter: {roi: $roi}) { key }
            mean: metrics(filter: {key: "mean"}) { key value }
            representation(id: $r) { rois { id } metrics { key } }
        }""",
        {"r": rep["id"], "roi": roi["id"]},
    )
    assert listed["rois"] == listed["labelled"] == [{"id": roi["id"]}]
    assert listed["metrics"] == [{"key": "mean"}, {"key": "area"}]
    assert listed["area"] == [{"key": "area"}]
    assert listed["mean"] == [{"key": "mean", "value": 12.5}]
    assert listed["representation"]["rois"] == [{"id": roi["id"]}]

    changed = await api.data(
        "mutation($id: ID!) { updateMetric(id: $id, input: {value: [1, 2, 3]}) { key value } }",
        {"id": whole["createMetric"]["id"]},
    )
    assert changed["updateMetric"] == {"key": "mean", "value": [1, 2, 3]}
    await api.data("mutation($id: ID!) { deleteMetric(id: $id) }", {"id": whole["createMetric"]["id"]})
    # deleting the ROI takes its metrics with it
    await api.data("mutation($id: ID!) { deleteRoi(id: $id) }", {"id": roi["id"]})
    left = await api.data("query($r: ID!) { metrics(filter: {representation: $r}) { id } }", {"r": rep["id"]})
    assert left["metrics"] == []


async def test_table_from_parquet(api: Api) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rep = await make_representation(api)
    grant = (await api.data(UPLOAD, {"kind": "PARQUET"}))["requestUpload"]
    assert grant["prefix"].startswith("parquet/")
    table = pa.table({"label": pa.array([1, 2], pa.int64()), "area": pa.array([3.5, 4.0], pa.float64())})
    await anyio.to_thread.run_sync(pq.write_table, table, str(Path(grant["path"]) / "table.parquet"))

    create = """mutation($i: TableInput!) { createTable(input: $i) {
        id name columns { name type } origins { id } tags store { id path } } }"""
    created = (
        await api.data(
            create,
            {"i": {"store": grant["storeId"], "name": "regions", "origins": [rep["id"]], "tags": ["q"]}},
        )
    )["createTable"]
    assert created["columns"] == [{"name": "label", "type": "int64"}, {"name": "area", "type": "double"}]
    assert created["store"]["path"].endswith("table.parquet")
    assert created["origins"] == [{"id": rep["id"]}]
    again = await api.error(create, {"i": {"store": grant["storeId"], "name": "again"}})
    assert again["extensions"]["code"] == "CONFLICT"

    listed = await api.data(
        'query($o: ID!) { tables(filter: {origin: $o}) { name } q: tables(filter: {tags: ["q"]}) { name } }',
        {"o": rep["id"]},
    )
    assert listed == {"tables": [{"name": "regions"}], "q": [{"name": "regions"}]}
    renamed = await api.data(
        'mutation($id: ID!) { updateTable(id: $id, input: {name: "cells", origins: []}) '
        "{ name origins { id } } }",
        {"id": created["id"]},
    )
    assert renamed["updateTable"] == {"name": "cells", "origins": []}
    await api.data("mutation($id: ID!) { deleteTable(id: $id) }", {"id": created["id"]})
    assert not Path(grant["path"]).exists()  # the table's objects go with it


async def test_table_needs_its_parquet_file(api: Api) -> None:
    grant = (await api.data(UPLOAD, {"kind": "PARQUET"}))["requestUpload"]
    code = await api.code(
        'mutation($s: ID!) { createTable(input: {store: $s, name: "t"}) { id } }', {"s": grant["storeId"]}
    )
    assert code == "BAD_USER_INPUT"


async def test_thumbnails(api: Api, mikro_server: Any) -> None:
    rep = await make_representation(api, "with thumb")
    create = "mutation($i: ThumbnailInput!) { createThumbnail(input: $i) { id width height png } }"
    png = png_bytes(4, 3)
    thumb = (await api.data(create, {"i": {"representation": rep["id"], "png": b64(png)}}))["createThumbnail"]
    assert (thumb["width"], thumb["height"]) == (4, 3) and base64.b64decode(thumb["png"]) == png

    listed = await api.data(
        """query($r: ID!) { thumbnails(filter: {representation: $r}) { id representation { name } }
            byName: thumbnails(filter: {search: "WITH THUMB"}) { id png }
            representation(id: $r) { thumbnails { height } } }""",
        {"r": rep["id"]},
    )
    assert listed["thumbnails"] == [{"id": thumb["id"], "representation": {"name": "with thumb"}}]
    assert listed["byName"] == [{"id": thumb["id"], "png": b64(png)}]
    assert listed["representation"]["thumbnails"] == [{"height": 3}]

    # Replacing the PNG: width and height follow it.
    bigger = png_bytes(8, 5)
    update = (
        "mutation($id: ID!, $p: Base64!) { updateThumbnail(id: $id, input: {png: $p}) { width height png } }"
    )
    resized = await api.data(update, {"id": thumb["id"], "p": b64(bigger)})
    assert resized["updateThumbnail"] == {"width": 8, "height": 5, "png": b64(bigger)}

    # A bad PNG names the input and changes nothing.
    error = await api.error(update, {"id": thumb["id"], "p": b64(b"not a png")})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and error["message"].startswith("input.png ")
    error = await api.error(create, {"i": {"representation": rep["id"], "png": b64(png_bytes(5000, 1))}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT" and "5000x1" in error["message"]
    count = "select count(*) from thumbnails where representation_id = ?"
    assert db_rows(mikro_server.database_path, count, rep["id"]) == [(1,)]
    still = await api.data("query($id: ID!) { thumbnail(id: $id) { width png } }", {"id": thumb["id"]})
    assert still["thumbnail"] == {"width": 8, "png": b64(bigger)}

    await api.data("mutation($id: ID!) { deleteThumbnail(id: $id) }", {"id": thumb["id"]})
    gone = await api.code("query($id: ID!) { thumbnail(id: $id) { id } }", {"id": thumb["id"]})
    assert gone == "NOT_FOUND"
    assert db_rows(mikro_server.database_path, count, rep["id"]) == [(0,)]


async def test_deleting_a_representation_deletes_its_objects_and_dependents(api: Api) -> None:
    rep = await make_representation(api)
    store = await api.data(
        "query($id: ID!) { representation(id: $id) { store { id path } } }", {"id": rep["id"]}
    )
    path = Path(store["representation"]["store"]["path"])
    assert (path / "zarr.json").exists()
    roi = await api.data(
        "mutation($r: ID!) { createRoi(input: {representation: $r, kind: POINT, vectors: [[0,0,0,0,0]]}) "
        "{ id } }",
        {"r": rep["id"]},
    )
    await api.data("mutation($id: ID!) { deleteRepresentation(id: $id) }", {"id": rep["id"]})
    assert not path.exists()
    assert (
        await api.code("query($id: ID!) { representation(id: $id) { id } }", {"id": rep["id"]}) == "NOT_FOUND"
    )
    assert (
        await api.code("query($id: ID!) { roi(id: $id) { id } }", {"id": roi["createRoi"]["id"]})
        == "NOT_FOUND"
    )
    assert (
        await api.code(
            "query($id: ID!) { zarrStore(id: $id) { id } }", {"id": store["representation"]["store"]["id"]}
        )
        == "NOT_FOUND"
    )
