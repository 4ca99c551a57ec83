"""Faults, counted: the fault tests (crash points, full disks, hostile uploads, damaged folders) run with their
figures recorded, and the "faults" section of benchmarks/RESULTS.md written from them.

The tests are the measurement: each records what it saw (tests/recovery.py `record_figure`) into the file named
by LOOKALIKE_FAULT_FIGURES, and pytest's report says how many passed. The crash tests run `--runs` times (times
are medians, given beside the time a healthy open of the same index takes in the same test).

    flock /tmp/lookalike-bench.lock python -m benchmarks.faults [--runs 3] [--fuzz]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import timeit
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks import collect
from lookalike.faults import CRASH_AT, CRASH_POINTS

REPO = Path(__file__).resolve().parent.parent
CRASH_TESTS = ["tests/test_crash_points.py"]
OTHER_TESTS = ["tests/test_disk_full.py", "tests/test_hostile_uploads.py", "tests/test_faults.py",
               "tests/test_journal.py"]
# what a kill -9 of `lookalike serve` did to uploads before the journal, as issue 24 reported it
UPLOAD_CRASH_BEFORE = {"synchronous": "0 kept, 120 orphans after restart",
                       "background": "64 kept, 56 orphans after restart; GET /api/jobs/ID 404 \"no job with id\""}
FUZZ_TESTS = ["tests/test_fuzz_http.py"]
# as measured when the fuzzing test was added (commit 1742753, tests/test_fuzz_http.py): Schemathesis counts
FUZZ_FIGURES = "2,865 requests over every operation, on a server without a token and with one (called with and " \
               "without it), 0 server errors, 0 schema violations, about 35 s"


def run_tests(files: list[str], figures: Path, report: Path) -> tuple[dict[str, int], float]:
    """pytest over `files`, recording figures; (passed/failed/skipped counts, seconds)."""
    environment = {k: v for k, v in os.environ.items() if k != CRASH_AT} | {"LOOKALIKE_FAULT_FIGURES": str(figures)}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *files],
                   cwd=REPO, env=environment, check=False, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    suite = ElementTree.parse(report).getroot().find("testsuite")
    assert suite is not None, f"no test report in {report}"
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    for case in suite.iter("testcase"):
        for problem in [*case.iter("failure"), *case.iter("error")]:
            print(f"FAILED {case.get('name')}: {(problem.get('message') or '').splitlines()[:1]}", file=sys.stderr)
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts, seconds


def read_figures(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def crash_point_cost() -> float:
    """Nanoseconds per visit of a crash point while LOOKALIKE_CRASH_AT is unset (the normal case)."""
    from lookalike import faults

    faults.ARMED = None
    crash_point = faults.crash_point
    visits = 200_000
    best = min(timeit.repeat("crash_point('store.added')", globals={"crash_point": crash_point}, number=visits,
                             repeat=5))
    return best / visits * 1e9


def decoding_peak_mib(path: Path) -> dict[str, float]:
    """Peak memory (ru_maxrss growth) of decoding one RGBA image in a fresh process: as load_image does now, and
    as it did before (decode at full size, orient with ImageOps.exif_transpose, composite on white, convert to
    RGB: each step a full-size copy)."""
    ways = {
        "now": "from lookalike.images import load_image; load_image(PATH)",
        "before": "from PIL import Image, ImageOps; image = Image.open(PATH); image.load(); "
                  "rgba = ImageOps.exif_transpose(image).convert('RGBA'); "
                  "Image.alpha_composite(Image.new('RGBA', rgba.size, (255,) * 4), rgba).convert('RGB')",
    }
    peaks = {}
    for name, code in ways.items():
        script = textwrap.dedent(f"""
            import resource
            from lookalike import images  # noqa: F401 - imported before the baseline is read
            PATH = {str(path)!r}
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            {code}
            print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
        """)
        out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
        peaks[name] = float(out.stdout.strip())
    return peaks


def crash_table(crashes: list[dict[str, Any]]) -> list[str]:
    by_command: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for figure in crashes:
        by_command[figure["command"]].append(figure)
    lines = ["| command | cases (point or point@visit) | runs recovered | recover (ms, median) | "
             "healthy open (ms, median) | recover / healthy | re-run (ms, median) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for command, figures in by_command.items():
        points = {f["point"] for f in figures}
        recover = [f["recover_ms"] for f in figures if f["recover_ms"] is not None]
        healthy = [f["healthy_open_ms"] for f in figures if f["recover_ms"] is not None]
        reruns = [f["rerun_ms"] for f in figures if f["rerun_ms"] is not None]
        ratio = statistics.median(r / h for r, h in zip(recover, healthy, strict=True)) if recover else None
        lines.append(f"| {command} | {len(points)} | {len(figures)} | {median_text(recover)} | "
                     f"{median_text(healthy)} | {'-' if ratio is None else f'{ratio:.2f}'} | {median_text(reruns)} |")
    return lines


def median_text(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}" if values else "-"


def section(runs: int, crash_counts: dict[str, int], crash_seconds: float, other_counts: dict[str, int],
            other_seconds: float, figures: list[dict[str, Any]], cost_ns: float, peaks: dict[str, float],
            load: tuple[str, str], fuzz: tuple[dict[str, int], float] | None) -> str:
    crashes = [f for f in figures if f["kind"] == "crash"]
    disk = [f for f in figures if f["kind"] == "disk full"]
    uploads = [f for f in figures if f["kind"] == "hostile upload"]
    upload_crashes = dedupe([f for f in figures if f["kind"] == "upload crash"], ("during",))
    folders = dedupe([f for f in figures if f["kind"] == "folder"], ("case",))
    cases = {(f["command"], f["point"]) for f in crashes}
    lines = [
        "## Faults: crashes, full disks, hostile uploads (benchmarks/faults.py)", "", collect.machine_line(),
        f"Load average (1/5/15 min) before: {load[0]}, after: {load[1]} (other work shared the machine).", "",
        f"Crash tests (`{' '.join(CRASH_TESTS)}`), {runs} run(s): {crash_counts['passed']} passed, "
        f"{crash_counts['failures'] + crash_counts['errors']} failed, {crash_counts['skipped']} skipped "
        f"({crash_seconds / runs:.0f} s a run). Other fault tests (`{' '.join(OTHER_TESTS)}`): "
        f"{other_counts['passed']} passed, {other_counts['failures'] + other_counts['errors']} failed, "
        f"{other_counts['skipped']} skipped ({other_seconds:.0f} s).", "",
        "### Crash anywhere",
        "",
        f"{len(CRASH_POINTS)} crash points (`lookalike/faults.py`: `crash_point(name)` kills the process with "
        f"SIGKILL when LOOKALIKE_CRASH_AT names it) x the commands that reach them: {len(cases)} distinct cases, "
        f"{len(crashes)} runs, each killed at its point and recovered: the index opens, its count is SQLite's, "
        "every search finds exactly SQLite's images, its answers equal a rebuild from SQLite and lie at the state "
        "before or after the command (nothing half-done); the re-run completes, its answers equal an "
        "uninterrupted run's, and no temporary or stale file is left. Recover = open plus one search (which loads "
        "or rebuilds the searchable copy), after the crash; healthy open = the same on the finished index.", "",
        *crash_table(crashes), "",
        f"An unset crash point costs {cost_ns:.0f} ns per visit (a call and one comparison); a run visits a few "
        "per batch of 32 images.", "",
        "### Uploads after kill -9 (the server's journal)", "",
        "`lookalike serve` killed with SIGKILL (crash point) while it adds 120 uploaded photos, then started again. "
        "Acknowledged = answered (a background job's 202); kept = images of the batch in the index once the "
        "restarted server is done; orphans = files in INDEX/uploads that no image is.", "",
        "| killed during | acknowledged | kept | orphans at the kill | orphans after restart | job after restart | "
        "before the journal |", "|---|---:|---:|---:|---:|---|---|",
        *[f"| {f['during']} | {f['acknowledged']} | {f['kept']} | {f['orphans_at_kill']} | "
          f"{f['orphans_after_restart']} | {dash(f['job_after_restart'])} | "
          f"{UPLOAD_CRASH_BEFORE['background' if f['job_after_restart'] else 'synchronous']} |"
          for f in upload_crashes], "",
        "### Damaged or surprising index folders, busy writers", "",
        "| case | before (issue 24) | now |", "|---|---|---|",
        *[f"| {f['case']} | {f['before']} | {f['now'].replace('|', '/')} |" for f in folders], "",
        "### Disk full", "",
        "| how | during | exit | images searchable after | after the re-run | what the user reads |",
        "|---|---|---:|---:|---:|---|",
        *[f"| {f['way']} | {f['during']} | {f['exit']} | {dash(f['searchable'])} | {dash(f['after_rerun'])} | "
          f"{f['message'].replace('|', '/')} |" for f in dedupe(disk, ("way", "during"))], "",
        "A failed run gives back the space it took (tmpfs free space equal after two failed runs; no `*.partial` "
        "file left); before, a full disk gave raw tracebacks (`faiss::write_index ... No space left on device`, "
        "then `cannot rollback - no transaction is active`), and a full disk at open read \"images.sqlite is "
        "damaged\".", "",
        "### Hostile uploads", "",
        "Each file uploaded to `lookalike serve` on loopback as a query (`POST .../search`) and as an added image "
        "(`POST .../images`: a batch reports the files it could not index); peak = growth of the server's peak "
        "resident memory (VmHWM, reset before each file) while it handles both.", "",
        "| file | bytes | search | add | server peak growth (MiB) |", "|---|---:|---:|---:|---:|",
        *[f"| {f['file']} | {f['bytes']:,} | {f['search']} | {f['add']} | {f['server_peak_growth_mib']:.1f} |"
          for f in dedupe(uploads, ("file",))], "",
        f"Decoding the 6000x6000 RGBA PNG (152 KB, 36 megapixels) alone, in a fresh process: {peaks['now']:.0f} MiB "
        f"peak now, {peaks['before']:.0f} MiB the way `images.py` decoded it before (full-size copies to orient and "
        "convert; now a very large image is box-reduced by a whole factor right after decoding).", "",
        "### HTTP fuzzing (Schemathesis)", "",
        f"`tests/test_fuzz_http.py`: {FUZZ_FIGURES}."
        + (f" Re-run here: {fuzz[0]['passed']} tests passed, {fuzz[0]['failures'] + fuzz[0]['errors']} failed in "
           f"{fuzz[1]:.0f} s." if fuzz else ""),
    ]
    return "\n".join(lines)


def dash(value: object) -> str:
    return "-" if value is None else f"{value}"


def dedupe(figures: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The last figure of each case (the crash tests may run several times)."""
    return list({tuple(f[k] for k in keys): f for f in figures}.values())


def load_average() -> str:
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs of the crash tests (times are medians)")
    parser.add_argument("--fuzz", action="store_true", help="re-run the Schemathesis test too (about a minute)")
    args = parser.parse_args()
    load_before = load_average()
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        figures = scratch_path / "figures.jsonl"
        crash_counts: dict[str, int] = defaultdict(int)
        crash_seconds = 0.0
        for run in range(args.runs):
            counts, seconds = run_tests(CRASH_TESTS, figures, scratch_path / f"crash-{run}.xml")
            crash_seconds += seconds
            for key, value in counts.items():
                crash_counts[key] += value
            print(f"crash tests, run {run + 1}: {counts} in {seconds:.0f}s", file=sys.stderr)
        other_counts, other_seconds = run_tests(OTHER_TESTS, figures, scratch_path / "other.xml")
        print(f"other fault tests: {other_counts} in {other_seconds:.0f}s", file=sys.stderr)
        fuzz = run_tests(FUZZ_TESTS, scratch_path / "fuzz.jsonl", scratch_path / "fuzz.xml") if args.fuzz else None
        recorded = read_figures(figures)
        bomb = scratch_path / "huge.png"
        from PIL import Image

        Image.new("RGBA", (6000, 6000), (9, 99, 199, 128)).save(bomb)
        peaks = decoding_peak_mib(bomb)
    markdown = section(args.runs, crash_counts, crash_seconds, other_counts, other_seconds, recorded,
                       crash_point_cost(), peaks, (load_before, load_average()), fuzz)
    print(collect.write_section("faults", markdown))


if __name__ == "__main__":
    main()
