"""Organising a collection: labels, a classifier, clusters, maps and near-duplicates."""
