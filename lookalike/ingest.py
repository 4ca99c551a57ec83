"""Turning files into vectors fast: decoder threads run ahead of batched inference.

libjpeg-turbo and Pillow release the GIL while they decode and resize, so a few threads keep the
network fed while ONNX Runtime uses the cores for the batch in flight, and the caller stores the
previous batch meanwhile.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike.capture import Capture
from lookalike.embedders import Embedder, Matrix
from lookalike.files import FileContent, Fingerprint
from lookalike.images import ImageError, load_image

Reader = Callable[[Path], FileContent]  # a file's bytes and their fingerprint, read through one descriptor


@dataclass(frozen=True)
class Prepared:
    """A decoded, preprocessed image waiting for the network."""

    path: Path
    tensor: npt.NDArray[Any]  # the network's input: float32 channels first, or the uint8 crop for a folded input
    width: int
    height: int
    fingerprint: Fingerprint | None = None  # of the bytes decoded, when they were read by a Reader
    capture: Capture = Capture()  # what its EXIF says (read while it was decoded)


@dataclass(frozen=True)
class Failure:
    path: Path
    reason: str


@dataclass(frozen=True)
class EmbeddedBatch:
    images: list[Prepared]
    vectors: Matrix
    failures: list[Failure]


def prepare(embedder: Embedder, path: Path, read: Reader | None = None) -> Prepared | Failure:
    """The network's input for one file, opened by path, or with `read` when given (the bytes decoded are then
    the bytes fingerprinted)."""
    try:
        if read is None:
            decoded, fingerprint = load_image(path, target_side=embedder.input_side), None
        else:
            content = read(path)
            decoded, fingerprint = load_image(content.data, target_side=embedder.input_side), content.fingerprint
        return Prepared(path, embedder.preprocess(decoded), decoded.width, decoded.height, fingerprint,
                        decoded.capture)
    except OSError as error:  # from `read`: gone, unreadable, or refused as a link
        return Failure(path, str(error))
    except ImageError as error:
        return Failure(path, str(error))
    except Exception as error:  # noqa: BLE001 - one bad file must never stop a run
        return Failure(path, f"unexpected error: {type(error).__name__}: {error}")


def embed_files(
    embedder: Embedder, paths: Iterable[Path], batch_size: int = 32, workers: int | None = None,
    read: Reader | None = None,
) -> Iterator[EmbeddedBatch]:
    """Embed files in batches, in order; undecodable files come back as failures, not errors.

    The network runs in its own thread, one batch ahead: while it embeds the next batch, the caller stores
    this one (and the decoders keep decoding), so the network never waits for the caller."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed") as network:
        running: Future[EmbeddedBatch] | None = None
        for images, failures in decoded_batches(embedder, paths, batch_size, workers, read):
            submitted = network.submit(_embed, embedder, images, failures)
            if running is not None:
                yield running.result()
            running = submitted
        if running is not None:
            yield running.result()


def decoded_batches(
    embedder: Embedder, paths: Iterable[Path], batch_size: int = 32, workers: int | None = None,
    read: Reader | None = None,
) -> Iterator[tuple[list[Prepared], list[Failure]]]:
    """Decoded images in batches of `batch_size` (with the failures met on the way), in order; decoder threads
    run up to three batches ahead."""
    workers = workers or max(2, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[Future[Prepared | Failure]] = deque()
        ready: list[Prepared] = []
        failures: list[Failure] = []
        for path in paths:
            pending.append(pool.submit(prepare, embedder, path, read))
            if len(pending) >= 3 * batch_size:
                _collect(pending.popleft().result(), ready, failures)
            if len(ready) >= batch_size:
                yield ready, failures
                ready, failures = [], []
        while pending:
            _collect(pending.popleft().result(), ready, failures)
            if len(ready) >= batch_size:
                yield ready, failures
                ready, failures = [], []
        if ready or failures:
            yield ready, failures


def _collect(outcome: Prepared | Failure, ready: list[Prepared], failures: list[Failure]) -> None:
    (failures if isinstance(outcome, Failure) else ready).append(outcome)  # type: ignore[arg-type]


def _embed(embedder: Embedder, images: list[Prepared], failures: list[Failure]) -> EmbeddedBatch:
    if not images:
        return EmbeddedBatch([], np.zeros((0, embedder.dimension), dtype=np.float32), failures)
    vectors = embedder.embed_batch(np.stack([image.tensor for image in images]))
    return EmbeddedBatch(images, vectors, failures)
