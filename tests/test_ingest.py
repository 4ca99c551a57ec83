"""Decoding ahead of batched inference: order, failures and vectors survive the pipelining."""

from __future__ import annotations

import threading

import numpy as np
from conftest import DEMO_GALLERY

from lookalike.images import load_image
from lookalike.ingest import embed_files


def test_batches_come_back_in_file_order_with_bad_files_reported(embedder, tmp_path):
    photos = sorted(DEMO_GALLERY.rglob("*.jpg"))[:23]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    paths = photos[:10] + [corrupt] + photos[10:]
    batches = list(embed_files(embedder, paths, batch_size=4, workers=2))
    assert [image.path for batch in batches for image in batch.images] == photos
    assert [failure.path for batch in batches for failure in batch.failures] == [corrupt]
    assert all(len(batch.images) == len(batch.vectors) for batch in batches)
    one_by_one = embedder.embed_batch(np.stack([embedder.preprocess(load_image(photos[-1]))]))
    np.testing.assert_allclose(batches[-1].vectors[-1], one_by_one[0], atol=1e-5)


def test_stopping_early_leaves_no_work_running(embedder):
    photos = sorted(DEMO_GALLERY.rglob("*.jpg"))[:40]
    batches = embed_files(embedder, photos, batch_size=4)
    first = next(batches)
    batches.close()  # the caller stops reading: the decoder and network threads are shut down
    assert len(first.images) == 4
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("decode", "embed"))]
