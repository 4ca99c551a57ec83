"""One or two `lookalike serve` processes over one index folder, under 4 and 16 concurrent clients (loopback).

The index: the 1,000 Corel-1K photos embedded for real, filled up to 10,000 vectors with noisy copies of them
(benchmarks/load_test.py's recipe). With two processes the clients' requests alternate between the two ports, as a
round-robin front (README, 'A real cluster') would spread them; no proxy is in the path here.

    flock /tmp/lookalike-bench.lock python -m benchmarks.multiserve [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks import collect
from benchmarks.load_test import add_noisy_copies, free_port, load_average, run, scenarios, start_server
from lookalike.index import ImageIndex
from lookalike.settings import cache_dir, datasets_dir

TARGET_IMAGES = 10_000
PROCESSES = (1, 2)
CLIENTS = (4, 16)
SCENARIOS = ("search by upload", "search by id")


def built_index(folder: Path, corel: Path) -> tuple[int, list[tuple[str, bytes]]]:
    """The index (built once, reused) and 64 of its photos as upload queries."""
    with ImageIndex.open_or_create(folder) as index:
        if len(index) < TARGET_IMAGES:
            index.add_folder(corel)
            add_noisy_copies(index, TARGET_IMAGES - len(index))
        count = len(index)
    photos = sorted(corel.rglob("*.jpg"))[::16][:64]
    return count, [(p.name, p.read_bytes()) for p in photos]


def measure(folder: Path, processes: int, count: int, photos: list, requests: int) -> list[tuple[int, str, dict]]:
    ports = [free_port() for _ in range(processes)]
    servers = [start_server(folder, port) for port in ports]
    try:
        per_port = [scenarios(f"http://127.0.0.1:{port}/api/indexes/{folder.name}", photos, count) for port in ports]
        rows = []
        for name in SCENARIOS:
            def spread(client, n, name=name):
                return per_port[n % processes][name](client, n)
            run(spread, 2 * processes * 4, 2 * processes)  # warm-up: every process has embedded, not reported
            for clients in CLIENTS:
                result = run(spread, requests, clients)
                rows.append((processes, name, result))
                print(processes, name, {k: round(v, 1) for k, v in result.items()}, file=sys.stderr, flush=True)
        return rows
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="requests per cell")
    parser.add_argument("--work", type=Path, default=cache_dir() / "bench" / "multiserve-10k", help="index folder")
    args = parser.parse_args()
    count, photos = built_index(args.work, datasets_dir() / "corel1k")
    before = load_average()
    started = time.perf_counter()
    rows = [row for processes in PROCESSES for row in measure(args.work, processes, count, photos, args.requests)]
    write(rows, count, before, load_average(), time.perf_counter() - started)


def write(rows: list[tuple[int, str, dict]], count: int, before: str, after: str, seconds: float) -> None:
    lines = [
        "## Several serving processes over one index (`benchmarks/multiserve.py`)", "",
        collect.machine_line(), f"{os.cpu_count()} cores. Load average (1/5/15 min) before: {before}, after: {after} "
        f"(other work shared the machine); {seconds:.0f} s in all.", "",
        f"`lookalike serve` (uvicorn, one worker each) over one index folder of {count:,} efficientnet-lite0 vectors "
        "(exact search; 1,000 Corel-1K photos embedded for real, the rest noisy copies), 1 or 2 processes; httpx "
        "client threads on the same machine, one connection each, their requests alternating between the "
        "processes. Upload: a real Corel photo sent as JPEG bytes, decoded, embedded and searched by the server; "
        "by id: a stored vector searched. k=10.", "",
        "| processes | scenario | clients | requests | errors | req/s | p50 ms | p99 ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for processes, name, r in rows:
        lines.append(f"| {processes} | {name} | {r['clients']} | {r['requests']} | {r['errors']} | "
                     f"{r['throughput']:.1f} | {r['p50']:.0f} | {r['p99']:.0f} |")
    ratios = ", ".join(f"{name} x {clients} clients {ratio:.2f}" for name, clients, ratio in scaling(rows))
    lines += ["", f"Throughput of 2 processes over 1: {ratios}. The cores bound it: a search by upload spends most "
              "of its time embedding on the CPU, and this machine's 2 cores also run the clients (and other work), "
              "so a second process only uses what one leaves idle (Python's GIL, waits on I/O). Where each "
              "process has cores of its own (a bigger machine, or a process per machine behind the front), "
              "throughput grows with the processes until the cores are busy; that is not measured here."]
    collect.write_section("multiserve", "\n".join(lines))


def scaling(rows: list[tuple[int, str, dict]]) -> list[tuple[str, int, float]]:
    """Throughput with 2 processes over that with 1, per scenario and client count."""
    by = {(processes, name, r["clients"]): r["throughput"] for processes, name, r in rows}
    return [(name, clients, by[(2, name, clients)] / by[(1, name, clients)])
            for name in SCENARIOS for clients in CLIENTS if (1, name, clients) in by and (2, name, clients) in by]


if __name__ == "__main__":
    main()
