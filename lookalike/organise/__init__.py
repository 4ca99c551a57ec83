"""Organising a collection: labels, a classifier, clusters, maps and near-duplicates.

Importing the package registers the two scopes of the one search: `by_class` (classify the query,
search within its likely classes) and `by_cluster` (search the clusters nearest the query). Each scope's
module (the classifier's, the clustering's) is imported when a search first asks for it.
"""

from __future__ import annotations

from typing import Any

from lookalike.search import Scope, SearchOptions, Vector, register_scope


class ByClass:
    """The `by_class` scope, lookalike.organise.classifier.ClassScope, loaded on first use."""

    def available(self, index: Any) -> bool:
        from lookalike.organise.classifier import ClassScope

        return ClassScope().available(index)

    def narrow(self, index: Any, vector: Vector, options: SearchOptions) -> Scope:
        from lookalike.organise.classifier import ClassScope

        return ClassScope().narrow(index, vector, options)


class ByCluster:
    """The `by_cluster` scope, lookalike.organise.clustering.ClusterScope, loaded on first use."""

    def available(self, index: Any) -> bool:
        from lookalike.organise.clustering import ClusterScope

        return ClusterScope().available(index)

    def narrow(self, index: Any, vector: Vector, options: SearchOptions) -> Scope:
        from lookalike.organise.clustering import ClusterScope

        return ClusterScope().narrow(index, vector, options)


def organisation(index: Any) -> dict[str, Any]:
    """What organising has added to an index: label counts per name, the classifier (attribute and classes) and
    the number of clusters of the last clustering (None where there is none)."""
    import json

    import numpy as np

    classifier = None
    if index.files.classifier_description.exists():
        described = json.loads(index.files.classifier_description.read_text())
        classifier = {"attribute": described.get("attribute", "label"), "classes": described["classes"]}
    clusters = None
    if index.files.clustering.exists():
        with np.load(index.files.clustering) as saved:
            clusters = int(len(saved["centroids"]))
    return {"labels": index.label_counts(), "classifier": classifier, "clusters": clusters}


register_scope("by_class", ByClass())
register_scope("by_cluster", ByCluster())
