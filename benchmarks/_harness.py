"""Timing, interleaving and medians: what every bar shares."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "GIB",
    "MIB",
    "BarResult",
    "Check",
    "Figure",
    "Sample",
    "describe_error",
    "figure_from",
    "file_creation_cost",
    "interleave",
    "median_sample",
    "repeated_note",
    "timed",
]

MIB = 1 << 20
GIB = 1 << 30

Role = Literal["mikro", "baseline"]


def file_creation_cost(where: Path, count: int = 200) -> str:
    """CPU per empty file and per folder made in a fresh folder under ``where`` (then removed).

    On this VM's ext4 these costs move from ~20 µs to ~1 ms once many files have been deleted nearby,
    and every folder-store figure moves with them: said beside the load average, it tells which state
    a run met."""
    folder = tempfile.mkdtemp(prefix="probe-", dir=where)
    try:
        start = time.process_time()
        for i in range(count):
            os.close(os.open(os.path.join(folder, f"f{i}"), os.O_WRONLY | os.O_CREAT))
        files = time.process_time() - start
        start = time.process_time()
        for i in range(count):
            os.mkdir(os.path.join(folder, f"d{i}"))
        folders = time.process_time() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return (
        f"creating an empty file {files / count * 1e6:.0f} µs of CPU, a folder {folders / count * 1e6:.0f} µs"
    )


@dataclass
class Sample:
    """One timed run of one contender: wall and process CPU seconds of the timed section."""

    seconds: float
    cpu: float
    nbytes: int = 0
    value: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mib_per_s(self) -> float:
        return self.nbytes / MIB / self.seconds

    @property
    def cpu_per_gib(self) -> float:
        return self.cpu / (self.nbytes / GIB)


def median_sample(samples: list[Sample]) -> Sample:
    """One sample of repetitions inside one run: the median wall time, with the median CPU."""
    if not samples:
        raise ValueError("no samples")
    return Sample(
        statistics.median(s.seconds for s in samples),
        statistics.median(s.cpu for s in samples),
        samples[0].nbytes,
    )


class _Clock:
    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu = 0.0


@contextmanager
def timed() -> Iterator[_Clock]:
    """Wall and process CPU time (all threads of this process; servers run in other processes)."""
    clock = _Clock()
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        yield clock
    finally:
        clock.seconds = time.perf_counter() - w0
        clock.cpu = time.process_time() - c0


@dataclass
class Figure:
    """The median of one contender's runs in one bar."""

    contender: str
    role: Role
    unit: str
    value: float | None
    cpu_s_per_gib: float | None = None
    runs: list[float] = field(default_factory=list)
    note: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Check:
    """One clause of a bar's target, judged on mikro's figures."""

    text: str
    ok: bool | None  # None: could not be judged (mikro's figure missing)
    detail: str = ""


@dataclass
class BarResult:
    name: str
    title: str
    setup: str
    target: str
    figures: list[Figure]
    checks: list[Check]
    ratio: bool = True  # False where "mikro ÷ baseline" means nothing (lags, counts)

    @property
    def verdict(self) -> str:
        if not self.checks or any(c.ok is None for c in self.checks):
            return "ERROR"
        return "PASS" if all(c.ok for c in self.checks) else "MISS"

    def figure(self, contender: str) -> Figure | None:
        return next((f for f in self.figures if f.contender == contender), None)


def describe_error(exc: BaseException) -> str:
    """The innermost real error (task groups wrap it in ExceptionGroups), one line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]


def interleave(
    contenders: dict[str, Callable[[], Sample]], runs: int, *, log: Callable[[str], None]
) -> dict[str, list[Sample] | str]:
    """Run A,B,C,A,B,C,...; a contender that raises is dropped (its error kept) for the rest of the bar."""
    out: dict[str, list[Sample] | str] = {name: [] for name in contenders}
    for r in range(runs):
        for name, fn in contenders.items():
            got = out[name]
            if isinstance(got, str):
                continue
            try:
                sample = fn()
            except Exception as exc:
                log(f"  {name}: FAILED: {exc!r}\n{traceback.format_exc(limit=6)}")
                out[name] = describe_error(exc)
                continue
            got.append(sample)
            shown = (
                f"{sample.mib_per_s:8.1f} MiB/s  cpu {sample.cpu_per_gib:5.2f} s/GiB" if sample.nbytes else ""
            )
            if sample.value is not None and not sample.nbytes:
                shown = f"{sample.value:.4g}"
            log(f"  run {r + 1}/{runs} {name:<28} {sample.seconds:7.3f} s {shown}")
    return out


def figure_from(
    name: str,
    role: Role,
    got: list[Sample] | str,
    *,
    unit: str = "MiB/s",
    value: Callable[[Sample], float] | None = None,
    note: str = "",
) -> Figure:
    """The median figure of a contender's samples (throughput with CPU/GiB unless `value` is given)."""
    if isinstance(got, str):
        return Figure(name, role, unit, None, error=got, note=note)
    if not got:
        return Figure(name, role, unit, None, error="no runs", note=note)
    if value is None:
        values = [s.mib_per_s for s in got]
        cpu = statistics.median(s.cpu_per_gib for s in got)
    else:
        values = [value(s) for s in got]
        cpu = None
    extra: dict[str, Any] = {}
    for s in got:
        for k, v in s.extra.items():
            extra.setdefault(k, []).append(v)
    merged = {
        k: (statistics.median(v) if all(isinstance(x, int | float) for x in v) else v[0])
        for k, v in extra.items()
    }
    return Figure(name, role, unit, statistics.median(values), cpu, values, note=note, extra=merged)


def repeated_note(got: list[Sample] | str, repeats: int) -> str:
    """A full read's figure: the median of ``repeats`` reads in one session per run; and each run's first
    read (that one also asks the server for a grant and opens the store's connections)."""
    note = f"each run the median of {repeats} reads in one session"
    if isinstance(got, str) or not got:
        return note
    firsts = ", ".join(f"{s.extra['first_read_mib_s']:,.0f}" for s in got if "first_read_mib_s" in s.extra)
    return note + (f"; the session's first read by run: {firsts} MiB/s" if firsts else "")
