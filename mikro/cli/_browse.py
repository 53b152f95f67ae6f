"""``mikro ls / show / get / rm / whoami / config``: look around a server and take data out, from a shell.

Sessions come from the same configuration as :func:`mikro.connect` (``MIKRO_URL`` / ``MIKRO_TOKEN``,
or a ``mikro.yaml`` in the working directory, which ``mikro config`` writes). A mikro error ends the
command with one line on stderr and exit status 1.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mikro.cli import app
from mikro.cli._errors import exit_on

if TYPE_CHECKING:
    from mikro.sync import SyncMikro

__all__ = ["app"]

#: ``mikro ls KIND`` -> (the session's list method, its columns).
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "images": ("list_representations", ("id", "name", "shape", "dims", "dtype", "size", "created")),
    "samples": ("list_samples", ("id", "name", "description", "tags", "created")),
    "experiments": ("list_experiments", ("id", "name", "description", "tags", "created")),
    "datasets": ("list_datasets", ("id", "name", "parent", "tags", "created")),
    "tables": ("list_tables", ("id", "name", "columns", "tags", "created")),
    "files": ("list_files", ("id", "name", "size", "created")),
}
#: ``mikro rm --kind`` -> the session's delete method.
DELETES = {
    "images": "delete_representation",
    "samples": "delete_sample",
    "experiments": "delete_experiment",
    "datasets": "delete_dataset",
    "tables": "delete_table",
    "files": "delete_file",
}
GETS = {kind: delete.replace("delete_", "get_") for kind, delete in DELETES.items()}


@contextlib.contextmanager
def _session() -> Iterator[SyncMikro]:
    from mikro import MikroError
    from mikro.sync import connect

    with exit_on(MikroError), connect() as m:
        yield m


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError


def _cell(model: Any, column: str) -> str:
    fields = model.__dict__
    if column == "created":
        return str(fields["created_at"].strftime("%Y-%m-%d %H:%M"))
    if column == "size":
        if "shape" in fields:  # an image: its uncompressed size
            import numpy as np

            return _size(float(np.prod(fields["shape"])) * np.dtype(fields["dtype"]).itemsize)
        return _size(float(fields.get("size") or 0))
    value = fields.get(column)
    if column == "parent":
        return "" if value is None else str(value.id)
    if column == "columns":
        return ", ".join(c.name for c in value or [])
    if isinstance(value, list):
        return "x".join(map(str, value)) if column == "shape" else ",".join(map(str, value))
    return "" if value is None else str(value)


def _json(models: Any) -> str:
    # Only what the server sent: a relation the call did not fetch is left out, not written as null.
    def dump(model: Any) -> Any:
        return model.model_dump(mode="json", exclude_unset=True)

    return json.dumps([dump(x) for x in models] if isinstance(models, list) else dump(models), indent=2)


@app.command("ls")
def ls(
    kind: str = typer.Argument("images", help=f"What to list: {', '.join(KINDS)}."),
    dataset: str | None = typer.Option(None, "--dataset", help="Only images (or datasets) in this dataset."),
    tag: list[str] = typer.Option([], "--tag", help="Only objects with this tag (repeat: all of them)."),
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="Rows per page."),
    offset: int = typer.Option(0, "--offset", min=0, help="Rows to skip (the next page: --offset LIMIT)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List your images, samples, experiments, datasets, tables or files (newest pages with --offset)."""
    if kind not in KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(KINDS)}", param_hint="KIND")
    name, columns = KINDS[kind]
    filters: dict[str, Any] = {"offset": offset, "limit": limit}
    if tag:
        filters["tags"] = tag
    if dataset is not None:
        if kind not in ("images", "datasets", "files"):
            raise typer.BadParameter(
                "only images, datasets and files are listed by dataset", param_hint="--dataset"
            )
        filters["parent" if kind == "datasets" else "dataset"] = dataset
    with _session() as m:
        rows = getattr(m, name)(**filters)
    if as_json:
        typer.echo(_json(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{kind} {offset + 1}-{offset + len(rows)}" if rows else f"no {kind}")
    for column in columns:
        table.add_column(column, justify="right" if column in ("id", "size") else "left")
    for row in rows:
        table.add_row(*(_cell(row, c) for c in columns))
    console = Console()
    console.print(table)
    if len(rows) == limit:
        console.print(f"more: mikro ls {kind} --offset {offset + limit} --limit {limit}", markup=False)


@app.command("show")
def show(
    id: str = typer.Argument(..., help="The image's id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """One image with its relations and metadata."""
    with _session() as m:
        rep = m.get_representation(id)
    if as_json:
        typer.echo(_json(rep))
        return
    from rich.console import Console
    from rich.table import Table

    size = rep.physical_size
    sizes = {d: getattr(size, d) for d in ("x", "y", "z", "t")} if size is not None else {}
    facts = [
        ("name", rep.name),
        ("shape", ", ".join(f"{d}={n}" for d, n in zip(rep.dims, rep.shape, strict=True))),
        ("dtype / size", f"{rep.dtype}, {_cell(rep, 'size')}"),
        ("variety", str(rep.variety)),
        ("pixel size", ", ".join(f"{d}={v}" for d, v in sizes.items() if v is not None) or "—"),
        ("channels", ", ".join(_channel(c) for c in rep.channels) or "—"),
        ("sample", _names([rep.sample] if rep.sample else [])),
        ("experiments", _names(rep.experiments or [])),
        ("dataset", _names([rep.dataset] if rep.dataset else [])),
        ("tags", ", ".join(rep.tags) or "—"),
        ("origins", _names(rep.origins or [])),
        ("derived", _names(rep.derived or [])),
        ("rois", ", ".join(f"{r.kind} (#{r.id})" for r in rep.rois or []) or "—"),
        ("metrics", ", ".join(f"{x.key}={x.value!r}" for x in rep.metrics or []) or "—"),
        ("thumbnails", ", ".join(f"{t.width}x{t.height} (#{t.id})" for t in rep.thumbnails or []) or "—"),
        ("acquired", str(rep.acquisition_date or "—")),
        ("created", f"{_cell(rep, 'created')} by {rep.creator.username}"),
        ("store", f"#{rep.store.id} {rep.store.key}"),
    ]
    table = Table(title=f"image {rep.id}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in facts:
        table.add_row(key, value)
    Console().print(table)


def _names(items: list[Any]) -> str:
    return ", ".join(f"{x.name} (#{x.id})" for x in items) or "—"


def _channel(channel: Any) -> str:
    waves = [
        f"{w} nm {kind}"
        for kind, w in (("ex", channel.excitation_wavelength), ("em", channel.emission_wavelength))
        if w
    ]
    return f"{channel.name or '?'}" + (f" ({', '.join(waves)})" if waves else "")


@app.command("get")
def get(
    id: str = typer.Argument(..., help="The image's id."),
    output: Path = typer.Option(..., "-o", "--output", help="File to write: .ome.tif, .zarr, .npy or .png."),
    isel: list[str] = typer.Option(
        [],
        "--isel",
        help="Export part: DIM=INDEX or DIM=START:STOP (repeat). A part is one resolution level only.",
    ),
) -> None:
    """Export an image's pixels (all, or a part with --isel) to a file chosen by its suffix.

    The pixels stream through in slabs (bounded memory). A whole image exported to .zarr is a standalone
    copy: every pyramid level and the stored OME metadata (channels, colours, axes, scales).
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from mikro.export import check_export, export_image, format_of, parse_isel

    with _session() as m:
        format_of(output)
        rep = m.get_representation(id)
        data = rep.data
        selection = parse_isel(isel, list(data.dims))
        if selection:
            data = data.isel(selection)
        fmt = check_export(data, output)
        levels, ome = [], None
        if fmt == "ome-zarr" and not selection:
            levels, ome = rep.levels, _stored_ome(rep)
        pixel_size = rep.physical_size.model_dump() if rep.physical_size is not None else {}
        with Progress(
            *Progress.get_default_columns()[:1],
            BarColumn(),
            DownloadColumn(binary_units=True),
            TimeRemainingColumn(),
        ) as bar:
            task = bar.add_task("read", total=None)
            fmt = export_image(
                data,
                output,
                pixel_size=pixel_size,
                levels=levels,
                ome=ome,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    typer.echo(f"wrote {output} ({fmt}, {dict(data.sizes)} {data.dtype})")


def _stored_ome(rep: Any) -> dict[str, Any]:
    """The ``ome`` attribute of the image group as stored (read through the image's read grant)."""
    # The session's own reader store: the grant it fetches is the one ``rep.data`` reads with.
    raw = rep._session._reader_store(rep.store.id).get("zarr.json")
    return dict(json.loads(raw)["attributes"]["ome"])


@app.command("rm")
def rm(
    ids: list[str] = typer.Argument(..., help="Ids of the objects to delete."),
    kind: str = typer.Option("images", "--kind", help=f"What the ids are: {', '.join(DELETES)}."),
    recursive: bool = typer.Option(False, "--recursive", help="Datasets: delete their sub-datasets too."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete objects (images by default), after asking unless --yes."""
    if kind not in DELETES:
        raise typer.BadParameter(f"must be one of {', '.join(DELETES)}", param_hint="--kind")
    with _session() as m:
        found = [getattr(m, GETS[kind])(i) for i in ids]
        for obj in found:
            typer.echo(f"{kind[:-1]} {obj.id}: {getattr(obj, 'name', '')}")
        if not yes and not typer.confirm(f"delete {len(found)} {kind if len(found) != 1 else kind[:-1]}?"):
            typer.echo("nothing deleted", err=True)
            raise typer.Exit(1)
        delete = getattr(m, DELETES[kind])
        for obj in found:
            delete(obj, recursive=True) if kind == "datasets" and recursive else delete(obj)
            typer.echo(f"deleted {kind[:-1]} {obj.id}")


@app.command("whoami")
def whoami() -> None:
    """The user your token belongs to, and the server."""
    with _session() as m:
        me = m.me()
        url = m.config.url
    typer.echo(f"{me.username}{' (admin)' if me.is_admin else ''} on {url}")


@app.command("config")
def config(
    url: str = typer.Option(..., "--url", help="The server (its base URL or its /graphql endpoint)."),
    token_file: Path = typer.Option(
        Path("~/.config/mikro/token"), "--token-file", help="Where the token is kept (asked for if missing)."
    ),
    path: Path = typer.Option(Path("mikro.yaml"), "--path", help="The config file to write."),
) -> None:
    """Write a mikro.yaml (url, token file) that mikro.connect() and these commands read.

    The token goes to its own file (mode 0600), never into mikro.yaml and never to the terminal.
    """
    import yaml

    target = token_file.expanduser()
    if not target.exists():
        token = typer.prompt("token (input hidden)", hide_input=True).strip()
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
    path.write_text(yaml.safe_dump({"url": url, "token_file": str(token_file)}, sort_keys=False))
    typer.echo(f"wrote {path}: url {url}, token read from {token_file}")
