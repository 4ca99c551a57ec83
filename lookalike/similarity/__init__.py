"""Learned similarity: pair models trained on labelled pairs, and the study that compares them."""
