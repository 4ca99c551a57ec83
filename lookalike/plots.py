"""matplotlib, from the `maps` extra: the one door to it for every picture lookalike draws (maps, the classifier's
confusion matrix, a similarity study, an autoencoder's training), drawn off-screen (Agg)."""

from __future__ import annotations

from types import ModuleType

from lookalike.errors import ExtraMissingError

EXTRA = "maps"


def matplotlib_for(purpose: str) -> ModuleType:
    """matplotlib set to draw PNGs, or an error naming the extra to install for `purpose` ("the map")."""
    try:
        import matplotlib
    except ImportError:
        raise ExtraMissingError(f"{purpose} needs the {EXTRA} extra (matplotlib): pip install "
                                f"'lookalike[{EXTRA}]'") from None
    matplotlib.use("Agg")
    return matplotlib


def available() -> bool:
    """Whether pictures can be drawn (the maps extra is installed)."""
    try:
        matplotlib_for("")
    except ExtraMissingError:
        return False
    return True
