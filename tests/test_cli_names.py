"""Same names everywhere: every CLI option is named for the keyword of the API call its verb makes.

The table below says which API callables each verb calls; an option whose dest is not one of their
keywords (or whose flag does not spell that keyword) fails, so a renamed keyword cannot leave the
CLI behind and a new flag cannot invent a second name for an API setting.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable, Iterable

import uvicorn

from lookalike.cli import build_parser
from lookalike.embedders import model_info
from lookalike.embedders.autoencoder import train_autoencoder
from lookalike.embedders.hub import fetch_weights
from lookalike.evaluation import evaluate_index
from lookalike.files import walk_images
from lookalike.index import ImageIndex
from lookalike.index.knob import Knob
from lookalike.index.plan import IndexPlan
from lookalike.organise.classifier import evaluate_dataset_by_class, train_classifier
from lookalike.organise.clustering import cluster_index, propagate_labels
from lookalike.organise.duplicates import find_duplicates
from lookalike.organise.labels import import_labels
from lookalike.organise.mapping import map_index
from lookalike.organise.zero_shot import zero_shot_labels
from lookalike.scale.distributed import ingest_with_ray
from lookalike.search import Query, SearchOptions
from lookalike.similarity.pairs import PairSet
from lookalike.similarity.study import run_study, train_similarity
from lookalike.web import ServerSettings

API_CALLS: dict[str, list[Callable[..., object]]] = {
    "index": [IndexPlan, ImageIndex.add_folder, ingest_with_ray],
    "add": [IndexPlan, ImageIndex.add_files],
    "remove": [ImageIndex.remove_files],
    "search": [ImageIndex.search, Query, SearchOptions],
    "capture": [ImageIndex.read_capture],
    "explain": [ImageIndex.explain],
    "info": [ImageIndex.info],
    "evaluate": [IndexPlan, evaluate_index, evaluate_dataset_by_class],
    "models": [model_info, fetch_weights],
    "pca": [ImageIndex.fit_pca, ImageIndex.remove_pca],
    "dba": [ImageIndex.augment, ImageIndex.remove_augmentation],
    "train-autoencoder": [walk_images, train_autoencoder],
    "labels": [import_labels],
    "train-classifier": [train_classifier],
    "classify": [zero_shot_labels],
    "cluster": [cluster_index, propagate_labels],
    "map": [map_index],
    "duplicates": [find_duplicates],
    "tune": [ImageIndex.tune, Knob],
    "compact": [ImageIndex.compact],
    "serve": [IndexPlan, ServerSettings, uvicorn.run],
    "train-similarity": [train_similarity],
    "study pairs": [IndexPlan, PairSet.build, run_study],
}

# Options of the skin itself, which no API call takes:
SKIN_ONLY = {
    "help",  # argparse's own
    "json",  # how the CLI prints what the call returned
    "index",  # the index folder the CLI opens: the ImageIndex every call above is made on
    "out",  # study pairs: the folder the CLI writes the study's report files into (elsewhere `out` is a keyword)
    "action",  # the word after the verb (labels import, cluster label): which of the verb's calls is made
    "off",  # pca --off / dba --off: call remove_pca() / remove_augmentation() instead
    "update",  # evaluate --update: call add_folder before scoring, which an empty index gets anyway
}


def keywords(callables: Iterable[Callable[..., object]]) -> set[str]:
    named = set()
    for function in callables:
        named |= {name for name, parameter in inspect.signature(function).parameters.items()
                  if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)}
    return named


def verb_parsers(parser: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser by its full name ('search', 'study pairs'), however deep."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = verb_parsers(sub, f"{prefix}{name} ")
                found.update(nested or {f"{prefix}{name}": sub})
    return found


def misnamed(parser: argparse.ArgumentParser, callables: Iterable[Callable[..., object]]) -> list[str]:
    """The options whose dest is no keyword of the callables, or whose flags do not spell their dest."""
    known = keywords(callables)
    wrong = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.dest in SKIN_ONLY:
            continue
        if action.dest not in known:
            wrong.append(f"{'/'.join(action.option_strings) or action.dest}: {action.dest!r} is no keyword of "
                         f"{', '.join(getattr(c, '__qualname__', str(c)) for c in callables)}")
        elif action.option_strings and "--" + action.dest.replace("_", "-") not in action.option_strings:
            wrong.append(f"{'/'.join(action.option_strings)} sets {action.dest!r} but is not spelled --"
                         f"{action.dest.replace('_', '-')}")
    return wrong


def test_the_table_names_every_verb_of_the_cli():
    assert sorted(verb_parsers(build_parser())) == sorted(API_CALLS)


def test_every_option_is_named_for_the_api_keyword_it_sets():
    wrong = {verb: misnamed(parser, API_CALLS[verb]) for verb, parser in verb_parsers(build_parser()).items()}
    assert {verb: found for verb, found in wrong.items() if found} == {}


def test_a_flag_with_no_matching_keyword_is_caught():
    def search(query: str, k: int = 10, min_score: float | None = None) -> None: ...

    made_up = argparse.ArgumentParser()
    made_up.add_argument("query")
    made_up.add_argument("-k", "--k", type=int)
    made_up.add_argument("--metric")  # no such keyword
    made_up.add_argument("--threshold", dest="min_score")  # the keyword, under another name
    assert misnamed(made_up, [search]) == [
        "--metric: 'metric' is no keyword of test_a_flag_with_no_matching_keyword_is_caught.<locals>.search",
        "--threshold sets 'min_score' but is not spelled --min-score",
    ]
