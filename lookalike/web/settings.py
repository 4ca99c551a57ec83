"""What the server allows: sizes, roots, token, CORS. Sensible defaults, overridable by environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.web.connections import default_max_connections
from lookalike.web.work import cores

MiB = 1024 * 1024


@dataclass
class ServerSettings:
    """Limits and permissions of one server process."""

    allowed_roots: list[Path] = field(default_factory=list)  # server-side folders that may be added by path
    index_root: Path | None = None  # where indexes created over HTTP live (None: creating is refused)
    api_token: str | None = None  # required for every write when set
    max_upload_bytes: int = 20 * MiB  # one image
    max_request_bytes: int = 200 * MiB  # one request (a batch of uploads)
    max_pixels: int = 40_000_000  # width x height of one image
    max_batch_files: int = 500
    thumbnail_side: int = 256
    cors_origins: list[str] = field(default_factory=list)  # empty: no CORS headers at all
    decode_slots: int = field(default_factory=cores)  # uploads and thumbnails decoded at once (one per core)
    decode_wait_seconds: float = 10.0  # how long a request waits for a decode slot before a 503
    header_timeout_seconds: float = 10.0  # a request's headers must arrive within this (else 408, closed)
    body_timeout_seconds: float = 60.0  # ... and its body within this after them
    max_connections: int = field(default_factory=default_max_connections)  # more are refused (503, closed)

    @classmethod
    def from_env(cls, **overrides: object) -> ServerSettings:
        """Defaults, then LOOKALIKE_* environment variables, then explicit overrides (e.g. CLI flags)."""
        settings = cls()
        settings.api_token = os.environ.get("LOOKALIKE_API_TOKEN") or None
        for name, kind in NUMBERS.items():
            value = os.environ.get(f"LOOKALIKE_{name.upper()}")
            if value:
                setattr(settings, name, kind(value))
        origins = os.environ.get("LOOKALIKE_CORS_ORIGINS", "")
        settings.cors_origins = [o.strip() for o in origins.split(",") if o.strip()]
        for name, value in overrides.items():
            if value is not None:
                setattr(settings, name, value)
        return settings


NUMBERS: dict[str, type] = {"max_upload_bytes": int, "max_request_bytes": int, "max_pixels": int,
                            "max_batch_files": int, "decode_slots": int, "decode_wait_seconds": float,
                            "header_timeout_seconds": float, "body_timeout_seconds": float, "max_connections": int}
