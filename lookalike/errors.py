"""Whose fault an error is. A LookalikeError is the user's to fix (what was asked or given cannot be done as
asked): the CLI prints its message and exits 2, HTTP answers 4xx with it. Anything else that escapes is a bug.

The subclasses also derive from the built-in error they replace, so code that caught KeyError or ValueError
still does while the doors move to catching LookalikeError alone.
"""

from __future__ import annotations


class LookalikeError(Exception):
    """A request lookalike refuses, with a message written for the person who made it."""


class NotFoundError(LookalikeError, KeyError):
    """Something asked for by name or id that is not there (an image id, an index): HTTP 404."""

    def __str__(self) -> str:  # KeyError's own str() quotes its message
        return str(self.args[0]) if self.args else ""


class RequestError(LookalikeError, ValueError):
    """An option or a value that cannot be used (out of range, unknown, at odds with the index): HTTP 422."""


class ExtraMissingError(LookalikeError, ImportError):
    """A feature whose optional dependencies are not installed; the message names the extra that brings them."""
