"""``mikro ingest PATH...``: ingest microscope files with a progress bar and a summary table."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mikro.cli import app

if TYPE_CHECKING:
    from rich.console import Console

    from mikro.client._mikro import Mikro
    from mikro.ingest import IngestReport

__all__ = ["ingest"]

#: Summary tables list every file up to this many; beyond, only the failed ones.
LISTED_FILES = 50


@app.command()
def ingest(
    paths: list[str] = typer.Argument(..., help="Files, folders (recursive) or globs to ingest."),
    dataset: str | None = typer.Option(None, "--dataset", help="Dataset name (created if missing) or id."),
    sample: str | None = typer.Option(None, "--sample", help="Sample name (created if missing) or id."),
    tag: list[str] = typer.Option([], "--tag", help="Tag every image (repeatable)."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Files read and uploaded at once."),
    no_original: bool = typer.Option(False, "--no-original", help="Do not keep the original files."),
    compression: str | None = typer.Option(
        None,
        "--compression",
        help="The images' codec: blosc-lz4 (the default), blosc-zstd, zstd, or none (raw pixels).",
        show_default=False,
    ),
    no_pyramid: bool = typer.Option(False, "--no-pyramid", help="Store no coarser levels."),
    json_report: Path | None = typer.Option(None, "--json", help="Write the report here as JSON."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be ingested; write nothing."),
    scheduler: str | None = typer.Option(
        None,
        "--scheduler",
        help="A dask scheduler's address (tcp://HOST:PORT): read and upload the files on its workers.",
    ),
) -> None:
    """Ingest microscope files (OME-TIFF, TIFF, OME-Zarr; CZI, ND2, LIF with the "formats" extra).

    Rerunning skips what is already stored; exit status 0 when every file was ingested or skipped.
    """
    import anyio
    from rich.console import Console

    from mikro.datalayer._layout import COMPRESSIONS, DEFAULT_COMPRESSION  # numpy: not at CLI start

    console = Console(stderr=True)
    codecs = {c or "none": c for c in COMPRESSIONS}
    compression = compression or DEFAULT_COMPRESSION or "none"
    if compression not in codecs:
        console.print(f"[red]mikro:[/] --compression must be one of {', '.join(codecs)}, not {compression!r}")
        raise typer.Exit(2)
    options = {
        "paths": paths,
        "dataset": dataset,
        "sample": sample,
        "tags": tag,
        "concurrency": concurrency,
        "keep_original": not no_original,
        "compression": codecs[compression],
        "pyramid": None if no_pyramid else "auto",
        "dry_run": dry_run,
    }
    try:
        with _cluster(scheduler, console) as cluster:
            report = anyio.run(_run, {**options, "cluster": cluster}, console)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: the images completed are kept; rerun to continue")
        raise typer.Exit(130) from None
    except Exception as exc:
        from mikro._exceptions import MikroError

        if not isinstance(exc, MikroError):
            raise
        console.print(f"[red]mikro:[/] {exc}")
        raise typer.Exit(2) from None
    if json_report is not None:
        report.write_json(json_report)
    _summary(report, Console(), dry_run=dry_run)
    raise typer.Exit(0 if report.ok else 1)


@contextlib.contextmanager
def _cluster(address: str | None, console: Console) -> Iterator[Any]:
    """A dask.distributed Client of the scheduler at ``address`` for the ingest (None: this process)."""
    if address is None:
        yield None
        return
    try:
        from distributed import Client
    except ImportError:
        console.print("[red]mikro:[/] --scheduler needs dask.distributed: pip install 'mikro[cluster]'")
        raise typer.Exit(2) from None
    try:
        client = Client(address, timeout=30, set_as_default=False)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        console.print(f"[red]mikro:[/] cannot reach the dask scheduler at {address}: {exc}")
        raise typer.Exit(2) from None
    with client:
        yield client


async def _run(options: dict[str, Any], console: Console) -> IngestReport:
    import anyio
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    import mikro
    from mikro.ingest import IngestProgress

    async with mikro.connect() as m:
        dry = bool(options.pop("dry_run"))
        for kind in ("dataset", "sample"):
            if options[kind] is not None:
                options[kind] = await _resolve(m, kind, options[kind], create=not dry)
        columns = (
            TextColumn("files"),
            MofNCompleteColumn(),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("ingest", total=None, rate="")
            started = anyio.current_time()

            def show(p: IngestProgress) -> None:
                elapsed = max(anyio.current_time() - started, 1e-6)
                # The bar counts bytes (for the MiB, speed and ETA columns); the file count rides along.
                bar.update(
                    task,
                    completed=p.bytes_done,
                    total=p.bytes_total or None,
                    rate=f"{p.files_done}/{p.files_total} files, {p.images_created / elapsed:.1f} images/s",
                )

            return await m.ingest(options.pop("paths"), on_progress=show, dry_run=dry, **options)


async def _resolve(m: Mikro, kind: str, text: str, *, create: bool) -> str | None:
    """The id of the caller's dataset/sample named ``text`` (created when missing), or ``text`` as an id."""
    lister = getattr(m, f"list_{kind}s")
    if text.isdigit():
        found = await lister(ids=[text])
        if found:
            return str(found[0].id)
    matches = [o for o in await lister(name_contains=text, limit=1000) if o.name == text]
    if matches:
        return str(matches[0].id)
    if not create:
        return None
    made = await getattr(m, f"create_{kind}")(text)
    return str(made.id)


def _summary(report: IngestReport, console: Console, *, dry_run: bool) -> None:
    from rich.table import Table

    files = report.files if len(report.files) <= LISTED_FILES else report.failed
    table = Table(title="mikro ingest" + (" (dry run: nothing written)" if dry_run else ""))
    for column in ("file", "status", "images", "skipped", "MiB", "seconds", "reason / dims"):
        table.add_column(column, overflow="fold")
    for f in files:
        detail = f.error or "; ".join(
            f"{p.name}: {p.dims} {p.shape} {p.dtype} channels={p.channels} "
            f"pixel_size={json.dumps(p.pixel_size)}"
            for p in f.planned
        )
        table.add_row(
            f.path,
            f.status,
            str(f.created),
            str(f.skipped),
            f"{f.bytes / 2**20:.1f}",
            f"{f.seconds:.2f}",
            detail,
        )
    console.print(table)
    mib = report.bytes / 2**20
    rate = report.created / report.seconds if report.seconds else 0.0
    console.print(
        f"{len(report.files)} files: {report.created} images created, {report.skipped} skipped, "
        f"{len(report.failed)} failed; {mib:.1f} MiB in {report.seconds:.1f} s ({rate:.1f} images/s)"
    )
    for f in report.failed:
        print(f"failed: {f.path}: {f.error}", file=sys.stderr)
