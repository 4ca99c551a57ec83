"""Made tests/data/format-1: run once with the lookalike of commit dd99eb9 (format 1), never again.

    PYTHONPATH=<a checkout of dd99eb9> python make_fixture.py tests/data/format-1

It indexes photos/ (12 demo photos, 3 of each of 4 kinds, with labels.csv) into index/ with the default
settings (float32, so any CPU opens it alike) and writes the answers that index gave into expected.json.
"""

import json
import os
import sys
from pathlib import Path

from lookalike.index import ImageIndex


def answer(result, photos: Path) -> list:
    return [[os.path.relpath(m.path, photos), round(m.score, 5), round(m.similarity, 5), m.labels]
            for m in result.matches]


def main(root: Path) -> None:
    photos = root / "photos"
    index = ImageIndex.create(root / "index", precision="float32")
    index.add_folder(photos)
    expected: dict = {"by_id": {}}
    for record in index.records():
        expected["by_id"][os.path.relpath(record.path, photos)] = answer(index.search(id=record.id, k=5), photos)
    first = next(index.records())
    expected["where_hat"] = answer(index.search(id=first.id, k=5, where={"label": "hat"}), photos)
    expected["by_file"] = answer(index.search(first.path, k=5), photos)
    kept = ("count", "index_type", "reduction", "augmentation", "model")
    expected["info"] = {k: v for k, v in index.info().items() if k in kept}
    index.close()
    (root / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
