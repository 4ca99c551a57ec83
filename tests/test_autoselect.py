"""Choosing the index type from collection size, memory budget and latency target."""

from __future__ import annotations

import pytest

from lookalike.index import ImageIndex
from lookalike.index.autoselect import memory_needed, parse_memory, plan_index
from lookalike.index.manifest import read_manifest


def test_small_collection_gets_exact_search():
    plan = plan_index("auto", 5_000, 1280, max_memory="2G")
    assert plan.index_type == "flat-ip"
    assert "no recall is lost" in plan.explain()


def test_hundred_thousand_images_are_not_searched_exactly():
    plan = plan_index("auto", 100_000, 1280, max_memory="2G")  # exact: 26 ms a query, measured
    assert plan.index_type == "hnsw"
    assert "exact search would take about 26 ms" in plan.explain()


def test_mid_size_collection_gets_hnsw_when_it_fits():
    plan = plan_index("auto", 200_000, 1280, max_memory="2G", latency_ms=10)
    assert plan.index_type == "hnsw"
    assert plan.memory_bytes <= 2 * 2**30
    assert "exact search would take" in plan.explain()


def test_million_images_in_two_gigabytes_gets_fast_scan_ivfpq_with_reasons():
    plan = plan_index("auto", 1_000_000, 1280, max_memory="2G")
    assert plan.index_type == "ivfpq"
    assert plan.memory_bytes <= 2 * 2**30 < memory_needed("hnsw", 1_000_000, 1280)
    assert plan.params["nlist"] == 4096 and plan.params["pq_bytes"] == 160 and plan.params["pq_bits"] == 4
    assert plan.params["transform"] is None and plan.params["coarse"] == "hnsw"
    assert "HNSW would need" in plan.explain() and "re-rank" in plan.explain()


def test_ten_million_images_in_three_gigabytes_fit_fast_scan():
    plan = plan_index("auto", 10_000_000, 1280, max_memory="3G")
    assert plan.params["pq_bits"] == 4 and plan.memory_bytes <= 3 * 2**30


def test_budget_too_small_for_fast_scan_falls_back_to_pca_codes():
    plan = plan_index("auto", 10_000_000, 1280, max_memory="1G")
    assert plan.index_type == "ivfpq" and plan.params["transform"] == "pca" and plan.params["pq_bytes"] < 160


def test_tighter_budget_uses_fewer_bytes_per_image():
    roomy = plan_index("auto", 10_000_000, 1280, max_memory="1G")
    tight = plan_index("auto", 10_000_000, 1280, max_memory="500M")
    assert tight.params["pq_bytes"] < roomy.params["pq_bytes"]


def test_budget_too_small_for_any_index_type_is_a_clear_error():
    with pytest.raises(ValueError, match="too small for any index type"):
        plan_index("auto", 1_000_000, 1280, max_memory="10M")


def test_named_type_over_budget_is_refused():
    with pytest.raises(ValueError, match="more than --max-memory"):
        plan_index("flat-ip", 1_000_000, 1280, max_memory="2G")


@pytest.mark.parametrize(("text", "expected"), [("2G", 2 * 2**30), ("1.5GB", int(1.5 * 2**30)), ("512M", 512 * 2**20),
                                                 ("2GiB", 2 * 2**30), ("1000", 1000)])
def test_memory_sizes_are_read_like_people_write_them(text, expected):
    assert parse_memory(text) == expected


def test_unreadable_memory_size_is_an_error():
    with pytest.raises(ValueError, match="cannot read memory size"):
        parse_memory("lots")


def test_unknown_index_type_is_an_error():
    with pytest.raises(ValueError, match="unknown index type"):
        plan_index("annoy", 10, 1280)


def test_created_index_records_the_choice_in_its_manifest(tmp_path):
    index = ImageIndex.create(tmp_path / "idx", index_type="auto", expected_count=300_000, max_memory="2G", pca=0)
    index.close()
    manifest = read_manifest(tmp_path / "idx")
    assert manifest.index_type == "hnsw"
    assert manifest.index_params["M"] == 32
    assert any("HNSW" in reason for reason in manifest.index_choice)


def test_auto_plans_for_the_dimension_the_pca_leaves(tmp_path):
    with ImageIndex.create(tmp_path / "idx", index_type="auto", expected_count=1_000_000, max_memory="2G"):
        pass
    manifest = read_manifest(tmp_path / "idx")
    assert manifest.index_type == "hnsw"  # a million PCA-128 vectors fit a graph in 2G; 1,280-d ones do not
    assert "exact search would take about 54 ms a search" in " ".join(manifest.index_choice)


@pytest.mark.parametrize("count", [100_000, 1_000_000])
def test_auto_plans_for_the_searches_a_default_call_makes(tmp_path, count):
    """With the defaults (PCA 128, query expansion) a call searches twice: at 100k exact search over 128-d (5.4 ms
    a search, measured) is not chosen, the graph is."""
    with ImageIndex.create(tmp_path / "idx", index_type="auto", expected_count=count):
        pass
    manifest = read_manifest(tmp_path / "idx")
    assert manifest.index_type == "hnsw"
    assert "for the 2 searches of a call" in manifest.index_choice[0]


def test_a_small_collection_still_gets_exact_search_for_both_searches_of_a_call():
    plan = plan_index("auto", 5_000, 128, searches=2)
    assert plan.index_type == "flat-ip" and "0.5 ms for the 2 searches of a call" in plan.explain()


def test_an_ivfpq_planned_for_the_pca_still_builds_after_the_pca_is_fitted(tmp_path, photo_folder):
    with ImageIndex.create(tmp_path / "idx", index_type="auto", expected_count=1_000_000, max_memory="300M",
                           latency_ms=0.5, pca=8) as index:
        assert index.manifest.index_type == "ivfpq" and index.manifest.index_params["pq_bytes"] == 1
        index.add_folder(photo_folder)  # 8 photos: the PCA to 8 is fitted and the index rebuilt in 8 dimensions
        assert index.reduction.dimension == 8
        matches = index.search(id=int(index.ids()[0]), k=3).matches
        assert len(matches) == 3 and {m.id for m in matches} <= set(index.ids().tolist())
