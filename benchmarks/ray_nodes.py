"""Ray ingestion on a cluster of separate node processes (the tests' RayNodes: `ray start --head`, then
`ray start --address`), one node against two, on this machine's same 2 cores.

Each run starts its cluster afresh (1 CPU per node, one embedding actor per CPU), indexes the photos through
`--ray-address` (ingest_with_ray with the cluster's address), and stops it. The photos are read by the node that
embeds them. Two nodes here share the cores of one: what is measured is whether the second node's actor is used
and what a node costs, not a second machine's speed.

    flock /tmp/lookalike-bench.lock python -m benchmarks.ray_nodes [PHOTOS_FOLDER]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import collect
from benchmarks.distributed import Clock
from lookalike.files import walk_images
from lookalike.index import ImageIndex
from lookalike.scale.distributed import ingest_with_ray, start_ray
from lookalike.settings import datasets_dir

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from clusters import RayNodes, require_program  # noqa: E402  (the suite's own cluster code)


def cluster_run(photos: Path, nodes: int, scratch: Path) -> dict[str, float]:
    import ray

    cluster = RayNodes(require_program("ray", "ray[data]"), Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp")))
    started = time.perf_counter()
    try:
        cluster.start_node(head=True)
        for _ in range(nodes - 1):
            cluster.start_node()
        start_ray(cluster.address)
        ready = time.perf_counter() - started
        clock = Clock()
        with ImageIndex.create(scratch / f"nodes-{nodes}", pca=0) as index:
            began = time.perf_counter()
            report = ingest_with_ray(index, photos, ray=cluster.address, progress=clock)
            seconds = time.perf_counter() - began
        ray.shutdown()
    finally:
        cluster.stop()
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
        for log in cluster.temp_dir.parent.glob(f"{cluster.temp_dir.name}.node*.log"):
            log.unlink()
    return {"nodes": nodes, "ready": ready, "seconds": seconds, "images": report.added, "rate": report.added / seconds,
            "steady": clock.steady_rate(), "workers": report.workers, "first_shard": clock.marks[0][0] - began}


def one_run(photos: Path, nodes: int) -> dict[str, float]:
    """A run in a process of its own: a driver that joined one cluster does not join the next one reliably."""
    output = subprocess.run([sys.executable, "-m", "benchmarks.ray_nodes", "--run", str(nodes), str(photos)],
                            capture_output=True, text=True, check=True, cwd=REPO).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    if argv[:1] == ["--run"]:
        with tempfile.TemporaryDirectory(prefix="lookalike-ray-nodes-") as scratch:
            print(json.dumps(cluster_run(Path(argv[2]), int(argv[1]), Path(scratch))))
        return
    photos = Path(argv[0]) if argv else datasets_dir() / "corel1k"
    count = sum(1 for _ in walk_images(photos))
    runs = [one_run(photos, nodes) for nodes in (1, 2, 1)]  # 1 again: the load drifts
    for run in runs:
        print(run, flush=True)
    one = (runs[0]["rate"] + runs[2]["rate"]) / 2
    two = runs[1]["rate"]
    lines = [
        "## Ray on separate nodes: 1 vs 2 (`benchmarks/ray_nodes.py`)", "",
        collect.machine_line(), f"{os.cpu_count()} cores; load average at the end {os.getloadavg()[0]:.1f} (other "
        "work shared the machine).", "",
        f"{count:,} photos of `{photos.name}/`, efficientnet-lite0, through `--ray-address`: a cluster of separate "
        "`ray start` node processes on loopback (head, then a worker node joining it), 1 CPU per node, one "
        "embedding actor per CPU; each run on a fresh cluster, the 1-node run before and after the 2-node one.", "",
        "| nodes | cluster up (s) | run (s) | images | actors | images/s end to end | images/s steady "
        "| first shard (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        *(f"| {r['nodes']} | {r['ready']:.1f} | {r['seconds']:.1f} | {r['images']} | {r['workers']} | "
          f"{r['rate']:.1f} | {r['steady']:.1f} | {r['first_shard']:.1f} |" for r in runs), "",
        f"2 nodes over 1 (mean of the two 1-node runs): **{two / one:.2f}x** end to end. Both nodes run on the same "
        "2 cores, which also run the driver (listing, merging into SQLite) and other work, so this is bounded well "
        "below 2x by the cores, not by Ray: with a machine per node each actor would have its own cores. What it "
        "shows is that the second node's actor takes shards and the photos are read where they are embedded.",
    ]
    print(collect.write_section("ray-nodes", "\n".join(lines)))


if __name__ == "__main__":
    main(sys.argv[1:])
