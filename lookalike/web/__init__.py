"""The web layer: the HTTP API and the search page, a thin skin over ImageIndex (only this package knows HTTP)."""

from lookalike.web.app import create_app
from lookalike.web.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
