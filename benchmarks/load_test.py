"""Bounded HTTP load test on loopback: `lookalike serve` over a 10,000-image index, a few concurrent httpx clients.

The index: every clothing photo (3,781) and every Corel-1K photo (1,000) embedded for real, then filled up
to 10,000 vectors with noisy copies of those real vectors (Gaussian noise, re-normalised; they have no image
files). Queries are real photos uploaded as bytes: the server decodes, embeds and searches each one.

    flock /tmp/lookalike-bench.lock python -m benchmarks.load_test [--requests 400] [--clients 1 2 4]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from benchmarks import collect
from lookalike.cli.common import progress_bar
from lookalike.index import ImageIndex, NewImage
from lookalike.settings import cache_dir, datasets_dir

TARGET_IMAGES = 10_000
NOISE = 0.02  # per-dimension standard deviation before re-normalising (cosine to the source about 0.6-0.8)
TARGET_P99_MS = 150.0
REPO = Path(__file__).resolve().parent.parent


def build_index(folder: Path, datasets: Path, target: int) -> ImageIndex:
    """Real embeddings of clothing and Corel-1K, then noisy copies up to `target` (built once, reused)."""
    index = ImageIndex.open_or_create(folder)
    if len(index) >= target:
        return index
    for name in ("clothing", "corel1k"):
        started = time.perf_counter()
        with progress_bar(f"embedding {name}") as progress:
            report = index.add_folder(datasets / name, progress=progress)
        print(f"embedded {name}: {report.added} added, {report.failed} failed in {report.seconds:.0f}s "
              f"({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    add_noisy_copies(index, target - len(index))
    return index


def add_noisy_copies(index: ImageIndex, count: int, seed: int = 0) -> None:
    ids, vectors = index.vectors()
    rng = np.random.default_rng(seed)
    sources = rng.integers(0, len(ids), size=count)
    noisy = vectors[sources] + rng.normal(0, NOISE, size=(count, vectors.shape[1])).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    images = [NewImage(str(index.folder / "synthetic" / f"noisy-{n:05d}-of-{ids[s]}.jpg"), f"synthetic-{n}", 0, 0.0,
                       224, 224) for n, s in enumerate(sources)]
    run = index.sync()
    run.store_images(images, noisy)
    run.finish()


def query_photos(datasets: Path, count: int = 64) -> list[tuple[str, bytes]]:
    """Real clothing test-split photos (they are also in the index, as users' photos often are)."""
    lines = (datasets / "clothing" / "labels.csv").read_text().splitlines()[1:]
    paths = [datasets / "clothing" / line.split(",")[0] for line in lines if line.endswith(",test")]
    return [(p.name, p.read_bytes()) for p in paths[:count]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(folder: Path, port: int, ready_within: float = 120) -> subprocess.Popen:
    command = [sys.executable, "-m", "lookalike", "serve", "--index", str(folder), "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + ready_within
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"server did not become ready in {ready_within:.0f} s")


Request = Callable[[httpx.Client, int], httpx.Response]


@dataclass
class Timed:
    """Every request of one run: client latency (ms), the server's own timings of those answered, the wall time."""

    latencies: list[float]
    server_ms: list[dict[str, float]]
    errors: int
    wall: float


def run(request: Request, total: int, clients: int) -> dict[str, float]:
    """`total` requests shared by `clients` threads, each with its own connection; latency per request."""
    timed = timed_requests(request, total, clients)
    ordered = np.asarray(timed.latencies)
    stages = {name: statistics.fmean(t.get(name, 0.0) for t in timed.server_ms) if timed.server_ms else 0.0
              for name in ("decode", "embed", "search")}
    return {"requests": total, "clients": clients, "throughput": total / timed.wall, "errors": timed.errors,
            "p50": float(np.percentile(ordered, 50)), "p99": float(np.percentile(ordered, 99)),
            "max": float(ordered.max()), **stages}


def timed_requests(request: Request, total: int, clients: int) -> Timed:
    """`total` requests shared by `clients` threads, each with its own connection, every timing kept."""
    latencies: list[float] = []
    server_ms: list[dict[str, float]] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(total))

    def worker() -> None:
        nonlocal errors
        with httpx.Client(timeout=30) as client:
            while True:
                with lock:
                    number = next(counter, None)
                if number is None:
                    return
                started = time.perf_counter()
                try:
                    response = request(client, number)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = (time.perf_counter() - started) * 1e3
                with lock:
                    latencies.append(elapsed)
                    if ok:
                        server_ms.append(response.json()["timings_ms"])
                    else:
                        errors += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Timed(latencies, server_ms, errors, time.perf_counter() - started)


def scenarios(base: str, photos: list[tuple[str, bytes]], count: int) -> dict[str, Request]:
    def by_upload(client: httpx.Client, n: int) -> httpx.Response:
        name, data = photos[n % len(photos)]
        return client.post(f"{base}/search", files={"image": (name, data, "image/jpeg")}, data={"k": "10"})

    def by_id(client: httpx.Client, n: int) -> httpx.Response:
        return client.get(f"{base}/search", params={"id": 1 + (n * 7919) % count, "k": 10})

    def random_query(client: httpx.Client, n: int) -> httpx.Response:
        return client.get(f"{base}/search", params={"random": "true", "seed": n, "k": 10})

    return {"search by upload": by_upload, "search by id": by_id, "random search": random_query}


def load_average() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400, help="requests per scenario and concurrency")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--work", type=Path, default=cache_dir() / "bench" / "http-10k", help="index folder (kept)")
    parser.add_argument("--images", type=int, default=TARGET_IMAGES, help="index size (real photos + noisy copies)")
    parser.add_argument("--no-section", action="store_true", help="print only (a smoke run of the script)")
    args = parser.parse_args()

    datasets = datasets_dir()
    for name in ("clothing", "corel1k"):
        if not (datasets / name / "labels.csv").exists():
            raise SystemExit(f"load_test: {datasets / name} not found; set LOOKALIKE_DATASETS")
    with build_index(args.work, datasets, args.images) as index:
        count, real = len(index), sum(1 for r in index.records() if r.size > 0)
    photos = query_photos(datasets)
    port = free_port()
    load_before = load_average()
    server = start_server(args.work, port)
    rows = []
    try:
        base = f"http://127.0.0.1:{port}/api/indexes/{args.work.name}"
        requests = scenarios(base, photos, count)
        run(requests["search by upload"], 20, 1)  # warm-up, not reported
        for name, request in requests.items():
            for clients in args.clients:
                result = run(request, args.requests, clients)
                rows.append((name, result))
                print(name, {k: round(v, 1) for k, v in result.items()}, file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=30)
    if not args.no_section:
        write(rows, count, real, len(photos), load_before, load_average())


def write(rows: list[tuple[str, dict[str, float]]], count: int, real: int, photos: int, load_before: str,
          load_after: str) -> None:
    uploads = [r for name, r in rows if name == "search by upload"]
    worst = max(r["p99"] for r in uploads)
    errors = sum(r["errors"] for _, r in rows)
    lines = [
        "## HTTP service: load test on loopback",
        "",
        collect.machine_line(),
        f"Load average (1/5/15 min) before: {load_before}, after: {load_after} (other work shared the machine).",
        "",
        f"Script: `benchmarks/load_test.py`. Server: `lookalike serve` (uvicorn, one process) on 127.0.0.1; "
        f"clients: httpx threads, one connection each, on the same machine. Index: {count:,} vectors of "
        f"efficientnet-lite0 (exact inner-product search), of which {real:,} are real photos embedded by the "
        f"server's model (clothing 3,781 + Corel-1K 1,000) and {count - real:,} noisy copies of those vectors "
        f"(noise sigma {NOISE} per dimension, re-normalised; no image files behind them). Upload queries are "
        f"{photos} real clothing test photos sent as JPEG bytes, decoded, embedded and searched by the server; "
        "k=10. Latency is measured by the client (request sent to JSON parsed); decode/embed/search are the "
        "server's own mean timings.",
        "",
        "| scenario | clients | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) | max (ms) "
        "| decode (ms) | embed (ms) | search (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        lines.append(f"| {name} | {r['clients']} | {r['requests']} | {r['errors']} | {r['throughput']:.1f} "
                     f"| {r['p50']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | {r['decode']:.1f} | {r['embed']:.1f} "
                     f"| {r['search']:.1f} |")
    verdict = "met" if worst < TARGET_P99_MS and errors == 0 else "NOT met"
    lines += ["", f"Target (zero errors, p99 search-by-upload < {TARGET_P99_MS:.0f} ms): **{verdict}** "
                  f"(errors {errors}, worst upload p99 {worst:.1f} ms over all client counts)."]
    collect.write_section("http", "\n".join(lines))


if __name__ == "__main__":
    main()
