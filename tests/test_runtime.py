"""simval.runtime: concurrent one-thread workers (and the result store they write to)."""

from __future__ import annotations

import threading

import pytest
import torch

from simval.runtime import concurrently, side_by_side


class Broken(RuntimeError):
    pass


def producer(name: str, count: int, *, fail_at: int | None = None):
    def produce():
        for k in range(count):
            if k == fail_at:
                raise Broken(f"{name} failed at {k}")
            yield name, k, torch.get_num_threads(), threading.current_thread().name

    return produce


def test_workers_run_in_their_own_threads_at_one_torch_thread_each():
    before = torch.get_num_threads()
    items = list(concurrently([producer("a", 3), producer("b", 4)]))
    assert sorted((name, k) for name, k, _, _ in items) == [
        *(("a", k) for k in range(3)),
        *(("b", k) for k in range(4)),
    ]
    assert {threads for _, _, threads, _ in items} == {1}
    assert threading.current_thread().name not in {t for *_, t in items}
    assert torch.get_num_threads() == before


def test_a_single_producer_runs_here_with_torch_threads_untouched():
    items = list(concurrently([producer("a", 2)]))
    assert [t for *_, t in items] == [threading.current_thread().name] * 2
    assert {threads for _, _, threads, _ in items} == {torch.get_num_threads()}


def test_an_error_comes_after_every_finished_piece():
    alive = threading.active_count()
    seen = []
    with pytest.raises(Broken, match="b failed at 2"):
        for item in concurrently([producer("a", 3), producer("b", 5, fail_at=2)]):
            seen.append(item[:2])
    assert ("b", 0) in seen and ("b", 1) in seen and ("b", 2) not in seen
    assert threading.active_count() == alive


def test_a_consumer_that_stops_early_stops_the_workers():
    before, alive = torch.get_num_threads(), threading.active_count()
    stream = concurrently([producer("a", 1000), producer("b", 1000)])
    next(stream)
    stream.close()
    assert threading.active_count() == alive
    assert torch.get_num_threads() == before


def test_side_by_side_returns_each_call_by_name_from_its_own_thread():
    """Each call in its own thread, on an even share of torch's threads."""
    here = threading.current_thread().name
    out = side_by_side(
        a=lambda: (threading.current_thread().name, torch.get_num_threads()),
        b=lambda: (threading.current_thread().name, torch.get_num_threads()),
    )
    assert set(out) == {"a", "b"}
    assert out["a"][0] != out["b"][0] and here not in (out["a"][0], out["b"][0])
    assert out["a"][1] == out["b"][1] == max(1, torch.get_num_threads() // 2)


def test_the_result_store_works_from_a_worker_thread_and_closes(tmp_path):
    import sqlite3

    from simval.simulators.store import ResultStore

    with ResultStore(tmp_path / "r.sqlite") as store:
        side_by_side(
            a=lambda: store.put_many({"a": [0.5, 0.5]}),
            b=lambda: store.put_many({"b": "text"}),
        )
        assert store.get_many(["a", "b", "c"]) == {"a": [0.5, 0.5], "b": "text"}
    with pytest.raises(sqlite3.ProgrammingError):
        len(store)
    with ResultStore(tmp_path / "r.sqlite") as again:
        assert len(again) == 2
