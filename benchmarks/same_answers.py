"""Do two versions of lookalike give the same answers? `lookalike evaluate` (the product's own measurement) of
each version on Corel-1K and clothing, new photos searched against the gallery split, with the default expansion
(aqe) and plain cosine, all true matches and cut to 3; mAP must agree to 4 digits after a restructuring.

    python -m benchmarks.same_answers BEFORE_COMMIT [AFTER_COMMIT]   (commits of this repository; default HEAD)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.collect import machine_line, write_section

REPO = Path(__file__).resolve().parent.parent
DATASETS = {"corel1k": ("query", "gallery"), "clothing": ("test", "train")}


def evaluate(tree: Path, dataset: Path, index: Path, query: str, gallery: str, matches: int | None) -> list[dict]:
    """The rows `lookalike evaluate --json` prints, run from `tree` (that version's package)."""
    command = [sys.executable, "-m", "lookalike", "evaluate", str(dataset), "--index", str(index),
               "--query-split", query, "--gallery-split", gallery, "--expand", "aqe", "--expand", "none", "--json"]
    command += ["--matches", str(matches)] if matches else []
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def version_rows(commit: str, datasets: Path, work: Path) -> dict[tuple[str, str, int | None], dict]:
    tree = work / commit.replace("/", "_")
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(tree), commit], check=True)
    try:
        rows = {}
        for name, (query, gallery) in DATASETS.items():
            for matches in (None, 3):
                for row in evaluate(tree, datasets / name, work / f"{tree.name}-{name}", query, gallery, matches):
                    rows[(name, row["expand"], matches)] = row
        return rows
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after", nargs="?", default="HEAD")
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    args = parser.parse_args()
    names = [subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", c], capture_output=True, text=True,
                            check=True).stdout.strip() for c in (args.before, args.after)]
    with tempfile.TemporaryDirectory() as work:
        before, after = (version_rows(c, args.datasets, Path(work)) for c in names)
    lines = [f"## Same answers after the restructuring (benchmarks/same_answers.py {names[0]} {names[1]})", "",
             machine_line(), "",
             "`lookalike evaluate` of each version: new photos (the query split) against the gallery split, default "
             "model; ms/query is the whole search call on a busy machine (one run, for scale only).", "",
             f"| set | expand | true matches | mAP {names[0]} | mAP {names[1]} | same to 4 digits | P@10 | top-1 "
             f"| ms/query {names[0]} | ms/query {names[1]} |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, old in before.items():
        new = after[key]
        agree = all(round(old[name], 4) == round(new[name], 4) for name in ("mAP", "P@10"))
        same = "yes" if agree else "**no**"
        lines.append(f"| {key[0]} | {key[1]} | {key[2] or 'all'} | {old['mAP']:.4f} | {new['mAP']:.4f} | {same} | "
                     f"{new['P@10']:.4f} | {new['top1'] or 0:.4f} | {old['ms_per_query']:.2f} | "
                     f"{new['ms_per_query']:.2f} |")
    print(write_section("same-answers", "\n".join(lines)))


if __name__ == "__main__":
    main()
