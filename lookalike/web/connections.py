"""Connections a slow or idle client cannot hold: a request must arrive whole within bounded times (its headers
within `header_timeout_seconds` of its first byte or of the connection, its body within `body_timeout_seconds`
after), and at most `max_connections` are open at once (by default half the process's descriptor limit, so files
can still be opened): beyond, the connection that has waited longest for its headers is closed to make room.
uvicorn has neither: 300 trickling connections stayed open, and 1,100 idle ones under a 1,024-descriptor limit
starved every search. A subclass of uvicorn's h11 protocol, given to uvicorn.run."""

from __future__ import annotations

import asyncio
import logging
import resource

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("lookalike.web")


def _closing(status: str, text: str, extra: str = "") -> bytes:
    """A whole plain-text response that closes the connection, written before any app has seen the request."""
    body = text.encode() + b"\n"
    return (f"HTTP/1.1 {status}\r\ncontent-type: text/plain\r\nconnection: close\r\n{extra}"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


TIMEOUT = _closing("408 Request Timeout", "the request did not arrive in time: closed")
FULL = _closing("503 Service Unavailable", "too many open connections: try again soon", "retry-after: 1\r\n")
READING = (h11.IDLE, h11.SEND_BODY)  # the client's side of h11: a request not yet received whole


def default_max_connections() -> int:
    """Half the soft limit on open descriptors: the other half is left for index files, thumbnails, models."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(8, (soft if soft != resource.RLIM_INFINITY else 65536) // 2)


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's arrival and a cap on open connections."""

    header_timeout = 10.0
    body_timeout = 60.0
    max_connections = 512

    deadline: asyncio.TimerHandle | None = None
    phase: str | None = None  # "headers" or "body" while a request is arriving
    since = 0.0  # when that phase began (the event loop's clock)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._evict_the_longest_waiting():
            log.warning("connection refused: too many open", extra={"max_connections": self.max_connections})
            transport.write(FULL)
            transport.close()
            return
        self._expect("headers")

    def _evict_the_longest_waiting(self) -> bool:
        """Make room by closing the connection that has waited longest for its headers (an idle one, most likely
        an attacker's: a client that means to ask sends its headers at once); False when none is waiting."""
        waiting = [c for c in self.connections if isinstance(c, GuardedH11) and c.phase == "headers"]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c.since)
        log.warning("connection closed: too many open, it waited longest", extra={"max_connections":
                                                                                   self.max_connections})
        oldest._stop()
        oldest.transport.write(FULL)
        oldest.transport.close()
        self.connections.discard(oldest)
        return True

    def data_received(self, data: bytes) -> None:
        if self.phase is None:
            self._expect("headers")  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.transport.is_closing() or self.conn.their_state not in READING:
            self._stop()  # received whole (or the connection is ending): the app's own time is not bounded here
        elif self.conn.their_state is h11.SEND_BODY and self.phase == "headers":
            self._expect("body")

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        super().connection_lost(exc)

    def _expect(self, phase: str) -> None:
        self._stop()
        self.phase, self.since = phase, self.loop.time()
        seconds = self.header_timeout if phase == "headers" else self.body_timeout
        self.deadline = self.loop.call_later(seconds, self._too_slow)

    def _stop(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline, self.phase = None, None

    def _too_slow(self) -> None:
        phase, self.deadline, self.phase = self.phase, None, None
        if self.transport.is_closing():
            return
        log.warning("connection closed: request too slow", extra={"phase": phase})
        if self.cycle is None or self.cycle.response_complete:  # no app is answering it: say why
            self.transport.write(TIMEOUT)
        self.transport.close()


def guarded_protocol(header_timeout: float, body_timeout: float, max_connections: int) -> type[GuardedH11]:
    """The protocol class for uvicorn.run(http=...) with these limits."""
    return type("GuardedH11", (GuardedH11,), {"header_timeout": header_timeout, "body_timeout": body_timeout,
                                               "max_connections": max_connections})
