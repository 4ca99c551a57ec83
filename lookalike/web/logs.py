"""Structured logs: one JSON object per line, every line of a request carrying its request id."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
log = logging.getLogger("lookalike.web")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
        }
        entry |= {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RepeatFilter(logging.Filter):
    """At most `burst` warnings or errors with the same logger and message per `window` seconds; the first line
    let through after a window says how many were dropped (`repeats_dropped`). Out of descriptors, a server logged
    the same error 339,148 times in 45 s. Per-request info lines are never dropped."""

    def __init__(self, burst: int = 5, window: float = 60.0):
        super().__init__()
        self.burst, self.window = burst, window
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key, now = (record.name, record.levelno, str(record.msg)), time.monotonic()
        with self._lock:
            start, count = self._seen.get(key, (now, 0))
            if now - start >= self.window:
                if count > self.burst:
                    record.repeats_dropped = count - self.burst
                start, count = now, 0
            self._seen[key] = (start, count + 1)
            if len(self._seen) > 10_000:  # a flood of distinct messages: forget, rather than grow
                self._seen = {key: self._seen[key]}
        return count < self.burst


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for lookalike's, uvicorn's and asyncio's loggers, repeated warnings rate-limited."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatFilter())
    for name in ("lookalike", "uvicorn", "uvicorn.error", "asyncio"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False


class RequestLog:
    """Gives each request an id (the client's X-Request-ID when it is sane), echoes it, logs one line per request."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        token = request_id.set(given if _SAFE_ID.match(given) else uuid.uuid4().hex[:16])
        started, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.get().encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info("request", extra={"request_id": request_id.get(), "method": scope["method"],
                                       "path": scope["path"], "status": status,
                                       "ms": round((time.perf_counter() - started) * 1e3, 2)})
            request_id.reset(token)
