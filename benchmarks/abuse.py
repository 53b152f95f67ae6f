"""An honest client's latency while another client abuses the server (issue 13).

Starts ``mikro serve`` (folder store, SQLite), makes 10 images in one sample, then measures the honest
client's ``get_representation`` latency (p50/p99) alone, and again while an attacker (its own process,
so its JSON encoding does not share this process's GIL) sends the abuse requests of issue 13 in a loop:
a 10 MiB alias flood, a 1 MiB token flood, a 12-level fan-out, a wide fan-out, a 17 MiB body and
600,000 variable values.
Every abusive request is refused; the bar is p99 under attack <= 3x p99 alone.

    python benchmarks/abuse.py [--quick] [-n 400] [--json out.json]

Server CPU per honest request is the server process's CPU over the honest requests of a phase
(under attack it includes the refusals: the cost the attack puts on the server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.append(str(Path(__file__).resolve().parent.parent))

from benchmarks._infra import process_cpu_seconds
from tests.fixtures_servers import MikroServer

TARGET_RATIO = 3.0


def _aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(count)) + " }"


def _fan_out(levels: int, page: int = 100) -> str:
    inner = "id name"
    for level in reversed(range(levels)):
        inner = f"sample {{ id {inner} }}" if level % 2 else f"representations {{ id {inner} }}"
    return f"{{ samples(pagination: {{limit: {page}}}) {{ id {inner} }} }}"


def abuse_bodies() -> list[tuple[str, bytes]]:
    many = json.dumps({"query": "mutation($v: JSON!) { me { id } }", "variables": {"v": [0] * 600_000}})
    return [
        ("alias flood (10 MiB)", json.dumps({"query": _aliases(655_360)}).encode()),
        ("token flood (1 MiB)", json.dumps({"query": _aliases(60_000)}).encode()),
        ("12-level fan-out", json.dumps({"query": _fan_out(12)}).encode()),
        ("wide fan-out", json.dumps({"query": _fan_out(6, page=1000)}).encode()),
        ("17 MiB body", b'{"query": "{ me { id } }", "x": "' + b"x" * (17 << 20) + b'"}'),
        ("600,000 values", many.encode()),
    ]


def attack(url: str, token: str, stop_file: str) -> None:
    """The attacker process: abuse in a loop until ``stop_file`` exists; prints what it got."""
    bodies = abuse_bodies()
    refused: dict[str, int] = {name: 0 for name, _ in bodies}
    other: dict[str, str] = {}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    with httpx.Client(timeout=120, headers=headers) as client:
        while not os.path.exists(stop_file):
            for name, body in bodies:
                response = client.post(url, content=body)
                errors = response.json().get("errors") or []
                if errors and errors[0].get("extensions", {}).get("code") == "BAD_USER_INPUT":
                    refused[name] += 1
                else:
                    other[name] = response.text[:200]
    print(json.dumps({"refused": refused, "not_refused": other}), flush=True)


async def _honest(url: str, token: str, rep_id: str, n: int) -> list[float]:
    import mikro

    latencies = []
    async with mikro.connect(url, token=token) as m:
        for _ in range(n):
            start = time.perf_counter()
            await m.get_representation(rep_id)
            latencies.append(time.perf_counter() - start)
    return latencies


async def _setup(url: str, token: str, images: int) -> str:
    import mikro

    async with mikro.connect(url, token=token) as m:
        sample = await m.create_sample("abuse-bench")
        rep = None
        for i in range(images):
            pixels = np.zeros((16, 16), dtype=np.uint16)
            rep = await m.create_representation(pixels, name=f"img-{i}", sample=sample, thumbnail=False)
        assert rep is not None
        return rep.id


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="100 honest requests per phase")
    parser.add_argument("-n", type=int, default=400, help="honest requests per phase")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--attacker", nargs=3, metavar=("URL", "TOKEN", "STOP_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.attacker:
        attack(*args.attacker)
        return
    n = 100 if args.quick else args.n

    with tempfile.TemporaryDirectory(prefix="mikro-abuse-") as tmp:
        server = MikroServer(
            Path(tmp) / "data", {"admin_token": "abuse-bench-admin-token-0123456789"}
        ).start()
        try:
            honest, attacker = server.add_user("honest"), server.add_user("attacker")
            rep_id = asyncio.run(_setup(server.url, honest, 10))
            pid = server._process.pid if server._process else 0

            cpu = process_cpu_seconds(pid)
            alone = asyncio.run(_honest(server.url, honest, rep_id, n))
            cpu_alone = process_cpu_seconds(pid) - cpu

            stop = Path(tmp) / "stop"
            command = [sys.executable, __file__, "--attacker", server.url, attacker, str(stop)]
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            time.sleep(2.0)  # the attack is under way
            cpu = process_cpu_seconds(pid)
            attacked = asyncio.run(_honest(server.url, honest, rep_id, n))
            cpu_attacked = process_cpu_seconds(pid) - cpu
            stop.touch()
            out, _ = proc.communicate(timeout=300)
            attack_result = json.loads(out.strip().splitlines()[-1])
        finally:
            server.stop()

    rows = []
    for name, values, cpu_s in (("alone", alone, cpu_alone), ("under attack", attacked, cpu_attacked)):
        rows.append(
            {
                "contender": f"get_representation, {name}",
                "p50_ms": statistics.median(values) * 1000,
                "p99_ms": _percentile(values, 0.99) * 1000,
                "server_cpu_ms_per_request": cpu_s / len(values) * 1000,
            }
        )
    ratio = rows[1]["p99_ms"] / rows[0]["p99_ms"]
    # What one refusal cost the server: its CPU under attack beyond the honest requests' own.
    refusals = sum(attack_result["refused"].values())
    refusal_cpu_ms = max(0.0, cpu_attacked - cpu_alone) / max(refusals, 1) * 1000
    verdict = "PASS" if ratio <= TARGET_RATIO and not attack_result["not_refused"] else "MISS"
    print(f"{'contender':<36}{'p50 ms':>10}{'p99 ms':>10}{'server CPU ms/req':>20}")
    for row in rows:
        print(
            f"{row['contender']:<36}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}"
            f"{row['server_cpu_ms_per_request']:>20.2f}"
        )
    print(f"p99 under attack / alone: {ratio:.2f} (target <= {TARGET_RATIO:g}) {verdict}")
    print(f"abusive requests refused: {attack_result['refused']}")
    print(f"server CPU per refused request: {refusal_cpu_ms:.1f} ms")
    if attack_result["not_refused"]:
        print(f"NOT refused: {attack_result['not_refused']}")
    if args.json:
        report = {
            "rows": rows,
            "p99_ratio": ratio,
            "target": TARGET_RATIO,
            "verdict": verdict,
            "server_cpu_ms_per_refusal": refusal_cpu_ms,
            **attack_result,
        }
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
