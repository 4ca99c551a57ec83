"""Assemble benchmarks/RESULTS.md from the sections each benchmark script writes.

Every script in benchmarks/ writes its own `benchmarks/results/NAME.md` (with the machine and
date it ran on) and then calls `write_results()`, so scripts never overwrite each other.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = HERE / "results"


def machine_line() -> str:
    """Machine and date, for the top of a section."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} CPU cores ({cpu}), " \
           f"Python {platform.python_version()}."


def write_section(name: str, markdown: str) -> Path:
    SECTIONS.mkdir(exist_ok=True)
    path = SECTIONS / f"{name}.md"
    path.write_text(markdown.rstrip() + "\n")
    write_results()
    return path


def write_results() -> Path:
    parts = ["# Benchmark results", "",
             "Written by the scripts in `benchmarks/` (each section by the script named in it).", ""]
    for section in sorted(SECTIONS.glob("*.md")):
        parts += [section.read_text().rstrip(), ""]
    target = HERE / "RESULTS.md"
    target.write_text("\n".join(parts))
    return target


if __name__ == "__main__":
    print(write_results())
