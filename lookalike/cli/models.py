"""Verbs about feature extractors: models (list models and layers; `models fetch` downloads a checkpoint),
pca (fit/refit/remove), train-autoencoder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lookalike.cli.common import CommandError, add_verb, open_index, progress_bar
from lookalike.embedders import available_models, model_info
from lookalike.embedders.hub import CHECKPOINTS, fetch_weights
from lookalike.errors import RequestError
from lookalike.files import walk_images


def models_command(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        return fetch_command(args)
    names = [args.model] if args.model else available_models()
    infos = [model_info(name) for name in names]
    if args.json:
        print(json.dumps([vars(info) for info in infos], indent=2))
        return 0
    for info in infos:
        layers = ", ".join(f"{layer} (default)" if layer == info.default_layer else layer for layer in info.layers)
        pools = f"; pool {'|'.join(info.pools)}" if info.pools else ""
        words = "; search by text" if info.text_tower else ""
        print(f"{info.name:<22} layers: {layers}{pools}{words}; weights: {info.weights}")
    return 0


def fetch_command(args: argparse.Namespace) -> int:
    if not args.name:
        raise CommandError(f"give the checkpoint to fetch: lookalike models fetch NAME ({', '.join(CHECKPOINTS)})")
    folder = fetch_weights(args.name)
    if args.json:
        print(json.dumps({"name": args.name, "folder": str(folder)}))
        return 0
    print(f"{args.name}: weights in {folder} (checked); use it with: lookalike index PHOTOS_DIR --index FOLDER "
          f"--model {args.name}")
    return 0


def pca_command(args: argparse.Namespace) -> int:
    with open_index(args) as index:
        if args.off:
            index.remove_pca()
            print(f"{index.folder}: PCA removed; searches use the full vectors")
            return 0
        if args.components is None:
            raise CommandError("give --components N (or --off)")
        index.fit_pca(args.components, whiten=args.whiten, sample=args.sample, seed=args.seed)
        print(f"{index.folder}: {index.info()['reduction']}")
    return 0


def dba_command(args: argparse.Namespace) -> int:
    with open_index(args) as index:
        if args.off:
            index.remove_augmentation()
            print(f"{index.folder}: database-side augmentation removed; every image is searched by its own vector")
            return 0
        with progress_bar("finding neighbours") as progress:
            count = index.augment(**{k: v for k, v in (("neighbours", args.neighbours), ("alpha", args.alpha))
                                     if v is not None}, progress=progress)
        print(f"{index.folder}: {index.info()['augmentation']} for {count} images")
    return 0


def train_autoencoder_command(args: argparse.Namespace) -> int:
    from lookalike.embedders.autoencoder import train_autoencoder
    from lookalike.embedders.training_plots import plot_loss_curve, plot_reconstructions

    folder = Path(args.folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder of photos: {folder}")
    paths = list(walk_images(folder))
    if not paths:
        raise RequestError(f"no images found under {folder}")
    with progress_bar("training") as progress:
        report = train_autoencoder(paths, args.out, epochs=args.epochs, batch_size=args.batch_size,
                                   seed=args.seed, progress=progress)
    stem = Path(args.out).with_suffix("")
    loss_png = plot_loss_curve(report, stem.with_name(stem.name + "-loss.png"))
    examples_png = plot_reconstructions(report, stem.with_name(stem.name + "-reconstructions.png"))
    print(f"trained on {report.images} photos for {report.epochs} epochs in {report.seconds:.0f}s; "
          f"loss {report.losses[0]:.4f} -> {report.losses[-1]:.4f}")
    print(f"saved {report.model_file}; pictures: {loss_png}, {examples_png}")
    print(f"use it with: lookalike index PHOTOS_DIR --index FOLDER --model autoencoder:{report.model_file}")
    return 0


def register(verbs: Any) -> None:
    models = verbs.add_parser("models", help="list the models and the layers each can be tapped at; "
                              "`models fetch NAME` downloads a text-and-image checkpoint from the hub")
    models.set_defaults(command=models_command)
    models.add_argument("action", nargs="?", choices=["fetch"], help="fetch: download NAME's weights into the cache "
                        "(with a progress bar and SHA-256 checks), on a machine that can reach the hub")
    models.add_argument("name", nargs="?", metavar="NAME", help=f"with fetch: one of {', '.join(CHECKPOINTS)}")
    models.add_argument("--model", help="only this model")
    models.add_argument("--json", action="store_true")

    pca = add_verb(verbs, "pca", pca_command, "fit (or refit, or remove) PCA reduction of an index's vectors")
    pca.add_argument("--components", type=int, metavar="N", help="dimensions to keep")
    pca.add_argument("--whiten", action="store_true", help="equalise component variances")
    pca.add_argument("--sample", type=int, metavar="M", help="fit on a random sample of M indexed vectors")
    pca.add_argument("--seed", type=int, default=0, help="which random sample")
    pca.add_argument("--off", action="store_true", help="remove the reduction")

    dba = add_verb(verbs, "dba", dba_command, "(re)build, or remove, database-side augmentation of an index")
    dba.add_argument("--neighbours", type=int, metavar="N", help="blend each image with its N nearest (default 10)")
    dba.add_argument("--alpha", type=float, metavar="A", help="neighbours weigh similarity^A (default 2)")
    dba.add_argument("--off", action="store_true", help="remove the augmentation")

    train = verbs.add_parser("train-autoencoder", help="train a convolutional autoencoder on your photos (CPU)")
    train.set_defaults(command=train_autoencoder_command)
    train.add_argument("folder", metavar="PHOTOS_DIR", help="folder of photos to train on")
    train.add_argument("--out", required=True, type=Path, help="model file to write, e.g. cae.pt")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--seed", type=int, default=0)
