"""Zero-shot labels: each image takes the label whose text embedding ("a photo of a chair") is nearest its
vector, so a collection is labelled from a list of words, without examples (an index of a CLIP-family model).

The labels land in the index as imported ones do (ImageIndex.set_labels), so `where` filters, maps coloured by
label and train-classifier read them the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.errors import RequestError

if TYPE_CHECKING:
    from lookalike.index import ImageIndex

DEFAULT_PROMPT = "a photo of a {label}"  # CLIP's own zero-shot template
CHUNK = 4096  # images compared with the labels at a time, so memory stays bounded


@dataclass(frozen=True)
class ZeroShotReport:
    attribute: str
    prompt: str
    counts: dict[str, int]  # label -> images that took it, in the order given

    @property
    def images(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"attribute": self.attribute, "prompt": self.prompt, "images": self.images, "counts": self.counts}

    def summary(self) -> str:
        counts = ", ".join(f"{label} {count}" for label, count in self.counts.items())
        return f"labelled {self.images} images by {self.attribute!r} from the words alone: {counts}"


def label_names(labels: str | Sequence[str]) -> list[str]:
    """The labels to choose from: a comma-separated string or a list, blanks and repeats dropped."""
    items = labels.split(",") if isinstance(labels, str) else [str(label) for label in labels]
    names = list(dict.fromkeys(item.strip() for item in items if item.strip()))
    if len(names) < 2:
        raise RequestError(f"give at least two labels to choose from, e.g. \"chair,sofa,lamp\" (not {labels!r})")
    return names


def zero_shot_labels(index: ImageIndex, labels: str | Sequence[str], attribute: str = "label",
                     prompt: str = DEFAULT_PROMPT) -> ZeroShotReport:
    """Give every indexed image the label (of `labels`) whose prompt embeds nearest its vector, stored as
    `attribute` (replacing that label's old values). Needs an index whose model has a text tower."""
    names = label_names(labels)
    if "{label}" not in prompt:
        raise RequestError(f"the prompt must say where the label goes, e.g. {DEFAULT_PROMPT!r} (not {prompt!r})")
    words = np.stack([index.searcher.embed_text(prompt.replace("{label}", name))[0] for name in names])
    chosen: dict[int, dict[str, str]] = {}
    ids = index.ids()
    for start in range(0, len(ids), CHUNK):
        part = ids[start:start + CHUNK]
        nearest = np.argmax(index.vectors(part.tolist()) @ words.T, axis=1)
        chosen.update({int(i): {attribute: names[j]} for i, j in zip(part, nearest, strict=True)})
    index.set_labels(chosen)
    counts = Counter(values[attribute] for values in chosen.values())
    return ZeroShotReport(attribute, prompt, {name: counts.get(name, 0) for name in names})
