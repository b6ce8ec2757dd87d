"""How close HFSimulator's scoring comes to what this CPU can do, and what the thread policy buys.

The demo's workload: the default model (SmolLM2-135M-Instruct) scores the disclosure
task's decision items (concern, share_location) for holdout personas, empty result
store, float32 (or ``--dtype``), simval's default workers (one per torch thread, one
core each; ``simval.runtime``). From one run, printed as ratios:

1. FLOP rate: the matrix-product FLOPs of every linear layer during scoring (counted
   by forward hooks: 2 x rows x inputs x outputs) over the scoring time, as a share
   of this machine's rate for bare ``torch.nn.functional.linear`` calls of the same
   shapes (rows as in scoring's batches) run by as many one-thread workers, timed in
   the same process just before.
2. Tokens: the tokens the model computes per (persona, item), padding and shared
   prefixes included, against the irreducible count: the tokens after the item's and
   arm's shared prefix (the persona phrase and the end-of-turn tokens that follow it,
   which a causal model must recompute for each persona) plus the option tokens.
3. int8: the same scoring with torch's dynamic int8 quantization of every linear
   layer (per-channel weights), its speed and its largest probability error against
   float32 (why simval does not use it).
4. Frozen output layer: the same scoring with every weight frozen, as in a model with
   a merged adapter, with and without simval's contiguous input to the output layer
   (``simval.simulators.loading.contiguous_head``): the seconds of each and the
   largest probability difference between them.
5. Threads (``--threads-check``): 96 prompts in fresh processes, one worker at 1
   thread, one worker at 2 threads with torch's default OpenMP wait policy (threads
   spin), one worker at 2 threads with ``OMP_WAIT_POLICY=PASSIVE``, and 2 workers of
   one thread each with PASSIVE (simval's policy, ``simval.runtime``), each on a
   quiet machine and beside one other busy process; seconds and the ratio to the
   quiet 1-thread run.

    .venv/bin/python benchmarks/bench_scoring.py                  # 200 personas
    .venv/bin/python benchmarks/bench_scoring.py --quick          # 48 personas
    .venv/bin/python benchmarks/bench_scoring.py --threads-check  # also item 5
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from simval.bench import decision_study
from simval.runtime import concurrently, prepare_torch, scoring_workers
from simval.simulators.hf import HFSimulator
from simval.simulators.prefixes import common_prefix
from simval.tasks import load_task

THREAD_PROMPTS = 96
CHILD = """
import os, sys, time
if os.environ.get("BENCH_POLICY") == "torch default":
    import torch  # before simval, so simval's policy is not applied
from simval.bench import decision_study
from simval.simulators.hf import HFSimulator
from simval.tasks import load_task
import torch
torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
task = load_task("disclosure", seed=0)
study = decision_study(task.study)
sim = HFSimulator(
    "default", study=study, cache_dir=sys.argv[1], progress=False,
    workers=int(os.environ["BENCH_WORKERS"]),
)
sim.fingerprint += f"-{time.time()}"  # never served from the store
people = task.human.iloc[: int(sys.argv[2])]
sim.predict_proba(people.iloc[:8], "concern")  # warm-up
start = time.perf_counter()
sim.predict_proba(people.iloc[8:], "concern")
print(time.perf_counter() - start)
"""


def linear_flops(model: Any) -> tuple[dict[str, float], list[Any]]:
    """Forward hooks that add up each linear layer's matmul FLOPs and row counts."""
    import torch

    counts = {"flops": 0.0, "calls": 0, "rows": 0}
    lock = threading.Lock()  # scoring's workers call the hooks from their threads

    def hook(module: Any, inputs: tuple[Any, ...], output: Any) -> None:
        rows = inputs[0].numel() // module.in_features
        with lock:
            counts["flops"] += 2.0 * rows * module.in_features * module.out_features
            counts["calls"] += 1
            counts["rows"] += rows

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    return counts, handles


def token_counts(model: Any) -> tuple[dict[str, int], Any]:
    """A forward pre-hook on the model that counts the tokens each call computes."""
    counts = {"tokens": 0}
    lock = threading.Lock()

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids")
        with lock:
            counts["tokens"] += int(ids.numel())

    return counts, model.register_forward_pre_hook(hook, with_kwargs=True)


def irreducible_tokens(sim: HFSimulator, people: Any, item: Any) -> int:
    """Per prompt: tokens after its item-and-arm group's shared prefix, plus option tokens."""
    study = sim.study
    prompts = [sim.prompt(row, item) for _, row in people.iterrows()]
    encoded = [sim._render.encode(p) for p in prompts]
    arms = [study.arm_of(row) for _, row in people.iterrows()]
    total = 0
    for arm in set(arms):
        group = [e for e, a in zip(encoded, arms) if a == arm]
        shared = common_prefix(group) if len(group) > 1 else len(group[0]) - 1
        total += sum(len(e) - shared for e in group)
    options = sum(
        len(sim._render.answer_ids(p, e, label))
        for p, e in zip(prompts, encoded)
        for label in item.labels
    )
    return total + options


def bare_linear_rate(model: Any, *, rows: int, workers: int, repeats: int = 5) -> float:
    """GFLOP/s of bare F.linear over every linear layer shape of ``model`` at ``rows``
    rows, run by ``workers`` concurrent one-thread workers as scoring runs."""
    import torch

    shapes = sorted(
        {
            (m.in_features, m.out_features)
            for m in model.modules()
            if isinstance(m, torch.nn.Linear)
        }
    )
    weights = {shape: model_weight(model, shape) for shape in shapes}
    layers = [
        (m.in_features, m.out_features)
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    inputs = {k: torch.randn(rows, k, dtype=model.dtype) for k, _ in shapes}

    def run(times: int) -> Any:
        with torch.inference_mode():
            for _ in range(times):
                for shape in layers:
                    torch.nn.functional.linear(inputs[shape[0]], weights[shape])
            yield times

    list(concurrently([lambda: run(1)] * workers))  # warm-up
    start = time.perf_counter()
    list(concurrently([lambda: run(repeats)] * workers))
    seconds = time.perf_counter() - start
    flops = workers * repeats * sum(2.0 * rows * k * n for k, n in layers)
    return flops / seconds / 1e9


def model_weight(model: Any, shape: tuple[int, int]) -> Any:
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Linear) and (m.in_features, m.out_features) == shape:
            return m.weight.detach()
    raise KeyError(shape)


def score_run(sim: HFSimulator, people: Any, items: list[Any]) -> tuple[dict, float]:
    """Score ``items`` for ``people`` from an empty store; (probabilities, seconds)."""
    sim.fingerprint += f"-{time.time_ns()}"
    start = time.perf_counter()
    out = {item.name: sim.predict_proba(people, item).to_numpy() for item in items}
    return out, time.perf_counter() - start


def int8_model(model: Any) -> Any:
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(
            copy.deepcopy(model),
            {torch.nn.Linear: per_channel_dynamic_qconfig},
            dtype=torch.qint8,
        )


def frozen_head_check(sim: HFSimulator, people: Any, items: list[Any]) -> None:
    """Item 4 of the module docstring; leaves the model frozen with its hook."""
    sim.model.requires_grad_(False)
    head = sim.model.get_output_embeddings()
    hooked, with_hook = score_run(sim, people, items)
    hooks = dict(head._forward_pre_hooks)
    head._forward_pre_hooks.clear()
    plain, without = score_run(sim, people, items)
    head._forward_pre_hooks.update(hooks)
    error = max(float(np.abs(hooked[k] - plain[k]).max()) for k in hooked)
    print(
        f"frozen output layer (as after merging an adapter): {without:.2f} s with "
        f"torch's strided input, {with_hook:.2f} s with simval's contiguous one; "
        f"speed-up {without / with_hook:.2f}x; largest probability difference {error:.1e}"
    )


def thread_check(cache: str, *, personas: int) -> None:
    """Item 5 of the module docstring: fresh processes, quiet and beside a busy one."""
    configs = [
        ("1 worker, 1 thread", 1, 1, "PASSIVE"),
        ("1 worker, 2 threads, torch default", 2, 1, "torch default"),
        ("1 worker, 2 threads, PASSIVE", 2, 1, "PASSIVE"),
        ("2 workers x 1 thread (simval)", 2, 2, "PASSIVE"),
    ]
    rows = []
    for busy in (False, True):
        hog = (
            subprocess.Popen([sys.executable, "-c", "while True: pass"])
            if busy
            else None
        )
        try:
            for label, threads, workers, policy in configs:
                env = {**os.environ, "BENCH_THREADS": str(threads)}
                env["BENCH_WORKERS"] = str(workers)
                env["BENCH_POLICY"] = policy
                env.pop("OMP_WAIT_POLICY", None)
                if policy != "torch default":
                    env["OMP_WAIT_POLICY"] = policy
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, cache, str(personas + 8)],
                    env=env, capture_output=True, text=True, check=True,
                )  # fmt: skip
                seconds = float(out.stdout.strip().splitlines()[-1])
                rows.append((label, "busy" if busy else "quiet", seconds))
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    base = rows[0][2]
    print(f"\nthreads: {personas} prompts (concern) per run, each in a fresh process")
    print(
        f"{'configuration':36} {'machine':8} {'seconds':>8} {'vs quiet 1 thread':>18}"
    )
    for label, machine, seconds in rows:
        print(f"{label:36} {machine:8} {seconds:8.2f} {seconds / base:18.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="48 personas")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads-check", action="store_true")
    args = parser.parse_args()
    prepare_torch()  # simval's thread policy, as the command applies it
    import torch

    n = 48 if args.quick else 200
    task = load_task("disclosure", seed=0)
    study = decision_study(task.study)
    people = task.human.iloc[:n]
    with tempfile.TemporaryDirectory() as cache:
        sim = HFSimulator(
            "default", study=study, cache_dir=cache, progress=False, dtype=args.dtype
        )
        print(
            f"HFSimulator('default') scoring {n} personas x {len(study.items)} items "
            f"({', '.join(study.item_names)}), {sim.precision}, batch size "
            f"{sim.batch_size}, torch threads {torch.get_num_threads()}, "
            f"workers {scoring_workers()} x 1 thread, "
            f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"
        )
        score_run(sim, people.iloc[:8], list(study.items))  # warm-up
        flops, hooks = linear_flops(sim.model)
        tokens, token_hook = token_counts(sim.model)
        reference, seconds = score_run(sim, people, list(study.items))
        for handle in (*hooks, token_hook):
            handle.remove()
        rows_per_call = flops["rows"] / max(flops["calls"], 1)
        bare = bare_linear_rate(
            sim.model, rows=max(int(rows_per_call), 1), workers=scoring_workers()
        )
        achieved = flops["flops"] / seconds / 1e9
        prompts = n * len(study.items)
        needed = sum(irreducible_tokens(sim, people, item) for item in study.items)
        print(
            f"\nscoring: {seconds:.2f} s, {seconds / prompts * 1000:.1f} ms per prompt"
        )
        print(
            f"FLOP rate: {achieved:.0f} GFLOP/s in linear layers; bare F.linear of the "
            f"same shapes at {rows_per_call:.0f} rows: {bare:.0f} GFLOP/s; "
            f"share {achieved / bare:.2f}"
        )
        print(
            f"tokens per (persona, item): {tokens['tokens'] / prompts:.1f} computed, "
            f"{needed / prompts:.1f} irreducible; ratio {tokens['tokens'] / needed:.2f}"
        )
        frozen_head_check(sim, people, list(study.items))
        if sim.precision == "float32":
            sim.model = int8_model(sim.model)
            quantized, q_seconds = score_run(sim, people, list(study.items))
            error = max(
                float(np.abs(quantized[k] - reference[k]).max()) for k in reference
            )
            print(
                f"int8 dynamic quantization: {q_seconds:.2f} s, speed-up "
                f"{seconds / q_seconds:.2f}x; largest probability error vs float32 "
                f"{error:.3f} (not adopted)"
            )
        if args.threads_check:
            thread_check(cache, personas=THREAD_PROMPTS)
    print(
        f"\nload average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0]
    kinds = [
        f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags
    ]
    print(f"CPU: {', '.join(kinds)}")


if __name__ == "__main__":
    main()
