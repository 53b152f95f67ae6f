"""Pixels, tables, ROIs, metrics and live events through the blocking session (real server, both backends)."""

from __future__ import annotations

import _thread
import io
import threading
import uuid

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import mikro
import mikro.sync


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_an_image_round_trips_and_computes_with_plain_compute(session: mikro.sync.SyncMikro) -> None:
    dataset = session.create_dataset(unique("images"))
    sample = session.create_sample(unique("mouse"))
    pixels = np.random.default_rng(7).integers(0, 4000, size=(3, 40, 56), dtype=np.uint16)

    created = session.create_representation(
        pixels, name=unique("stack"), dims=("z", "y", "x"), dataset=dataset, sample=sample
    )

    rep = session.get_representation(created.id)
    assert isinstance(rep, mikro.Representation) and rep.dims == ["z", "y", "x"]
    assert int(rep.data.max().compute()) == int(pixels.max())  # no event loop in sight: plain compute
    np.testing.assert_array_equal(rep.data.isel(z=1).values, pixels[1])
    assert int(session.compute(rep.data.sum())) == int(pixels.sum(dtype=np.uint64))

    assert [r.id for r in session.list_representations(dataset=dataset)] == [rep.id]
    assert [r.id for r in session.iter_representations(sample=sample)] == [rep.id]
    assert [r.id for r in session.search_representations(rep.name)] == [rep.id]
    assert session.update_representation(rep, tags=["checked"]).tags == ["checked"]
    assert session.get_zarr_store(rep.store.id).shape == [3, 40, 56]
    assert session.request_access(rep.store.id).write is False
    thumbnails = session.list_thumbnails(representation=rep)
    assert thumbnails and session.get_thumbnail(thumbnails[0].id).width > 0
    png = Image.open(io.BytesIO(session.thumbnail_png(thumbnails[0])))
    assert png.format == "PNG" and png.size == (thumbnails[0].width, thumbnails[0].height) == (56, 40)

    assert session.delete_representation(rep) == rep.id
    with pytest.raises(mikro.NotFoundError):
        session.get_representation(rep.id)


@pytest.fixture
def image(session: mikro.sync.SyncMikro) -> mikro.Representation:
    return session.create_representation(np.ones((16, 16), dtype=np.uint8), name=unique("plane"))


def test_rois_and_metrics_on_an_image(session: mikro.sync.SyncMikro, image: mikro.Representation) -> None:
    roi = session.create_roi(image, "RECTANGLE", [[0, 0, 0, 1, 1], [0, 0, 0, 5, 5]], label="cell")
    assert isinstance(roi, mikro.ROI) and roi.kind == mikro.RoiKind.RECTANGLE
    assert [r.id for r in session.list_rois(representation=image)] == [roi.id]
    assert session.update_roi(roi, label="nucleus").label == "nucleus"
    assert session.get_roi(roi.id).vectors[1] == [0, 0, 0, 5, 5]
    assert [r.id for r in session.iter_rois(representation=image)] == [roi.id]

    metric = session.create_metric(image, "area", 16.0, roi=roi)
    assert session.get_metric(metric.id).value == 16.0
    assert session.update_metric(metric, value=20.5).value == 20.5
    assert [m.id for m in session.list_metrics(representation=image, key="area")] == [metric.id]
    assert [m.id for m in session.iter_metrics(roi=roi)] == [metric.id]

    assert session.delete_metric(metric) == metric.id
    assert session.delete_roi(roi) == roi.id
    assert session.list_rois(representation=image) == []


def test_tables_are_written_and_read_back(session: mikro.sync.SyncMikro, image: mikro.Representation) -> None:
    frame = pd.DataFrame({"label": [1, 2, 3], "area": [10.5, 3.25, 7.0]})

    table = session.create_table(frame, name=unique("measurements"), origins=[image])

    fetched = session.get_table(table.id)
    pd.testing.assert_frame_equal(fetched.data.to_pandas(), frame)
    assert [t.id for t in session.list_tables(origin=image)] == [table.id]
    assert [t.id for t in session.iter_tables(origin=image)] == [table.id]
    assert session.update_table(table, tags=["qc"]).tags == ["qc"]
    assert session.delete_table(table) == table.id


def test_watching_new_images_with_a_plain_for_loop(session: mikro.sync.SyncMikro) -> None:
    dataset = session.create_dataset(unique("watched"))
    with session.watch_representations(dataset=dataset, after=0) as events:
        made = [
            session.create_representation(np.zeros((8, 8), np.uint8), name=f"frame-{i}", dataset=dataset)
            for i in range(3)
        ]
        seen = []
        for event in events:
            assert event.kind == mikro.EventKind.CREATE
            seen.append(event.representation.id)
            if len(seen) == 3:
                break
        assert events.cursor == event.cursor  # the subscription's own state, read through
    assert seen == [r.id for r in made]


def test_watching_rois_and_waiting_with_a_timeout(
    session: mikro.sync.SyncMikro, image: mikro.Representation
) -> None:
    with session.watch_rois(image, after=0) as events:
        roi = session.create_roi(image, "POINT", [[0, 0, 0, 2, 2]])
        event = events.receive(timeout=60)
        assert (event.kind, event.roi.id) == (mikro.EventKind.CREATE, roi.id)
        with pytest.raises(TimeoutError):
            events.receive(timeout=0.2)  # nothing else happens to this image's ROIs
        session.delete_roi(roi)
        assert events.receive(timeout=60).kind == mikro.EventKind.DELETE


def test_ctrl_c_while_waiting_for_an_event_leaves_the_subscription_usable(
    session: mikro.sync.SyncMikro, image: mikro.Representation
) -> None:
    with session.watch_rois(image, after=0) as events:
        timer = threading.Timer(0.5, _thread.interrupt_main)
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                events.receive()  # nothing will come: only Ctrl-C ends this wait
        finally:
            timer.join()
        roi = session.create_roi(image, "POINT", [[0, 0, 0, 1, 1]])
        assert events.receive(timeout=60).roi.id == roi.id


def test_a_progress_callback_that_calls_back_in_raises_instead_of_deadlocking(
    session: mikro.sync.SyncMikro,
) -> None:
    # The upload reports progress on the session's loop; a blocking call from there could never finish.
    name = unique("never-made")

    def progress(done: int, total: int) -> None:
        session.list_samples(limit=1)

    with pytest.raises(mikro.DeadlockError):
        session.create_representation(np.zeros((8, 8), np.uint8), name=name, progress=progress)
    assert session.search_representations(name) == []  # and nothing half-made is left
