"""``mikro ingest`` as a user runs it: a real process, its exit status, its report, Ctrl-C, memory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

import mikro.sync
from mikro.datalayer._layout import TARGET_SHARD_BYTES
from mikro.ingest import SHARD_COPIES, SHARDS_PER_FILE
from mikro.ingest._pipeline import _group_size
from tests.fixtures_servers import MikroServer, process_env
from tests.ingest import _files
from tests.ingest.test_encoding import SIDE, stored_codecs
from tests.ingest.test_resume import FILES

pytestmark = pytest.mark.usefixtures("no_ambient_config")

COUNT = "query { representations(pagination: {limit: 1000}) { id sourceFingerprint } }"


def _cli(
    server: MikroServer, token: str, *args: str, prefix: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    env = process_env(MIKRO_URL=server.url, MIKRO_TOKEN=token, COLUMNS="200")
    return subprocess.Popen(
        [sys.executable, *(prefix or ("-m", "mikro")), "ingest", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


# Runs the CLI and writes its own peak RSS (VmHWM) to argv[1] at exit. The child's rusage would not do:
# its ru_maxrss counts the forked copy of this (large, late in a suite) pytest process before the exec.
_PEAK_RSS = """
import atexit, sys
out = sys.argv.pop(1)
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(out, "w").write(line.split()[1])
atexit.register(peak)
sys.argv[0] = "mikro"
from mikro.cli import main
main()
"""


# Runs the CLI with the reader plugins named in argv[1] (comma-separated) unimportable, as when the
# ``formats`` extra is not installed.
_WITHOUT_PLUGINS = """
import sys
for module in sys.argv.pop(1).split(","):
    sys.modules[module] = None
sys.argv[0] = "mikro"
from mikro.cli import main
main()
"""


def _images(server: MikroServer, token: str) -> list[dict[str, Any]]:
    return list(server.query(COUNT, token=token)["data"]["representations"])


def test_exit_status_and_report_name_the_bad_files(mikro_server: MikroServer, tmp_path: Path) -> None:
    token = mikro_server.add_user("cli")
    folder = tmp_path / "run"
    folder.mkdir()
    _files.plain_tiff(folder / "good.tif")
    _files.broken_tiff(folder / "broken.tif")
    (folder / "table.xyz").write_text("a,b\n")
    out = _cli(mikro_server, token, str(folder), "--json", str(tmp_path / "report.json"), "--tag", "run1")
    stdout, stderr = out.communicate(timeout=120)
    assert out.returncode == 1, stderr.decode()
    report = json.loads((tmp_path / "report.json").read_text())
    failed = {Path(f["path"]).name: f["error"] for f in report["files"] if f["status"] == "failed"}
    assert set(failed) == {"broken.tif", "table.xyz"}
    assert "broken.tif" in stderr.decode() and "table.xyz" in stderr.decode()
    assert "broken.tif" in stdout.decode() and "1 images created" in stdout.decode()
    assert len(_images(mikro_server, token)) == 1

    # Once the bad files are gone, the rerun skips the good one and succeeds.
    (folder / "broken.tif").unlink()
    (folder / "table.xyz").unlink()
    again = _cli(mikro_server, token, str(folder), "--dataset", "plate 1")
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr.decode()
    assert "0 images created, 1 skipped" in stdout.decode()
    files = mikro_server.query("query { files { name } }", token=token)["data"]["files"]
    assert files == [{"name": "good.tif"}]  # the original, kept once

    (folder / "more.tif").write_bytes((folder / "good.tif").read_bytes()[:-1] + b"\x07")
    third = _cli(mikro_server, token, str(folder), "--no-original")
    assert third.wait(timeout=120) == 0
    assert len(mikro_server.query("query { files { name } }", token=token)["data"]["files"]) == 1


def test_ctrl_c_stops_and_a_rerun_continues(mikro_server: MikroServer, tmp_path: Path) -> None:
    token = mikro_server.add_user("cli")
    # --concurrency 1: small files go up in groups (of 16 here), a group taking the one slot, so at
    # most one group is in flight, and an image whose registration the interrupt cut is removed again
    # (complete or absent). Interrupting once more than that are stored shows complete ones are kept.
    # The first 20 files are small (two groups); the other 30 are larger than a group takes, so each goes
    # up alone (its pixels and its 3 MiB original): the run stays seconds behind the polling that waits
    # to interrupt it, however fast small files get (it once stored all 50 before the signal arrived).
    in_flight, kept, files, small = _group_size(FILES), 1, FILES, 20
    _files.small_tiffs(tmp_path / "plate", files)
    for i in range(small, files):
        big = _files.values((1024, 1536), seed=i)
        tifffile.imwrite(tmp_path / "plate" / f"img{i:03d}.tif", big, photometric="minisblack")
    run = _cli(mikro_server, token, str(tmp_path / "plate"), "--concurrency", "1")
    deadline = time.monotonic() + 90
    while len(_images(mikro_server, token)) < in_flight + kept and run.poll() is None:
        assert time.monotonic() < deadline, "the ingest stored too few images to interrupt"
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr.decode()
    assert "interrupted" in stderr.decode()
    stored = len(_images(mikro_server, token))
    assert kept <= stored < files

    rerun = _cli(mikro_server, token, str(tmp_path / "plate"), "--json", str(tmp_path / "r.json"))
    _, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr.decode()
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["created"], report["skipped"]) == (files - stored, stored)
    images = _images(mikro_server, token)
    assert len(images) == files and len({i["sourceFingerprint"] for i in images}) == files


def _ingest_peak_rss(server: MikroServer, token: str, path: Path, tmp_path: Path) -> int:
    """Ingest ``path`` (pixels only: the original's upload streams, upload_file's own bound, tested with
    Files) in a CLI process; its peak RSS in bytes, checked against the documented bound."""
    peak_file = tmp_path / "peak-kib"
    run = _cli(
        server,
        token,
        str(path),
        "--concurrency",
        "1",
        "--no-original",
        prefix=("-c", _PEAK_RSS, str(peak_file)),
    )
    _, stderr_bytes = run.communicate(timeout=540)
    assert run.returncode == 0, stderr_bytes.decode()
    assert len(_images(server, token)) == 1
    peak = int(peak_file.read_text()) * 1024
    constant = 350 * 2**20  # interpreter, numpy/dask/zarr/bioio imports, HTTP clients (~250 measured)
    bound = SHARD_COPIES * SHARDS_PER_FILE * TARGET_SHARD_BYTES * 1 + constant
    assert peak < bound, f"peak RSS {peak / 2**20:.0f} MiB over the bound {bound / 2**20:.0f} MiB"
    return peak


@pytest.mark.slow
@pytest.mark.timeout(600)  # 2 GiB read and encoded: about 30 s alone, minutes on a loaded CI machine
def test_a_big_file_ingests_within_the_memory_bound(mikro_server: MikroServer, tmp_path: Path) -> None:
    """2 GiB of pixels (a sparse file: fast to make, read as zeros) through a process whose peak RSS must
    stay under the documented bound: SHARD_COPIES x SHARDS_PER_FILE shards per file in flight, plus the
    process's own footprint."""
    token = mikro_server.add_user("cli")
    path = tmp_path / "big.tif"
    planes, height, width = 512, 2048, 1024  # uint16: 4 MiB a plane, 2 GiB in all
    big = tifffile.memmap(path, shape=(planes, height, width), dtype="uint16", photometric="minisblack")
    big[0, :16, :16] = 7  # one known value
    big.flush()
    del big
    _ingest_peak_rss(mikro_server, token, path, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(600)  # 1 GiB decoded and encoded: about 15 s alone
@pytest.mark.parametrize("layout", ["tiles", "one strip"])
def test_one_plane_larger_than_the_bound_is_read_part_by_part(
    mikro_server: MikroServer, tmp_path: Path, layout: str
) -> None:
    """A single 1 GiB plane is more than the memory bound: a tiled TIFF (zlib-compressed zeros: about
    1 MiB on disk) is read a few tiles at a time, an uncompressed one-strip page (a sparse file, as
    tifffile writes by default) a few rows at a time, and its pixels arrive where they were."""
    token = mikro_server.add_user("cli")
    path = tmp_path / "mosaic.tif"
    height, width, tile = 32768, 16384, 1024
    zeros, sevens = np.zeros((tile, tile), "uint16"), np.full((tile, tile), 7, "uint16")
    # The tile at row 1, column 2 holds 7s: read back below from where it must land.
    if layout == "tiles":
        tiles = (
            sevens if (i, j) == (1, 2) else zeros for i in range(height // tile) for j in range(width // tile)
        )
        tifffile.imwrite(
            path, tiles, shape=(height, width), dtype="uint16", tile=(tile, tile), compression="zlib"
        )
    else:
        plane = tifffile.memmap(path, shape=(height, width), dtype="uint16", photometric="minisblack")
        plane[tile : 2 * tile, 2 * tile : 3 * tile] = 7
        plane.flush()
        del plane
    assert height * width * 2 > SHARD_COPIES * SHARDS_PER_FILE * TARGET_SHARD_BYTES + 350 * 2**20
    _ingest_peak_rss(mikro_server, token, path, tmp_path)
    (image,) = mikro_server.query("query { representations { id shape } }", token=token)["data"][
        "representations"
    ]
    assert image["shape"][-2:] == [height, width]
    with mikro.sync.connect(mikro_server.url, token=token) as m:
        data = m.get_representation(image["id"]).data
        block = data.isel(y=slice(tile - 2, 2 * tile + 2), x=slice(2 * tile - 2, 3 * tile + 2)).values
    assert (block[2:-2, 2:-2] == 7).all() and block[:2].max() == block[:, :2].max() == 0


def test_a_format_whose_reader_is_not_installed_names_the_extra(
    mikro_server: MikroServer, tmp_path: Path
) -> None:
    """Without the ``formats`` extra, a CZI (written by Zeiss's pylibCZIrw), an ND2 and a LIF (no writer
    outside their vendors' software: files of that name) each fail with the extra to install."""
    token = mikro_server.add_user("cli")
    folder = tmp_path / "vendor"
    folder.mkdir()
    _files.czi(folder / "zeiss.czi")
    (folder / "nikon.nd2").write_bytes(b"\xda\xce\xbe\x0a" + bytes(60))
    (folder / "leica.lif").write_bytes(b"\x70\x00\x00\x00" + bytes(60))
    plugins = {"zeiss.czi": "bioio-czi", "nikon.nd2": "bioio-nd2", "leica.lif": "bioio-lif"}
    modules = ",".join(p.replace("-", "_") for p in plugins.values())
    report_path = tmp_path / "report.json"
    run = _cli(
        mikro_server, token, str(folder), "--json", str(report_path), prefix=("-c", _WITHOUT_PLUGINS, modules)
    )
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 1, stderr.decode()
    errors = {Path(f["path"]).name: f["error"] for f in json.loads(report_path.read_text())["files"]}
    assert set(errors) == set(plugins)
    for name, plugin in plugins.items():
        suffix = Path(name).suffix
        assert (
            errors[name]
            == f"no reader for {suffix} files is installed: pip install 'mikro[formats]' ({plugin})"
        )
        assert errors[name] in " ".join(stderr.decode().split())
    assert _images(mikro_server, token) == []


def test_compression_and_pyramid_flags_choose_how_images_are_stored(
    mikro_server: MikroServer, tmp_path: Path
) -> None:
    token = mikro_server.add_user("cli-encoding")
    values = np.random.default_rng(5).integers(0, 4000, (2, SIDE, SIDE), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "scan.tif", values, photometric="minisblack")

    wrong = _cli(mikro_server, token, str(tmp_path), "--compression", "gzip")
    _, stderr = wrong.communicate(timeout=120)
    assert wrong.returncode == 2 and "blosc-lz4" in stderr.decode()
    assert _images(mikro_server, token) == []

    plain = _cli(mikro_server, token, str(tmp_path), "--compression", "none", "--no-pyramid", "--no-original")
    _, stderr = plain.communicate(timeout=120)
    assert plain.returncode == 0, stderr.decode()
    (image,) = _images(mikro_server, token)
    with mikro.sync.connect(mikro_server.url, token=token) as m:
        rep = m.get_representation(image["id"])
        np.testing.assert_array_equal(rep.data.values, values)
    assert len(rep.store.levels) == 1
    assert not {"blosc", "zstd", "gzip"} & set(stored_codecs(rep))
