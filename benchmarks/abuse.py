"""Abuse, counted: a real `lookalike serve` on loopback under hostile-but-allowed uploads (a 6000x6000 animated GIF,
a 6000x6000 progressive JPEG, a 6000x6000 16-bit PNG, each under the 40-megapixel limit) sent 8 and 32 at once as
searches, and under slow clients (300 connections trickling their headers or bodies; 1,100 idle connections
against a 1,024-descriptor limit). For each: the server's peak resident memory (VmHWM from /proc, growth over
what it held), what it kept afterwards, /health's latency while it happens, what was refused. Writes the "abuse"
section of benchmarks/RESULTS.md.

    flock /tmp/lookalike-bench.lock python -m benchmarks.abuse [--json-out FILE] [--before FILE] [--no-write]

--json-out keeps the rows (to measure an older checkout: run its copy of this script with --no-write), --before
puts those rows beside these ones.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from benchmarks import collect

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20
SIDE = 6000


def hostile_uploads() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, content type)."""
    frames = [Image.new("P", (SIDE, SIDE), n) for n in range(50)]
    for frame in frames:
        frame.putpalette([value for n in range(256) for value in (n, n * 7 % 256, n * 13 % 256)])
    gif, jpeg, png = io.BytesIO(), io.BytesIO(), io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=40)
    noise = np.random.default_rng(0).integers(0, 255, (375, 375, 3), dtype=np.uint8)
    Image.fromarray(noise).resize((SIDE, SIDE)).save(jpeg, "JPEG", progressive=True, quality=70)
    Image.fromarray(np.linspace(0, 65535, SIDE * SIDE).reshape(SIDE, SIDE).astype(np.uint16)).save(png, "PNG")
    return {"animated GIF, 50 frames": (gif.getvalue(), "image/gif"),
            "progressive JPEG": (jpeg.getvalue(), "image/jpeg"), "16-bit grey PNG": (png.getvalue(), "image/png")}


class Server:
    def __init__(self, index: Path, log: Path, descriptors: int | None = None):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

        def limit() -> None:
            if descriptors:
                resource.setrlimit(resource.RLIMIT_NOFILE, (descriptors, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

        environment = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_") or k == "LOOKALIKE_CACHE"}
        with open(log, "w") as output:
            self.process = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--index", str(index),
                                             "--port", str(self.port)], cwd=REPO, env=environment, stdout=output,
                                            stderr=output, preexec_fn=limit)
        self.log = log
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120,
                                   limits=httpx.Limits(max_connections=64))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if self.client.get("/ready").status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError("lookalike serve did not start")

    def memory(self, field: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(field)

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        self.process.wait(timeout=30)


class HealthProbe:
    """GET /health every 50 ms on its own connection while something else happens: its latencies (ms)."""

    def __init__(self, port: int):
        self.port, self.latencies, self.failures = port, [], 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30) as client:
            while not self.stopping.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get("/health").status_code == 200
                except httpx.TransportError:
                    ok = False
                if ok:
                    self.latencies.append((time.perf_counter() - started) * 1e3)
                else:
                    self.failures += 1
                time.sleep(0.05)

    def __enter__(self) -> HealthProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.latencies) or [float("nan")]
        return {"health_p50_ms": statistics.median(ordered), "health_max_ms": ordered[-1],
                "health_failed": self.failures}


def upload_burst(server: Server, name: str, data: bytes, kind: str, concurrency: int) -> dict[str, Any]:
    server.reset_peak()
    resident = server.memory("VmRSS")

    def search(_: int) -> str:
        try:
            return str(server.client.post("/api/indexes/idx/search", data={"k": "3"},
                                          files={"image": ("upload", data, kind)}).status_code)
        except httpx.TransportError as error:
            return type(error).__name__

    started = time.perf_counter()
    with HealthProbe(server.port) as probe, ThreadPoolExecutor(concurrency) as clients:
        statuses = Counter(clients.map(search, range(concurrency)))
    seconds = time.perf_counter() - started
    time.sleep(1)
    return {"load": f"{name} ({len(data) / MIB:.1f} MiB) as POST /search", "requests": concurrency,
            "concurrency": concurrency, "resident_mib": resident / MIB,
            "peak_growth_mib": (server.memory("VmHWM") - resident) / MIB,
            "kept_mib": (server.memory("VmRSS") - resident) / MIB, "seconds": seconds,
            "answers": dict(statuses)} | probe.figures()


def slow_clients(server: Server, connections: int, trickle: bool, searches: int = 8) -> dict[str, Any]:
    """`connections` that never finish a request (trickling a byte every 0.5 s, or idle), then `searches`
    normal searches while they are held: how many are closed over time, what the searches got."""
    server.reset_peak()
    resident = server.memory("VmRSS")
    starts = [b"GET /api/indexes HTTP/1.1\r\nHost: x\r\n",
              b"POST /api/indexes/idx/search HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n--b\r\n"]
    opened: list[socket.socket] = []
    for number in range(connections):
        with contextlib.suppress(OSError):
            connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            connection.setblocking(False)
            with contextlib.suppress(OSError):
                connection.send(starts[number % 2] if trickle else b"")
            opened.append(connection)
    photo = (REPO / "demo" / "gallery").rglob("*.jpg").__next__().read_bytes()
    answers: Counter[str] = Counter()
    timings: list[float] = []
    started = time.perf_counter()
    with HealthProbe(server.port) as probe:
        for _ in range(searches):
            begun = time.perf_counter()
            try:
                answers[str(server.client.post("/api/indexes/idx/search", files={"image": ("q.jpg", photo)},
                                               timeout=15).status_code)] += 1
            except httpx.TransportError as error:
                answers[type(error).__name__] += 1
            timings.append((time.perf_counter() - begun) * 1e3)
        closed_at: dict[int, float] = {}
        while time.perf_counter() - started < 75 and len(closed_at) < len(opened):
            for number, connection in enumerate(opened):
                if number in closed_at:
                    continue
                try:
                    if trickle:
                        connection.send(b"x")
                    data = connection.recv(4096)
                    if data == b"" or data.startswith((b"HTTP/1.1 408", b"HTTP/1.1 503")):
                        closed_at[number] = time.perf_counter() - started
                except BlockingIOError:
                    pass
                except OSError:
                    closed_at[number] = time.perf_counter() - started
            time.sleep(0.5)
    for connection in opened:
        connection.close()
    lines = server.log.read_text().splitlines()
    return {"load": f"{connections} {'trickling' if trickle else 'idle'} connections, then {searches} searches",
            "requests": connections + searches, "concurrency": connections, "resident_mib": resident / MIB,
            "peak_growth_mib": (server.memory("VmHWM") - resident) / MIB, "kept_mib": None,
            "seconds": time.perf_counter() - started, "answers": dict(answers),
            "search_ms_max": max(timings), "closed": len(closed_at), "opened": len(opened),
            "closed_by_s": max(closed_at.values(), default=None), "log_lines": len(lines)} | probe.figures()


def measure(concurrencies: list[int]) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        photos = root / "photos"
        photos.mkdir()
        for number, path in enumerate(sorted((REPO / "demo" / "gallery").rglob("*.jpg"))[:20]):
            shutil.copy(path, photos / f"{number:02d}.jpg")
        subprocess.run([sys.executable, "-m", "lookalike", "index", str(photos), "--index", str(root / "idx"),
                        "--model", "color-histogram"], cwd=REPO, check=True, capture_output=True)
        server = Server(root / "idx", root / "server.log")
        try:
            for name, (data, kind) in hostile_uploads().items():
                for concurrency in concurrencies:
                    rows.append(upload_burst(server, name, data, kind, concurrency))
                    print(rows[-1], file=sys.stderr)
            rows.append(slow_clients(server, 300, trickle=True))
            print(rows[-1], file=sys.stderr)
        finally:
            server.stop()
        server = Server(root / "idx", root / "limited.log", descriptors=1024)
        try:
            limited = "1,100 idle connections under a 1,024-descriptor limit, then 8 searches"
            rows.append(slow_clients(server, 1100, trickle=False) | {"load": limited})
            print(rows[-1], file=sys.stderr)
        finally:
            server.stop()
    return rows


def answers_text(answers: dict[str, int]) -> str:
    return ", ".join(f"{count} x {status}" for status, count in sorted(answers.items()))


def row_text(row: dict[str, Any]) -> str:
    kept = "-" if row["kept_mib"] is None else f"{row['kept_mib']:.0f}"
    refused = answers_text(row["answers"])
    if "closed" in row:
        last = f" (the last after {row['closed_by_s']:.0f} s)" if row["closed"] else ""
        refused += (f"; {row['closed']:,} of {row['opened']:,} connections closed by the server{last}, slowest "
                    f"search {row['search_ms_max']:.0f} ms, {row['log_lines']:,} log lines")
    health = f"{row['health_p50_ms']:.0f} / {row['health_max_ms']:.0f}" if row["health_p50_ms"] == \
        row["health_p50_ms"] else f"none answered ({row['health_failed']} probes failed)"  # NaN: no latency
    return (f"| {row['load']} | {row['requests']:,} | {row['concurrency']:,} | {row['resident_mib']:.0f} | "
            f"{row['peak_growth_mib']:.0f} | {kept} | {health} | {refused} |")


def section(rows: list[dict[str, Any]], before: list[dict[str, Any]] | None) -> str:
    header = ["| load | requests | concurrency | server held (MiB) | peak growth (MiB) | kept after (MiB) | "
              "/health p50 / max (ms) | answers, what was refused |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    lines = ["## Abuse: hostile uploads and slow clients (benchmarks/abuse.py)", "", collect.machine_line(), "",
             "A real `lookalike serve` (color-histogram index of 20 photos, so the figures are decoding, not a "
             "network) with its defaults: a decode slot per core (`LOOKALIKE_DECODE_SLOTS`, a request waits up to "
             "10 s for one, then 503 with Retry-After), headers within 10 s and bodies within 60 s of a "
             "connection's first byte, at most half the descriptor limit in connections (one more closes the one "
             "waiting longest for its headers). Each hostile file is "
             "sent as a search upload by that many clients at once; /health is asked every 50 ms meanwhile. "
             "Peak growth = VmHWM over what the server held before; kept = VmRSS growth 1 s after. Log lines "
             "include one per request (the /health probe's too); the 4.8 million before were repeated errors.", "",
             *header, *[row_text(row) for row in rows]]
    if before:
        lines += ["", "The same script on the commit before issue 24's items 2 and 3 (no decode slots, no "
                      "timeouts, no connection cap):", "", *header, *[row_text(row) for row in before]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--before", type=Path, help="rows of an older checkout (its --json-out)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--rows", type=Path, help="write the section from rows measured earlier (--json-out)")
    args = parser.parse_args()
    rows = json.loads(args.rows.read_text()) if args.rows else measure(args.concurrency)
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=1))
    if not args.no_write:
        before = json.loads(args.before.read_text()) if args.before else None
        print(collect.write_section("abuse", section(rows, before)))


if __name__ == "__main__":
    main()
