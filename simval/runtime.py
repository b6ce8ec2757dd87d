"""How simval runs torch on a CPU: the OpenMP wait policy and the thread count.

On a small shared machine torch's OpenMP threads spin while they wait for work, so a
second busy process collapses throughput (40 prompts on a 2-core box: 3.1 s at 1
thread, 29 s at 2 spinning threads, 4.0 s at 2 threads that sleep while they wait;
benchmarks/bench_scoring.py measures it). simval therefore asks OpenMP to sleep
(``OMP_WAIT_POLICY=PASSIVE``) unless the user chose a policy, and keeps torch's own
thread count (the machine's cores) unless ``SIMVAL_THREADS`` names another. Both
are set before torch is first imported, the only time OpenMP reads them; a process
that imported torch before simval keeps whatever it had.
"""

from __future__ import annotations

import os
import sys

from simval.errors import OptionError

WAIT_POLICY = "PASSIVE"
"""simval's default ``OMP_WAIT_POLICY``: idle OpenMP threads sleep instead of spinning."""

THREADS_VARIABLE = "SIMVAL_THREADS"
"""Environment variable that sets torch's intra-op thread count for simval's work."""


def prepare_torch() -> None:
    """Set the wait policy and thread count for torch, before it is imported if it is not yet.

    ``OMP_WAIT_POLICY`` (and, with ``SIMVAL_THREADS``, ``OMP_NUM_THREADS``) take effect
    only when torch loads OpenMP, so they are written to the environment first; a value
    the user set wins. Once torch is loaded the thread count is applied directly.
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
