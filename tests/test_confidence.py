"""Answers a user can act on: readable similarities, same-photo marks and the low-confidence judgement, the same
through Python, the CLI's JSON and HTTP's body (the doors share SearchResult.to_dict)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
from conftest import DEMO_GALLERY
from PIL import Image

from lookalike import ImageIndex
from lookalike.confidence import SAME_PHOTO, Floor, floor_from, judge
from lookalike.instance_set import strong_edit
from lookalike.organise.duplicates import make_edited_copy


def demo_photo(folder: str = "shoes", number: int = 0) -> Path:
    return sorted((DEMO_GALLERY / folder).glob("*.jpg"))[number]


def test_exact_copy_has_similarity_one_and_is_marked_same_photo(demo_index: ImageIndex, tmp_path: Path) -> None:
    copy = Path(shutil.copy(demo_photo(), tmp_path / "copy.jpg"))  # not indexed: embedded as a new photo
    result = demo_index.search(copy, k=3)
    first = result.matches[0]
    assert first.path == str(demo_photo().resolve())
    assert first.similarity >= 0.999
    assert first.same_photo
    assert "same photo" in result.note
    assert not any(match.same_photo for match in result.matches[1:])


def test_re_encoded_copy_is_the_same_photo_and_scores_stay_in_order(demo_index: ImageIndex, tmp_path: Path) -> None:
    copy = make_edited_copy(demo_photo("dress"), tmp_path / "small.jpg", "resize50")
    result = demo_index.search(copy, k=10)
    assert result.matches[0].same_photo and result.matches[0].similarity >= SAME_PHOTO
    scores = [match.score for match in result.matches]
    assert scores == sorted(scores, reverse=True)
    assert all(match.similarity < SAME_PHOTO for match in result.matches[1:])


def test_to_dict_carries_similarity_and_judgement(demo_index: ImageIndex) -> None:
    shown = demo_index.search(demo_photo(), k=2).to_dict()
    assert set(shown) >= {"low_confidence", "note"}
    assert {"similarity", "same_photo"} <= set(shown["matches"][0])


def test_photo_from_another_domain_is_flagged(demo_index: ImageIndex, corel: Path) -> None:
    flagged = [demo_index.search(corel / "gallery" / f"{n}.jpg", k=5) for n in (0, 150, 300, 450, 650, 850)]
    assert all(result.low_confidence for result in flagged), [r.note for r in flagged]
    assert "does not hold" in flagged[0].note


def test_new_clothing_photos_are_not_flagged_in_a_clothing_index(demo_index: ImageIndex, clothing: Path) -> None:
    photos = sorted((clothing / "test").rglob("*.jpg"))[::25][:12]
    flagged = [photo for photo in photos if demo_index.search(photo, k=5).low_confidence]
    assert len(flagged) <= 1, flagged


def test_filtered_search_without_close_match_blames_the_filter() -> None:
    floor = Floor(cosine=0.5, typical=0.7, count=1000)
    judged = judge(0.3, floor, filtered=True, predicted_class=None, same_photo_similarity=None)
    assert judged.low_confidence and "filters allow" in judged.note and "does not hold" not in judged.note


def test_unsure_classifier_is_low_confidence() -> None:
    judged = judge(0.9, Floor(0.5, 0.7, 1000), filtered=False, predicted_class={"dress": 0.4, "skirt": 0.35},
                   same_photo_similarity=None)
    assert judged.low_confidence and "dress" in judged.note


def test_tiny_index_gets_no_floor() -> None:
    assert floor_from(np.ones(5, np.float32), count=5) is None


def test_defaults_keep_plain_cosines_first_answer_for_other_views(demo_index: ImageIndex, tmp_path: Path) -> None:
    """The guard: a strong edit (another "view") of an indexed photo finds that photo first with the defaults
    (DBA + query expansion) whenever plain cosine does."""
    rng = random.Random(3)
    photos = sorted(DEMO_GALLERY.rglob("*.jpg"))[::9]
    for number, photo in enumerate(photos):
        with Image.open(photo) as image:
            view = strong_edit(image.convert("RGB"), rng)
        path = tmp_path / f"view{number}.jpg"
        view.save(path)
        defaults = demo_index.search(path, k=5).matches[0].path
        plain = demo_index.search(path, k=5, expand="none")
        best_plain = max(plain.matches, key=lambda match: match.similarity).path
        assert defaults == best_plain, photo


def test_a_cropped_copy_is_the_same_photo_and_a_look_alike_is_not(tmp_path: Path, demo_copy: Path) -> None:
    """Three different jeans on one wall (cosine about 0.94) are no copies of each other; a copy cropped by 10%
    (similarity under SAME_PHOTO) is marked by the keypoint check."""
    look_alikes = sorted((Path(__file__).parent / "data" / "look-alikes").glob("*.jpg"))
    for photo in look_alikes:
        shutil.copy(photo, demo_copy / photo.name)
    with ImageIndex.create(tmp_path / "idx") as index:
        index.add_folder(demo_copy)
        others = index.search(demo_copy / look_alikes[0].name, k=3).matches
        assert others[0].similarity > 0.8 and not any(match.same_photo for match in others)
        copy = make_edited_copy(look_alikes[0], tmp_path / "crop10.jpg", "crop10")
        first = index.search(copy, k=3).matches[0]
        assert first.similarity < SAME_PHOTO
        assert first.path == str((demo_copy / look_alikes[0].name).resolve()) and first.same_photo
