"""One table (rich) and the same as JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from _harness import BarResult, Figure
from rich.console import Console
from rich.table import Table

__all__ = ["print_table", "to_json", "write_json"]


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return f"{s} {unit}".strip()


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line[:70]


def _ratio(mikro: Figure | None, other: Figure) -> str:
    if mikro is None or other is mikro or mikro.value is None or not other.value:
        return ""
    return f"{mikro.value / other.value:.2f}x"


def print_table(console: Console, setup: dict[str, Any], bars: list[BarResult]) -> None:
    console.print("[bold]Setup[/bold]")
    for k, v in setup.items():
        console.print(f"  {k}: {v}")
    table = Table(title="mikro benchmarks (medians of interleaved runs)", show_lines=True)
    for col, just in [
        ("bar", "left"),
        ("contender", "left"),
        ("figure", "right"),
        ("client CPU s/GiB", "right"),
        ("mikro ÷ this", "right"),
        ("target", "left"),
        ("verdict", "left"),
    ]:
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for bar in bars:
        mikro = next((f for f in bar.figures if f.role == "mikro"), None)
        first = True
        for fig in bar.figures:
            if fig.error is None:
                figure = _fmt(fig.value, fig.unit)
            else:
                figure = f"[red]error[/red]: {_first_line(fig.error)}"
            if fig.note:
                figure += f"\n[dim]{fig.note}[/dim]"
            if first:
                verdict = {"PASS": "[green]PASS[/green]", "MISS": "[red]MISS[/red]"}.get(
                    bar.verdict, "[yellow]ERROR[/yellow]"
                )
                detail = "\n".join(
                    f"{'ok' if c.ok else 'MISS' if c.ok is False else '??'}: {c.detail or c.text}"
                    for c in bar.checks
                )
                verdict = f"{verdict}\n[dim]{detail}[/dim]" if detail else verdict
            table.add_row(
                bar.title if first else "",
                f"[bold]{fig.contender}[/bold]" if fig.role == "mikro" else fig.contender,
                figure,
                _fmt(fig.cpu_s_per_gib),
                _ratio(mikro, fig) if bar.ratio else "",
                bar.target if first else "",
                verdict if first else "",
            )
            first = False
    console.print(table)
    for bar in bars:
        console.print(f"[dim]{bar.title}: {bar.setup}[/dim]")


def to_json(setup: dict[str, Any], bars: list[BarResult]) -> dict[str, Any]:
    out = []
    for bar in bars:
        mikro = next((f for f in bar.figures if f.role == "mikro"), None)
        figs = []
        for fig in bar.figures:
            d = dataclasses.asdict(fig)
            if bar.ratio and mikro is not None and mikro.value is not None and fig.value and fig is not mikro:
                d["mikro_ratio"] = mikro.value / fig.value
            figs.append(d)
        out.append(
            {
                "name": bar.name,
                "title": bar.title,
                "setup": bar.setup,
                "target": bar.target,
                "verdict": bar.verdict,
                "checks": [dataclasses.asdict(c) for c in bar.checks],
                "figures": figs,
            }
        )
    return {"setup": setup, "bars": out}


def write_json(path: Path, setup: dict[str, Any], bars: list[BarResult]) -> None:
    path.write_text(json.dumps(to_json(setup, bars), indent=2, default=str))
