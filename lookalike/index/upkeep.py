"""The upkeep half of an index: its reduction (PCA), database-side augmentation (DBA), tuned search
parameters, the policy applied after every indexing run, and the plan of a new index.

Its methods run with the index's writer lock held: ImageIndex's write methods call them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike import reduction as reduction_module
from lookalike.backends import store_manifest
from lookalike.embedders import Embedder
from lookalike.embedders.spec import ModelMismatchError
from lookalike.errors import RequestError
from lookalike.faults import crash_point
from lookalike.index import augmentation
from lookalike.index import tune as tuning
from lookalike.index.autoselect import plan_index, searches_per_call
from lookalike.index.catalogue import catalog_manifest
from lookalike.index.manifest import Manifest
from lookalike.index.plan import IndexPlan
from lookalike.index.state import IndexState, writes
from lookalike.index.sync import IndexReport, Progress
from lookalike.reduction import fit_pca, remove_reduction

if TYPE_CHECKING:
    from lookalike.index.store import VectorStore

log = logging.getLogger("lookalike")


def planned_manifest(embedder: Embedder, asked: IndexPlan) -> Manifest:
    """A new index's manifest: its reduction, index type and augmentation planned from what was asked."""
    reduction_plan = reduction_module.plan_reduction(asked.pca, asked.whiten, asked.pca_sample)
    searched = reduction_module.planned_dimension(reduction_plan, embedder.dimension)
    plan = plan_index(asked.index_type, asked.expected_count, searched, asked.max_memory, asked.latency_ms,
                      searches_per_call())
    pending = {"max_memory": asked.max_memory, "latency_ms": asked.latency_ms}
    waits = asked.index_type == "auto" and asked.expected_count <= 0 and asked.store is None
    return Manifest(**{
        "embedder": embedder.describe(), "index_type": plan.index_type, "index_params": plan.params,
        "index_choice": tuple(plan.reasons), "reduction_plan": reduction_plan,
        "augmentation_plan": augmentation.plan_augmentation(asked.dba, asked.dba_alpha),
        "index_type_pending": pending if waits else None,
    } | store_manifest(asked.store) | catalog_manifest(asked.catalog))


def chosen_index_type(manifest: Manifest, count: int, dimension: int) -> dict[str, Any]:
    """The manifest fields of an 'auto' index type chosen now that about `count` images are coming."""
    pending = manifest.index_type_pending or {}
    searched = reduction_module.planned_dimension(manifest.reduction_plan, dimension)
    plan = plan_index("auto", count, searched, pending["max_memory"], pending["latency_ms"], searches_per_call())
    return {"index_type_pending": None, "index_type": plan.index_type, "index_params": plan.params,
            "index_choice": tuple(plan.reasons)}


class Upkeep:
    """Keeps one index's derived state (reduction, augmentation, tuning) in step with its images."""

    def __init__(self, state: IndexState):
        self._state = state

    @property
    def _store(self) -> VectorStore:
        return self._state.store  # looked up each time: choosing an 'auto' index type replaces the store

    def after_sync(self, report: IndexReport) -> None:
        """Product policy after every indexing run: fit the planned reduction once the index is big enough."""
        plan = self._state.manifest.reduction_plan
        if plan and self._state.manifest.reduction is None and len(self._store) >= plan["min_images"]:
            self.fit_pca(plan["components"], whiten=plan["whiten"], sample=plan["sample"])
            report.reduction = reduction_module.describe_text(self._state.manifest.reduction)
        else:
            self.augment()

    def refit_lost_reduction(self) -> None:
        """Derived state is rebuilt, never trusted: a reduction the manifest records whose file is missing or
        does not match (a crash between the two, a damaged file) is fitted again with the recorded settings."""
        recorded = self._state.manifest.reduction
        if recorded is None or self._store.reduction is not None:
            return
        plan = self._state.manifest.reduction_plan or {}
        self._state.manifest = self._state.manifest.but(reduction=None)
        self._locked_fit(recorded["components"], whiten=recorded["whiten"], sample=plan.get("sample"))

    @writes
    def _locked_fit(self, components: int, whiten: bool, sample: int | None) -> None:
        self.fit_pca(components, whiten, sample)

    def fit_pca(self, components: int, whiten: bool = False, sample: int | None = None, seed: int = 0) -> None:
        ids = self._store.ids()
        sample = reduction_module.MAX_FIT_SAMPLE if sample is None else sample
        if sample < len(ids):
            ids = np.sort(np.random.default_rng(seed).choice(ids, size=sample, replace=False))
        reduction = fit_pca(self._store.vectors(ids.tolist()), components, whiten)
        self._store.use_reduction(reduction)  # new generation first: a crash from here on rebuilds on open
        reduction.save(self._state.files.reduction)
        self._state.change_manifest(reduction=reduction.describe())
        self._store.mark_changed()  # other processes reload once the reduction beside the database is written
        self._store.save()
        self.augment()  # the reduction dropped the augmented vectors: they live in its space

    def remove_pca(self) -> None:
        self._store.use_reduction(None)
        remove_reduction(self._state.files.reduction)
        self._state.change_manifest(reduction=None, reduction_plan=None)
        self._store.mark_changed()
        self._store.save()
        self.augment()

    def remove_augmentation(self) -> None:
        self._state.change_manifest(augmentation_plan=None)
        self._store.drop_augmented()
        self._store.commit()
        self._store.save()

    def augment(self, progress: Progress | None = None, full: bool = False) -> int:
        """Bring the augmented vectors up to date with the images, in one commit: a full build when asked or
        when none exist yet, else only what the changes since the last pass touched. Images augmented."""
        plan = augmentation.AugmentationPlan.of(self._state.manifest.augmentation_plan)
        if plan is None:
            return 0
        changed = self._store.changed_vector_ids()
        if not full and not changed and self._store.augmented_count() == len(self._store):
            return 0  # every image has its augmented vector (rows of removed images go with them)
        graph = augmentation.Graph(*self._store.augmented_graph())
        ids = self._store.ids()
        vectors = self._store.searchable_vectors(ids.tolist())
        if (full or len(graph.ids) == 0 or graph.neighbours.shape[1] != plan.neighbours
                or augmentation.rebuild_is_cheaper(graph, ids, changed)):
            graph, rows_vectors = augmentation.augment_all(ids, vectors, plan, progress)
            touched = graph.ids
        else:
            graph, touched = augmentation.update(graph, ids, vectors, changed, plan)
            rows_vectors = augmentation.augmented_rows(graph, np.searchsorted(graph.ids, touched), ids, vectors,
                                                       plan.alpha)
        rows = np.searchsorted(graph.ids, touched)
        self._store.set_augmented(touched, graph.neighbours[rows], graph.similarities[rows], rows_vectors,
                                  rebuild=len(touched) > len(ids) // 10)
        crash_point("augmentation.writing")
        self._store.commit()
        self._store.save()
        return len(touched)

    def tune(self, target_recall: float, sample: int, k: int, seed: int,
             knob: dict[str, int | None] | None = None) -> tuning.TuneReport:
        report = tuning.tune_store(self._store, target_recall, sample, k, seed, knob,
                                   augmentation.AugmentationPlan.of(self._state.manifest.augmentation_plan))
        knob = {name: value for name, value in (knob or {}).items() if value is not None}
        if report.params:
            manifest = self._state.manifest
            self._state.change_manifest(
                index_params={**manifest.index_params, **report.params},
                tuned={"target_recall": None if knob else target_recall, "recall": round(report.recall, 4),
                       "sample": min(sample, len(self._store)), "k": k, "set_by_user": bool(knob)})
        return report

    # --- what open_or_create was asked, against what the index records ----------------------------
    def check_asked(self, **asked: str | None) -> None:
        recorded = {"precision": "float32"} | self._state.manifest.embedder
        different = [k for k, v in asked.items() if v is not None and recorded.get(k) != v]
        if different:
            built = ", ".join(f"{k} {recorded.get(k)}" for k in different)
            raise ModelMismatchError(
                f"{self._state.folder} was built with {built}, not {', '.join(f'{k} {asked[k]}' for k in different)}; "
                "use another index folder for another model, layer, pooling or precision"
            )

    def check_reduction_asked(self, pca: int | None, whiten: bool) -> None:
        current = self._state.manifest.reduction
        if pca is None and whiten:
            raise RequestError("whiten needs pca=N (the number of components)")
        if pca is None:
            return
        if pca and current is None:
            with self._state.writer.holding():
                self._state.change_manifest(reduction_plan=reduction_module.plan_reduction(pca, whiten, None))
        elif pca and (current["components"], current["whiten"]) != (pca, whiten):
            raise RequestError(f"{self._state.folder} already has PCA to {current['components']} "
                             f"(whiten {current['whiten']}); refit explicitly with `lookalike pca`")
        elif pca == 0 and current is not None:
            raise RequestError(f"{self._state.folder} already has PCA to {current['components']}; "
                             "remove it with `lookalike pca --off`")

    def check_augmentation_asked(self, dba: int | None, dba_alpha: float | None) -> None:
        if dba is None and dba_alpha is None:
            return
        asked = augmentation.plan_augmentation(dba, dba_alpha)
        if asked != self._state.manifest.augmentation_plan:
            raise RequestError(f"{self._state.folder} has database-side augmentation "
                             f"{self._state.manifest.augmentation_plan or 'off'}, not {asked or 'off'}; "
                             "change it with `lookalike dba`")
