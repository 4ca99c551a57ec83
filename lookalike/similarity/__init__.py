"""Learned similarity: pair models trained on labelled pairs, and the study that compares them.

Importing the package makes every trained model of an index a method of its one search
(`index.search(query, method=NAME)`); scikit-learn is only loaded when such a model is used.
"""

from lookalike.search import register_learned_methods
from lookalike.similarity.trained import LearnedSimilarity

register_learned_methods(LearnedSimilarity())
