"""Similarity verbs: train a learned similarity for an index, and the pair-correlation study."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lookalike.cli.common import add_model_options, add_verb, model_options, progress_bar
from lookalike.errors import RequestError
from lookalike.index.folder import IndexFolder
from lookalike.similarity.methods import BEST_METHOD, LEARNED_METHODS, METHODS, STUDY_METHODS
from lookalike.similarity.pairs import DEFAULT_EVAL_FRACTION, DEFAULT_PAIRS, PairSet


def dataset_folder(dataset: str) -> Path:
    """A labelled folder, given as the folder or as its labels.csv."""
    path = Path(dataset)
    if path.is_file():
        if path.name != "labels.csv":
            raise RequestError(f"{path}: give a folder holding labels.csv, or the labels.csv file itself")
        return path.parent
    if not path.is_dir():
        raise FileNotFoundError(f"labelled dataset not found: {dataset}")
    return path


def train_command(args: argparse.Namespace) -> int:
    from lookalike.index import ImageIndex
    from lookalike.similarity.study import train_similarity

    with ImageIndex.open(args.index) as index:
        saved = train_similarity(index, dataset_folder(args.dataset), attribute=args.attribute, method=args.method,
                                 name=args.name, size=args.size, eval_fraction=args.eval_fraction, seed=args.seed,
                                 split=args.split)
    if args.json:
        print(json.dumps(saved, indent=2))
        return 0
    pairs, held_out = saved["pairs"], saved["held_out"]
    print(f"trained {saved['name']} ({saved['method']}) on {pairs['train_pairs']} pairs of {pairs['train_images']} "
          f"images for {pairs['attribute']!r}; held out {pairs['eval_pairs']} pairs of {pairs['eval_images']} other "
          f"images: Pearson {held_out['pearson']:.3f}, Spearman {held_out['spearman']:.3f}, "
          f"ROC AUC {held_out['roc_auc']:.3f}")
    print(f"saved in {IndexFolder(args.index).similarity_models}; "
          f"search with `lookalike search --method {saved['name']}`")
    return 0


def study_pairs_command(args: argparse.Namespace) -> int:
    from lookalike.index import ImageIndex
    from lookalike.similarity.study import run_study

    dataset = dataset_folder(args.dataset)
    out = Path(args.out or f"study-{dataset.resolve().name}-{args.attribute}")
    if args.index:
        index = ImageIndex.open(args.index)
    else:
        index = ImageIndex.open_or_create(out / "index", **model_options(args))
        with progress_bar(f"indexing {dataset}") as progress:
            index.add_folder(dataset, progress=progress)
    with index:
        pair_set = PairSet.build(dataset, args.attribute, index, size=args.size, eval_fraction=args.eval_fraction,
                                 seed=args.seed, split=args.split)
    study = run_study(pair_set, args.methods)
    written = study.write(out)
    if args.json:
        print(json.dumps(study.to_dict() | {"files": {k: str(v) for k, v in written.items()}}, indent=2))
        return 0
    described = pair_set.describe()
    print(f"{described['train_pairs']} training pairs ({described['train_images']} images), {described['eval_pairs']} "
          f"held-out pairs ({described['eval_images']} other images), attribute {args.attribute!r}")
    print(study.to_text())
    print(f"wrote {', '.join(str(p) for p in written.values())}")
    return 0


def add_pair_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--attribute", default="label", help="labels.csv column that defines 'similar'")
    parser.add_argument("--size", type=int, default=DEFAULT_PAIRS, metavar="PAIRS",
                        help=f"labelled pairs in all, training and held out (default {DEFAULT_PAIRS})")
    parser.add_argument("--eval-fraction", type=float, default=DEFAULT_EVAL_FRACTION,
                        help="share of the images (and pairs) held out for evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", help="use only the rows of this value of the labels' split column")


def register(verbs: Any) -> None:
    train = add_verb(verbs, "train-similarity", train_command,
                     "train a learned similarity on labelled pairs and save it in the index")
    train.add_argument("--dataset", required=True, metavar="DATASET_DIR",
                       help="labelled folder (or its labels.csv), already indexed")
    train.add_argument("--method", choices=LEARNED_METHODS, default=BEST_METHOD)
    train.add_argument("--name", help="name to save it under (default: the method's name)")
    add_pair_options(train)

    study = verbs.add_parser("study", help="studies of the similarity methods")
    studies = study.add_subparsers(required=True, metavar="STUDY")
    pairs = studies.add_parser("pairs", help="correlation of each method's score with same/different pairs",
                               description="Train every method on training pairs and correlate its scores with the "
                                           "truth on held-out pairs of other images.")
    pairs.set_defaults(command=study_pairs_command)
    pairs.add_argument("dataset", metavar="DATASET_DIR", help="folder with labels.csv (path and attribute columns)")
    pairs.add_argument("--index", help="index holding the dataset's images (default: OUT/index, built as needed)")
    pairs.add_argument("--methods", nargs="+", choices=METHODS, default=list(STUDY_METHODS))
    pairs.add_argument("--out", help="folder for study.md, study.json, study.png")
    pairs.add_argument("--json", action="store_true")
    add_pair_options(pairs)
    add_model_options(pairs)
