"""How simval runs torch on a CPU: the OpenMP wait policy, the thread count, concurrent workers.

On a small shared machine torch's OpenMP threads spin while they wait for work, so a
second busy process collapses throughput (40 prompts on a 2-core box: 3.1 s at 1
thread, 29 s at 2 spinning threads, 4.0 s at 2 threads that sleep while they wait;
benchmarks/bench_scoring.py measures it). simval therefore asks OpenMP to sleep
(``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a policy, and keeps torch's own
thread count (the machine's cores) unless ``SIMVAL_THREADS`` names another. Both
are set before torch is first imported, the only time OpenMP reads them; a process
that imported torch before simval keeps whatever it had.

A small model's matrix products are too small for two threads to share one well
(scoring at 2 threads: about 1.15x one thread), so work made of independent pieces
runs as concurrent workers of one thread each (``concurrently``): 2 workers scored
about 1.45x faster than one process at 2 threads, on a quiet machine and beside a
busy process alike (docs/runs.md).
"""

from __future__ import annotations

import functools
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from simval.errors import OptionError

T = TypeVar("T")

WAIT_POLICY = "PASSIVE"
"""simval's default ``OMP_WAIT_POLICY``: idle OpenMP threads sleep instead of spinning."""

THREADS_VARIABLE = "SIMVAL_THREADS"
"""Environment variable that sets torch's intra-op thread count for simval's work."""


@functools.cache
def prepare_torch() -> None:
    """Set the wait policy and thread count for torch, before it is imported if it is not yet.

    ``OMP_WAIT_POLICY`` (and, with ``SIMVAL_THREADS``, ``OMP_NUM_THREADS``) take effect
    only when torch loads OpenMP, so they are written to the environment first; a value
    the user set wins. Once torch is loaded the thread count is applied directly. Once
    per process: the later calls (every model load makes one) leave the count alone,
    so a model loaded inside a one-thread worker (``concurrently``) keeps one thread.
    """
    threads = thread_count()
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
        if threads is not None:
            os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if threads is not None and "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def thread_count() -> int | None:
    """``SIMVAL_THREADS`` as a positive integer, or None when unset (torch's default)."""
    text = os.environ.get(THREADS_VARIABLE, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise OptionError(
            f"{THREADS_VARIABLE}={text!r} must be a positive whole number of threads"
        )
    return int(text)


def scoring_workers() -> int:
    """How many concurrent one-thread workers simval's model work uses: torch's thread count."""
    import torch

    return max(1, torch.get_num_threads())


def concurrently(
    producers: Sequence[Callable[[], Iterator[T]]], *, threads_each: int = 1
) -> Iterator[T]:
    """Run each producer in its own thread, ``threads_each`` torch threads each (torch's
    thread count is process-wide, so every worker gets the same); yield items as they come.

    torch releases the interpreter lock inside its kernels, so the workers compute in
    parallel. A single producer runs in this thread with torch's threads untouched.
    After an error in a worker the others finish their current piece and stop; every
    piece finished is still yielded (so callers that save as they go lose nothing),
    then the first error is raised here. When the consumer stops, the workers stop
    after their current piece. torch's thread count is restored either way.
    """
    if len(producers) == 1:
        yield from producers[0]()
        return
    results: queue.Queue = queue.Queue()
    stop = threading.Event()
    done = object()

    def work(produce: Callable[[], Iterator[T]]) -> None:
        try:
            for item in produce():
                results.put((None, item))
                if stop.is_set():
                    return
        except Exception as error:  # noqa: BLE001 - the consuming thread raises it
            results.put((error, None))
        finally:
            results.put((done, None))

    with _torch_threads(threads_each):
        threads = [threading.Thread(target=work, args=(p,)) for p in producers]
        for thread in threads:
            thread.start()
        errors: list[Exception] = []
        try:
            finished = 0
            while finished < len(threads):
                error, item = results.get()
                if error is done:
                    finished += 1
                elif error is not None:
                    errors.append(error)
                    stop.set()
                else:
                    yield item
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        if errors:
            raise errors[0]


def side_by_side(**calls: Callable[[], Any]) -> dict[str, Any]:
    """Run independent calls concurrently, sharing torch's threads evenly (one each on a
    2-core machine; ``concurrently``); their results by name."""

    def producer(name: str, call: Callable[[], Any]) -> Callable[[], Iterator]:
        return lambda: iter([(name, call())])

    share = max(1, scoring_workers() // max(1, len(calls)))
    producers = [producer(n, c) for n, c in calls.items()]
    return dict(concurrently(producers, threads_each=share))


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` inside the block, restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
