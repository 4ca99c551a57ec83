"""Organising a collection: labels, a classifier, clusters, maps and near-duplicates.

Importing the package registers the two scopes of the one search: `by_class` (classify the query,
search within its likely classes) and `by_cluster` (search the clusters nearest the query).
"""

from lookalike.organise.classifier import ClassScope
from lookalike.organise.clustering import ClusterScope
from lookalike.search import register_scope

register_scope("by_class", ClassScope())
register_scope("by_cluster", ClusterScope())
