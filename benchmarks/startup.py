"""The first hour (issue 26): how long the CLI takes to start, and how big the two installs are.

    flock /tmp/lookalike-bench.lock python -m benchmarks.startup [--before OLD_TREE] [--installs]

Start-up is timed from outside by farm-bench (whole process, median of 7 paired runs), each command paired with
`python -c "import numpy"` on the same machine at the same moment, so the ratio holds when the machine is busy.
`--before` times the same commands with another checkout's package first on PYTHONPATH (the tree before a change).
`--installs` builds a wheel from this tree, installs it into two clean venvs, the runtime (what `make demo`
installs) and the dev extra (what `make test` adds), measures both, and runs the demo from the runtime venv with a
fresh model cache, counting the lines of warnings it prints. Writes section "startup".
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import collect

REPO = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
DEMO = REPO / "demo" / "gallery"
TARGETS = {"--help": 4.0, "search --id": 6.0}  # the ceilings, as ratios to `import numpy`
RUNS = 7


def farm_bench(command: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Median wall seconds of the command (A), of `import numpy` (B), and A/B paired run by run."""
    baseline = f"{PYTHON} -c 'import numpy'"
    out = subprocess.run(["farm-bench", "-n", str(RUNS), "--timeout", "300", "--vs", baseline, "--", *command],
                         capture_output=True, text=True, env=env, check=True, cwd=cwd).stdout
    medians = {}
    for name in ("A wall s", "B wall s", "A/B wall"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        medians[name] = float(line.split()[-2])  # min, median, max
    return {"seconds": medians["A wall s"], "numpy": medians["B wall s"], "ratio": medians["A/B wall"]}


def timings(work: Path, tree: Path | None) -> dict[str, dict[str, float]]:
    """Both commands with this tree's package, or `tree`'s (which indexes the demo itself, in its own format)."""
    env = os.environ | ({"PYTHONPATH": str(tree)} if tree else {})
    home = tree or REPO  # `python -m` puts the working folder first on the path: the tree timed must be that folder
    index = demo_index(work / ("demo-index-before" if tree else "demo-index"), env, home)
    lookalike = [str(PYTHON), "-m", "lookalike"]
    search = [*lookalike, "search", "--id", "1", "--index", str(index), "-k", "5"]
    return {"--help": farm_bench([*lookalike, "--help"], env, home), "search --id": farm_bench(search, env, home)}


def demo_index(index: Path, env: dict[str, str], home: Path) -> Path:
    subprocess.run([str(PYTHON), "-m", "lookalike", "index", str(DEMO), "--index", str(index)], check=True,
                   capture_output=True, env=env, cwd=home)
    return index


def megabytes(folder: Path) -> int:
    return int(subprocess.run(["du", "-sm", str(folder)], capture_output=True, text=True, check=True).stdout.split()[0])


def venv_with(folder: Path, requirement: str) -> Path:
    alone = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}  # nothing of this tree
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, env=alone)  # the CPU build, as the Makefile installs it
    subprocess.run([*pip, requirement], check=True, env=alone)
    return folder


def warnings_in(text: str) -> list[str]:
    """Lines that warn, leaving out pip's notes about this machine's own package mirrors (its pip.conf)."""
    return [line for line in text.replace("\r", "\n").splitlines()
            if "warning" in line.lower() and "is neither a file nor a directory" not in line]


def installs(work: Path) -> dict[str, object]:
    """Both venv sizes, and the warnings a wheel build and a first demo print."""
    fresh = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    build = subprocess.run([str(PYTHON), "-m", "pip", "wheel", "-v", "--no-deps", "--wheel-dir", str(work / "wheel"),
                            str(REPO)], capture_output=True, text=True, check=True, env=fresh)
    wheel = next((work / "wheel").glob("lookalike-*.whl"))
    runtime = venv_with(work / "runtime", str(wheel))
    dev = venv_with(work / "dev", f"{wheel}[dev]")
    env = os.environ | {"LOOKALIKE_CACHE": str(work / "cache")}
    env.pop("PYTHONPATH", None)
    lookalike = str(runtime / "bin" / "lookalike")
    query = sorted((DEMO / "shoes").glob("*.jpg"))[0]
    demo = [subprocess.run(command, capture_output=True, text=True, env=env, check=True, cwd=work) for command in
            ([lookalike, "index", str(DEMO), "--index", "demo"], [lookalike, "search", str(query), "--index", "demo"])]
    printed = "\n".join(run.stderr + run.stdout for run in demo).replace("\r", "\n")
    return {"runtime MB": megabytes(runtime), "dev MB": megabytes(dev),
            "build warnings": len(warnings_in(build.stdout + build.stderr)),
            "demo warnings": len(warnings_in(printed)),
            "demo notes": [line for line in printed.splitlines() if line.startswith("lookalike:")]}


def row(name: str, measured: dict[str, float]) -> str:
    target = TARGETS[name]
    verdict = "met" if measured["ratio"] <= target else "missed"
    return (f"| `lookalike {name}` | {measured['seconds']:.2f} s | {measured['numpy']:.2f} s | "
            f"{measured['ratio']:.1f}x | {target:g}x ({verdict}) |")


def section(now: dict[str, dict[str, float]], before: dict[str, dict[str, float]] | None,
            installed: dict[str, object] | None) -> str:
    lines = ["## The first hour: start-up and installs", "", collect.machine_line(),
             f"Written by `benchmarks/startup.py`: farm-bench, median of {RUNS} runs paired with "
             "`python -c \"import numpy\"`; `search --id` searches the demo gallery's index (144 images).", "",
             "| command | wall | `import numpy` | ratio | target |", "|---|---|---|---|---|"]
    lines += [row(name, measured) for name, measured in now.items()]
    if before:
        lines += ["", "The same commands on the tree before the change (its package first on PYTHONPATH):", "",
                  "| command | wall | `import numpy` | ratio | target |", "|---|---|---|---|---|"]
        lines += [row(name, measured) for name, measured in before.items()]
    if installed:
        lines += ["", f"Installs from a wheel built from the tree, in clean venvs: the runtime (`make demo`) "
                  f"{installed['runtime MB']} MB, with the dev extra (`make test`) {installed['dev MB']} MB "
                  f"(both with torch 2.13.0, CPU build). Lines with 'warning' printed by the wheel build: "
                  f"{installed['build warnings']}; by the first demo (index + search, fresh model cache): "
                  f"{installed['demo warnings']}. Its notes: {'; '.join(installed['demo notes']) or 'none'}."]  # type: ignore[arg-type]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout of the tree before the change, timed too")
    parser.add_argument("--installs", action="store_true", help="measure the two clean installs (minutes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        now = timings(work, None)
        before = timings(work, args.before.resolve()) if args.before else None
        print(collect.write_section("startup", section(now, before, None)))  # kept should the installs fail
        if args.installs:
            print(collect.write_section("startup", section(now, before, installs(work))))
        shutil.rmtree(work / "runtime", ignore_errors=True)


if __name__ == "__main__":
    main()
