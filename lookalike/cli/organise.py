"""Organising verbs: labels import, train-classifier, classify (zero-shot, from words), cluster (and cluster
label), map, duplicates."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from lookalike.cli.common import add_verb, open_index
from lookalike.errors import RequestError


def labels_command(args: argparse.Namespace) -> int:
    from lookalike.organise.labels import import_labels

    with open_index(args) as index:
        report = import_labels(index, args.csv_path, root=args.root)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


def train_classifier_command(args: argparse.Namespace) -> int:
    from lookalike.organise.classifier import train_classifier

    with open_index(args) as index:
        report = train_classifier(index, args.labels_csv, attribute=args.attribute, test_fraction=args.test_fraction,
                                  seed=args.seed)
        confusion = index.files.classifier_confusion_txt.read_text()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(f"trained on {report.train_count} images, {len(report.classes)} classes; held out {report.test_count} "
          f"({report.held_out}): accuracy {report.accuracy:.4f}")
    print(report.skipped.summary())
    print(confusion, end="")
    print("saved: " + ", ".join(report.files))
    return 0


def classify_command(args: argparse.Namespace) -> int:
    from lookalike.organise.zero_shot import zero_shot_labels

    with open_index(args) as index:
        report = zero_shot_labels(index, args.labels, attribute=args.attribute, prompt=args.prompt)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return 0


def cluster_command(args: argparse.Namespace) -> int:
    from lookalike.organise.clustering import cluster_index, propagate_labels

    if args.action == "label":
        if not args.few_csv:
            raise RequestError("cluster label needs --few-csv FEW.csv (path,label for a few images per cluster)")
        with open_index(args) as index:
            report = propagate_labels(index, args.few_csv, out=args.out, attribute=args.attribute,
                                      truth_csv=args.truth_csv, unlabelled=args.unlabelled)
        _print_propagation(report, args.json)
        return 0
    with open_index(args) as index:
        report = cluster_index(index, k=args.k, out=args.out, attribute=args.attribute, seed=args.seed,
                               k_range=tuple(args.k_range))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(f"k={report.k} ({report.criterion}) in {report.seconds:.1f}s; sizes: {report.sizes}")
    if report.purity is not None:
        print(f"against {report.labelled} {args.attribute!r} labels: purity {report.purity:.4f}, NMI {report.nmi:.4f}")
    print(f"contact sheets, clusters.csv and summary.json in {report.files[0]}")
    return 0


def _print_propagation(report: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        return
    for warning in report.warnings:
        print(f"lookalike: warning: {warning}", file=sys.stderr)
    print(report.skipped.summary())
    print(f"{report.labelled_images} labelled images spread to {report.propagated} images; written to {report.output}")
    if report.accuracy is not None:
        print(f"accuracy against ground truth on {report.evaluated} images not labelled by hand: "
              f"{report.accuracy:.4f}")


def map_command(args: argparse.Namespace) -> int:
    from lookalike.organise.mapping import map_index

    with open_index(args) as index:
        report = map_index(index, args.out, colour_by=args.colour_by or None,
                           method=args.method, seed=args.seed, thumbnails=args.thumbnails)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"{report.method} map of {report.count} images in {report.seconds:.1f}s "
              f"(colour: {report.colour_by or 'none'}): " + ", ".join(report.files))
    return 0


def duplicates_command(args: argparse.Namespace) -> int:
    from lookalike.organise.duplicates import find_duplicates

    with open_index(args) as index:
        found = find_duplicates(index, threshold=args.threshold, min_inliers=args.min_inliers,
                                min_agreement=args.min_agreement, look_alike_threshold=args.look_alike_threshold)
    if args.json:
        print(json.dumps(found.to_dict(), indent=2))
        return 0
    for number, group in enumerate(found.groups, 1):
        print(f"group {number}: {len(group.paths)} copies of one photo (cosine >= {group.min_similarity:.3f})")
        for path in group.paths:
            print(f"  {'keep' if path == group.keep else '    '}  {path}")
    for number, alike in enumerate(found.look_alikes, 1):
        print(f"look-alike group {number}: {len(alike.paths)} different photos that look alike (cosine >= "
              f"{alike.min_similarity:.3f}; not copies, none could go)")
        for path in alike.paths:
            print(f"        {path}")
    print(f"{len(found.groups)} groups of copies; {found.could_go} images could go (keeping one per group); "
          f"{len(found.look_alikes)} look-alike groups (different photos, kept); {found.checked_pairs} pairs with "
          f"cosine >= {args.threshold} checked")
    return 0


def cosine_or_none(text: str) -> float | None:
    """--look-alike-threshold: a cosine, or 'none' for no look-alike groups."""
    return None if text.strip().lower() == "none" else float(text)


def register(verbs: Any) -> None:
    from lookalike.copy_check import DEFAULT_MIN_AGREEMENT, DEFAULT_MIN_INLIERS
    from lookalike.organise.clustering import AUTO_K_RANGE
    from lookalike.organise.duplicates import DEFAULT_LOOK_ALIKE_THRESHOLD, DEFAULT_THRESHOLD

    labels = add_verb(verbs, "labels", labels_command, "import labels (path + label columns) from a CSV")
    labels.add_argument("action", choices=["import"])
    labels.add_argument("csv_path", metavar="CSV", help="paths relative to the CSV's folder unless absolute")
    labels.add_argument("--root", help="folder the CSV's relative paths start from")

    train = add_verb(verbs, "train-classifier", train_classifier_command,
                     "train a classifier on the stored vectors (logistic regression) for search --by-class")
    train.add_argument("--labels-csv", required=True, metavar="CSV", help="CSV with path,label[,split]")
    train.add_argument("--attribute", default="label")
    train.add_argument("--test-fraction", type=float, default=0.2, help="held out when the CSV has no test split")
    train.add_argument("--seed", type=int, default=0)

    from lookalike.organise.zero_shot import DEFAULT_PROMPT

    classify = add_verb(verbs, "classify", classify_command, "label every image with the nearest of a few words "
                        "(zero-shot; an index of a CLIP-family model), for --where filters")
    classify.add_argument("--labels", required=True, metavar="WORDS", help='the labels to choose from, comma '
                          'separated: "chair,sofa,lamp"')
    classify.add_argument("--attribute", default="label", help="the label name to store them under (default label; "
                          "replaces its old values)")
    classify.add_argument("--prompt", default=DEFAULT_PROMPT, help="how each label is put into words "
                          f"(default {DEFAULT_PROMPT!r})")

    cluster = add_verb(verbs, "cluster", cluster_command,
                       "group images by content (k-means); `cluster label` spreads a few labels per cluster")
    cluster.add_argument("action", nargs="?", choices=["label"], help="propagate labels over the last clustering")
    cluster.add_argument("--k", type=int, help="number of clusters (default: automatic, the largest eigengap of "
                         "the images' neighbour graph when it is clearer than in shuffled vectors; else you are "
                         "asked for k)")
    cluster.add_argument("--k-range", type=int, nargs=2, default=list(AUTO_K_RANGE), metavar=("MIN", "MAX"),
                         help=f"numbers of clusters the automatic choice tries (default {AUTO_K_RANGE[0]} "
                              f"{AUTO_K_RANGE[1]})")
    cluster.add_argument("--out", help="output folder (default INDEX/clusters) or, for label, the CSV to write")
    cluster.add_argument("--attribute", default="label", help="label used for purity/NMI and propagation")
    cluster.add_argument("--few-csv", metavar="CSV", help="label: CSV of a few labelled images (path,label)")
    cluster.add_argument("--truth-csv", metavar="CSV",
                         help="label: CSV of ground-truth labels to score the propagation against")
    cluster.add_argument("--unlabelled", choices=["nearest", "leave"], default="nearest",
                         help="label: a cluster without labelled member takes the nearest cluster's label "
                              "(low confidence) or stays unlabelled")
    cluster.add_argument("--seed", type=int, default=0)

    mapping = add_verb(verbs, "map", map_command, "2-D map of the collection (PNG and interactive HTML)")
    mapping.add_argument("--out", help="output folder (default INDEX/map, where `lookalike serve` shows it)")
    mapping.add_argument("--colour-by", default="label", help="label to colour by (e.g. label, cluster; '' for none)")
    mapping.add_argument("--method", default="tsne", choices=["tsne", "umap"])
    mapping.add_argument("--thumbnails", action=argparse.BooleanOptionalAction, default=True,
                         help="also draw the PNG with thumbnails (default yes)")
    mapping.add_argument("--seed", type=int, default=0)

    duplicates = add_verb(verbs, "duplicates", duplicates_command,
                          "copies of a photo that could go (each checked against the one kept), and look-alikes")
    duplicates.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                            help=f"cosine from which a pair is checked for being a copy (default {DEFAULT_THRESHOLD})")
    duplicates.add_argument("--min-inliers", type=int, default=DEFAULT_MIN_INLIERS,
                            help=f"keypoint matches that must agree on one small rotation, scale and shift "
                                 f"(default {DEFAULT_MIN_INLIERS})")
    duplicates.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT,
                            help=f"correlation of the aligned pixels a copy reaches (default {DEFAULT_MIN_AGREEMENT})")
    duplicates.add_argument("--look-alike-threshold", type=cosine_or_none, default=DEFAULT_LOOK_ALIKE_THRESHOLD,
                            metavar="COSINE", help="cosine from which different photos are listed as look-alikes, "
                                                   f"never as copies (default {DEFAULT_LOOK_ALIKE_THRESHOLD}; none: "
                                                   "not listed)")
