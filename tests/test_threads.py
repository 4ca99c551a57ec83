"""The search thread policy: a lone query on settings.search_threads() FAISS threads, a batch on every core."""

from __future__ import annotations

import os
import threading

import faiss
import pytest

from lookalike.backends.threads import threads_for


@pytest.fixture
def two_threads():
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two cores to tell one FAISS thread from several")
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    yield
    faiss.omp_set_num_threads(before)


def test_a_lone_query_runs_on_one_thread_and_the_callers_count_comes_back(two_threads, monkeypatch):
    monkeypatch.delenv("LOOKALIKE_SEARCH_THREADS", raising=False)
    with threads_for(1) as threads:
        assert threads == 1 and faiss.omp_get_max_threads() == 1
    assert faiss.omp_get_max_threads() == 2


def test_a_batch_keeps_every_thread(two_threads):
    with threads_for(100) as threads:
        assert threads == 2 and faiss.omp_get_max_threads() == 2


def test_the_environment_lets_a_lone_query_use_more_threads_but_never_more_than_the_caller_has(two_threads,
                                                                                               monkeypatch):
    monkeypatch.setenv("LOOKALIKE_SEARCH_THREADS", "8")
    with threads_for(1) as threads:
        assert threads == 2


def test_the_count_comes_back_when_the_search_fails(two_threads):
    with pytest.raises(RuntimeError), threads_for(1):
        raise RuntimeError("search failed")
    assert faiss.omp_get_max_threads() == 2


def test_another_threads_lone_query_leaves_this_threads_count_alone(two_threads):
    inside, release = threading.Event(), threading.Event()

    def lone_query():
        with threads_for(1):
            inside.set()
            release.wait(5)

    other = threading.Thread(target=lone_query)
    other.start()
    inside.wait(5)
    try:
        assert faiss.omp_get_max_threads() == 2  # OpenMP's count belongs to the calling thread
    finally:
        release.set()
        other.join()
