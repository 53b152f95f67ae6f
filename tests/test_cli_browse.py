"""``mikro ls / show / get / rm / whoami / config`` run as a person runs them, against a live server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mikro.sync
from tests.fixtures_servers import process_env, unique

pytestmark = pytest.mark.slow  # each command is a fresh interpreter

STACK = np.arange(2 * 3 * 16 * 20, dtype=np.uint16).reshape(2, 3, 16, 20)


@dataclass
class Setup:
    url: str
    token: str
    image: mikro.Representation
    other: mikro.Representation
    dataset: mikro.Dataset
    tag: str
    username: str


@pytest.fixture(scope="module")
def setup(mikro_server: Any) -> Iterator[Setup]:
    token = mikro_server.add_user("cli")
    tag = unique("tag")
    with mikro.sync.connect(mikro_server.url, token=token) as m:
        dataset = m.create_dataset("plate")
        image = m.create_representation(
            STACK,
            name="cells",
            dims="czyx",
            dataset=dataset,
            tags=[tag],
            channels=[{"name": "DAPI", "emission_wavelength": 461}, {"name": "GFP"}],
            pixel_size={"x": 0.25, "y": 0.25, "z": 1.5},
        )
        other = m.create_representation(np.ones((8, 8), np.uint8), name="flat")
        m.create_metric(image, "count", 12)
        # The session server names users uniquely (cli, cli-2 ...): whoami must print this one's name.
        yield Setup(mikro_server.url, token, image, other, dataset, tag, m.me().username)


def run(
    setup: Setup, cwd: Path, *args: str, stdin: str | None = None, env: bool = True
) -> subprocess.CompletedProcess[str]:
    environ = process_env()
    environ["COLUMNS"] = "200"
    if env:
        environ.update(MIKRO_URL=setup.url, MIKRO_TOKEN=setup.token)
    return subprocess.run(
        [sys.executable, "-m", "mikro", *args],
        cwd=cwd,
        env=environ,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_whoami_and_config_write_a_file_that_connects_without_showing_the_token(
    setup: Setup, tmp_path: Path
) -> None:
    me = run(setup, tmp_path, "whoami")
    assert me.returncode == 0, me.stderr
    assert me.stdout.strip() == f"{setup.username} on {setup.url}"

    base = setup.url.removesuffix("/graphql")
    done = run(
        setup,
        tmp_path,
        "config",
        "--url",
        base,
        "--token-file",
        "token.txt",
        stdin=setup.token + "\n",
        env=False,
    )
    assert done.returncode == 0, done.stderr
    assert setup.token not in done.stdout + done.stderr
    assert "token.txt" in done.stdout and (tmp_path / "token.txt").stat().st_mode & 0o777 == 0o600
    assert setup.token not in (tmp_path / "mikro.yaml").read_text()
    # The same configuration as mikro.connect(): no MIKRO_* variables now, only the file.
    me = run(setup, tmp_path, "whoami", env=False)
    assert me.returncode == 0, me.stderr
    assert me.stdout.strip() == f"{setup.username} on {setup.url}"


def test_ls_lists_pages_filters_and_json(setup: Setup, tmp_path: Path) -> None:
    listed = run(setup, tmp_path, "ls")
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "cells" in line]
    assert len(rows) == 1
    for cell in (setup.image.id, "2x3x16x20", "c,z,y,x", "uint16", "3.8 KiB"):
        assert cell in rows[0]
    assert "flat" in listed.stdout

    page = run(setup, tmp_path, "ls", "images", "--limit", "1")
    assert page.returncode == 0 and "more: mikro ls images --offset 1 --limit 1" in page.stdout

    tagged = run(setup, tmp_path, "ls", "--tag", setup.tag, "--json")
    assert tagged.returncode == 0, tagged.stderr
    assert [(r["id"], r["name"], r["shape"]) for r in json.loads(tagged.stdout)] == [
        (setup.image.id, "cells", [2, 3, 16, 20])
    ]
    in_dataset = json.loads(
        run(setup, tmp_path, "ls", "images", "--dataset", setup.dataset.id, "--json").stdout
    )
    assert [r["id"] for r in in_dataset] == [setup.image.id]
    datasets = run(setup, tmp_path, "ls", "datasets")
    assert datasets.returncode == 0 and "plate" in datasets.stdout

    wrong = run(setup, tmp_path, "ls", "planets")
    assert wrong.returncode == 2 and "images, samples, experiments, datasets, tables, files" in wrong.stderr


def test_show_prints_the_image_with_its_relations(setup: Setup, tmp_path: Path) -> None:
    shown = run(setup, tmp_path, "show", setup.image.id)
    assert shown.returncode == 0, shown.stderr
    for text in (
        "c=2, z=3, y=16, x=20",
        "x=0.25, y=0.25, z=1.5",
        "DAPI (461.0 nm em), GFP",
        f"plate (#{setup.dataset.id})",
        "count=12",
    ):
        assert text in shown.stdout, shown.stdout
    missing = run(setup, tmp_path, "show", "999999")
    assert (
        missing.returncode == 1 and missing.stderr.startswith("mikro: ") and "Traceback" not in missing.stderr
    )


def test_get_exports_files_other_tools_read_back(setup: Setup, tmp_path: Path) -> None:
    import tifffile
    from PIL import Image

    tif = tmp_path / "cells.ome.tif"
    done = run(setup, tmp_path, "get", setup.image.id, "-o", str(tif))
    assert done.returncode == 0, done.stderr
    with tifffile.TiffFile(tif) as f:
        assert f.is_ome
        np.testing.assert_array_equal(f.asarray(), STACK)
        xml = f.ome_metadata or ""
    assert (
        'Name="DAPI"' in xml
        and 'Name="GFP"' in xml
        and 'PhysicalSizeX="0.25"' in xml
        and 'PhysicalSizeZ="1.5"' in xml
    )

    npy = tmp_path / "plane.npy"
    assert (
        run(
            setup, tmp_path, "get", setup.image.id, "-o", str(npy), "--isel", "z=1", "--isel", "c=0"
        ).returncode
        == 0
    )
    np.testing.assert_array_equal(np.load(npy), STACK[0, 1])

    png = tmp_path / "plane.png"
    assert (
        run(
            setup, tmp_path, "get", setup.image.id, "-o", str(png), "--isel", "z=2", "--isel", "c=1"
        ).returncode
        == 0
    )
    np.testing.assert_array_equal(np.asarray(Image.open(png)), STACK[1, 2])
    not_2d = run(setup, tmp_path, "get", setup.image.id, "-o", str(tmp_path / "x.png"))
    assert not_2d.returncode == 1 and "--isel" in not_2d.stderr and not (tmp_path / "x.png").exists()


def test_get_writes_a_standalone_ome_zarr_with_every_level(setup: Setup, tmp_path: Path) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    values = np.random.default_rng(7).integers(0, 4000, (2, 3, 64, 48), dtype=np.uint16)
    with mikro.sync.connect(setup.url, token=setup.token) as m:
        rep = m.create_representation(
            values,
            name=unique("pyramid"),
            dims="czyx",
            channels=[{"name": "DAPI"}, {"name": "GFP"}],
            pixel_size={"x": 0.5, "y": 0.5, "z": 2.0},
            pyramid=2,
        )
        stored = [np.asarray(level.values) for level in rep.levels]
    assert len(stored) == 3

    out = tmp_path / "copy.ome.zarr"
    done = run(setup, tmp_path, "get", rep.id, "-o", str(out))
    assert done.returncode == 0, done.stderr
    # ome-zarr-py, not mikro, reads the copy; the server's store plays no part in it.
    [node] = list(Reader(parse_url(str(out)))())
    assert node.metadata["channel_names"] == ["DAPI", "GFP"]
    assert [a["name"] for a in node.metadata["axes"]] == ["c", "z", "y", "x"]
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    assert scales == [[1.0, 2.0, 0.5, 0.5], [1.0, 2.0, 1.0, 1.0], [1.0, 2.0, 2.0, 2.0]]
    assert len(node.data) == len(stored)
    for level, reference in zip(node.data, stored, strict=True):
        np.testing.assert_array_equal(np.asarray(level), reference)
    np.testing.assert_array_equal(np.asarray(node.data[0]), values)
    import tensorstore as ts
    import zarr
    from ome_zarr_models.v05.image import Image as OmeImage

    (copied,) = OmeImage.from_zarr(zarr.open_group(str(out), mode="r")).ome_attributes.multiscales
    assert len(copied.datasets) == 3  # strict OME-Zarr 0.5 validation

    # A part (--isel) is one level, still valid OME-Zarr 0.5 with its scales.

    part = tmp_path / "cells.zarr"
    done = run(setup, tmp_path, "get", setup.image.id, "-o", str(part), "--isel", "z=0:2")
    assert done.returncode == 0, done.stderr
    image = OmeImage.from_zarr(zarr.open_group(str(part), mode="r"))
    (multiscale,) = image.ome_attributes.multiscales
    assert [a.name for a in multiscale.axes] == ["c", "z", "y", "x"]
    assert list(multiscale.datasets[0].coordinateTransformations[0].scale) == [1.0, 1.5, 0.25, 0.25]
    array = ts.open(
        {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(part / multiscale.datasets[0].path)}}
    ).result()
    np.testing.assert_array_equal(array.read().result(), STACK[:, 0:2])


#: Runs the CLI, then reports its peak resident memory (VmHWM, KiB) as the last line of stderr. Not
#: ru_maxrss: Linux carries that over exec from the forked pytest process, whose size it would report.
PEAK_RSS = (
    "import re, runpy, sys\n"
    "sys.argv = ['mikro', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('mikro', run_name='__main__')\n"
    "finally:\n"
    "    status = open('/proc/self/status').read()\n"
    "    print('peak-rss', re.search(r'VmHWM:\\s*(\\d+)', status).group(1), file=sys.stderr)\n"
)


def peak_rss_mib(setup: Setup, cwd: Path, *args: str) -> float:
    environ = process_env(MIKRO_URL=setup.url, MIKRO_TOKEN=setup.token)
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stderr.split("peak-rss")[-1]) / 1024


def test_get_streams_an_image_larger_than_its_memory_use(setup: Setup, tmp_path: Path) -> None:
    import tifffile
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    # 96 MiB: 48 planes of 1 MiB pixels; a whole read would cost at least that much more memory.
    planes = np.add.outer(np.arange(48, dtype=np.uint16) * 97, np.arange(1024 * 1024) % 4099)
    big = planes.astype(np.uint16).reshape(48, 1024, 1024)
    with mikro.sync.connect(setup.url, token=setup.token) as m:
        rep = m.create_representation(big, name=unique("big"), dims="zyx", pyramid=None)
    for suffix in (".ome.tif", ".npy", ".zarr"):
        small = peak_rss_mib(setup, tmp_path, "get", setup.other.id, "-o", str(tmp_path / f"small{suffix}"))
        out = tmp_path / f"big{suffix}"
        peak = peak_rss_mib(setup, tmp_path, "get", rep.id, "-o", str(out))
        assert peak - small < 48, (suffix, peak, small)
        if suffix == ".zarr":
            [node] = list(Reader(parse_url(str(out)))())
            np.testing.assert_array_equal(np.asarray(node.data[0]), big)
            continue
        written = tifffile.memmap(out) if suffix == ".ome.tif" else np.load(out, mmap_mode="r")
        np.testing.assert_array_equal(written, big)
        del written


def test_rm_asks_unless_yes(setup: Setup, tmp_path: Path, mikro_server: Any) -> None:
    with mikro.sync.connect(setup.url, token=setup.token) as m:
        doomed = m.create_representation(np.zeros((4, 4), np.uint8), name="doomed")
        refused = run(setup, tmp_path, "rm", doomed.id, stdin="n\n")
        assert refused.returncode == 1 and "delete 1 image?" in refused.stdout
        assert m.get_representation(doomed.id).name == "doomed"
        done = run(setup, tmp_path, "rm", doomed.id, "--yes")
        assert done.returncode == 0, done.stderr
        assert f"deleted image {doomed.id}" in done.stdout
        with pytest.raises(mikro.NotFoundError):
            m.get_representation(doomed.id)


def test_ls_files_lists_originals_and_attachments(setup: Setup, tmp_path: Path) -> None:
    with mikro.sync.connect(setup.url, token=setup.token) as m:
        attached = m.upload_file(b"a,b\n1,2\n", name="counts.csv", datasets=[setup.dataset])
    listed = run(setup, tmp_path, "ls", "files", "--dataset", setup.dataset.id)
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if "counts.csv" in line]
    assert attached.id in row and "8 B" in row
