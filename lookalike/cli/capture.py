"""`lookalike capture`: read the date taken, camera and place of images indexed before the index kept them."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lookalike.cli.common import add_verb, open_index


def capture_command(args: argparse.Namespace) -> int:
    with open_index(args) as index:
        report = index.read_capture()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(f"capture read for {report.images} images: {report.from_exif} dated by their EXIF, {report.from_file} by "
          f"their file's time" + (f" ({report.unreadable} files gone or changed since indexed: dated by the time "
                                  "they were indexed with)" if report.unreadable else ""))
    return 0


def register(verbs: Any) -> None:
    add_verb(verbs, "capture", capture_command, "read the date taken, camera and GPS position of images indexed "
             "before lookalike kept them (an upgraded index), from their files, without embedding again")
