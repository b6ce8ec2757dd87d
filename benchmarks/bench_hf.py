"""Respondents per second of HFSimulator's score mode, against a hand-written loop and a floor.

The default model (SmolLM2-135M-Instruct) on CPU answers the example study's three
items (concern, trust, share) for distinct personas (the example's persona columns
plus a ``region`` the prompt shows, so that no two prompts are alike and simval's
de-duplication of identical prompts cannot flatter it). Measured in one run, with
torch's default thread count for every phase:

- simval: ``HFSimulator.simulate(personas, items, seed=0)`` in score mode, with an
  empty result store, so every probability is computed.
- (a) naive: what a user would write by hand, one ``model.generate`` (greedy, 16 new
  tokens) per persona and item on the same prompt text, decoded and parsed with
  ``parse_answer``. At about a second a call it runs on a random subsample of the
  personas; its rate is extrapolated to respondents per second.
- (b) floor: one bare batched forward pass (left padding, logits of the last position
  only) per batch of the same prompts, written directly in torch: the least any method
  must do to read every prompt once. It does not even score the options.
- (b') optional (``--option-floor``): the same bare forward over every prompt followed
  by each option's text, the batched way of scoring options without prefix reuse.

A respondent is one persona answering all three items. Printed: seconds,
respondents/s, simval's speed-up over (a) (target >= 20), simval's time over (b)'s
(target <= 1.2; below 1 is possible through prefix reuse) and the peak resident
memory of the process and its increase during each phase.

    .venv/bin/python benchmarks/bench_hf.py                   # 512 personas, 16 naive
    .venv/bin/python benchmarks/bench_hf.py --quick           # 64 personas, 4 naive
    .venv/bin/python benchmarks/bench_hf.py --option-floor    # also time (b')
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simval.simulators.engine import parse_answer
from simval.simulators.hf import HFSimulator
from simval.study import Study
from simval.tasks import load_task

REGIONS = (
    "Alabama", "Arizona", "California", "Colorado", "Florida", "Georgia", "Illinois",
    "Indiana", "Kentucky", "Maine", "Michigan", "Minnesota", "Nevada", "New York",
    "Ohio", "Oregon", "Texas", "Utah", "Vermont", "Washington",
)  # fmt: skip
NAIVE_NEW_TOKENS = 16
CONVERT = (  # run as a script: convert the default model into the cache folder argv[1]
    "import sys; from simval.simulators.loading import resolve_model; "
    "resolve_model('default', cache_dir=sys.argv[1])"
)


class PeakRSS:
    """Peak resident set size per phase, from the kernel's high-water mark (VmHWM).

    Each phase resets the mark through ``/proc/self/clear_refs`` (Linux 4.0+). Where
    that is not allowed, a thread samples VmRSS every ``interval`` seconds instead.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.how = "VmHWM"
        self._peak = 0
        self._overall = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            value = status_kib("VmRSS")
            with self._lock:
                self._peak = max(self._peak, value)

    def _reset(self) -> None:
        """Restart the peak from the current RSS (keeping the process's peak so far)."""
        self._overall = max(self._overall, status_kib("VmHWM"))
        if self._thread is None:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                return
            except OSError:
                self.how = f"VmRSS sampled every {self.interval * 1000:.0f} ms"
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()
        with self._lock:
            self._peak = status_kib("VmRSS")

    def _read(self) -> int:
        """The peak RSS since the last reset, in KiB."""
        if self._thread is None:
            return status_kib("VmHWM")
        with self._lock:
            self._peak = max(self._peak, status_kib("VmRSS"))
            return self._peak

    @contextmanager
    def phase(self) -> Iterator[dict[str, float]]:
        """Yield a dict filled, on exit, with the phase's RSS at start and its peak (MiB)."""
        self._reset()
        start = status_kib("VmRSS")
        out: dict[str, float] = {}
        try:
            yield out
        finally:
            out.update(start=start / 1024, peak=self._read() / 1024)

    def overall(self) -> float:
        """The peak RSS of the whole process so far (every phase and what came before), MiB."""
        self._overall = max(self._overall, status_kib("VmHWM"), self._read())
        return self._overall / 1024

    def close(self) -> None:
        """Stop the sampling thread, if one runs."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def status_kib(field: str) -> int:
    """A memory field of /proc/self/status (VmRSS, VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def bench_study(study: Study) -> Study:
    """The example study with a ``region`` persona column and no models, subgroups or rules."""
    return dataclasses.replace(
        study,
        persona=(*study.persona, "region"),
        models=(),
        subgroups=(),
        coherence=(),
    )


def personas(n: int, study: Study, *, seed: int = 0) -> pd.DataFrame:
    """``n`` distinct personas: age 18-75, gender, region and arm drawn without repeats."""
    grid = list(
        itertools.product(
            range(18, 76), ("Female", "Male"), REGIONS, sorted(study.vignettes)
        )
    )
    if n > len(grid):
        raise SystemExit(f"at most {len(grid)} distinct personas; asked for {n}")
    rng = np.random.default_rng(seed)
    picked = [grid[i] for i in rng.choice(len(grid), size=n, replace=False)]
    df = pd.DataFrame(picked, columns=["age", "gender", "region", *study.treatment])
    df["age_band"] = pd.cut(
        df["age"], [17, 34, 54, 120], labels=["18-34", "35-54", "55+"]
    ).astype(str)
    df = df[list(study.persona_columns)]
    assert not df.duplicated().any(), "personas must be distinct"
    return df


def cpu_probe() -> float:
    """GFLOP/s of a fixed float32 matmul (about the model's layer shapes), best of 5."""
    import torch

    a, b = torch.randn(2048, 576), torch.randn(576, 1536)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 2048 * 576 * 1536 / best / 1e9


def measured(memory: PeakRSS, run: Callable[[], Any]) -> tuple[float, Any, dict]:
    """(seconds, result, {RSS start, peak, CPU probe}) of one call.

    The probe runs just before and just after the call; the lower of the two is kept,
    so that a machine slowed down by something else during the phase shows.
    """
    before = cpu_probe()
    with memory.phase() as info:
        start = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - start
    info["probe"] = min(before, cpu_probe())
    return seconds, result, info


def naive(sim: HFSimulator, people: pd.DataFrame) -> int:
    """Answers parsed, of one greedy ``generate`` per persona and item."""
    import torch

    model, tokenizer = sim.model, sim.tokenizer
    parsed = 0
    for _, row in people.iterrows():
        for item in sim.study.items:
            prompt = sim.prompt(row, item)
            inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            with torch.inference_mode():
                out = model.generate(
                    **inputs,
                    max_new_tokens=NAIVE_NEW_TOKENS,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            text = tokenizer.decode(
                out[0, inputs.input_ids.shape[1] :], skip_special_tokens=True
            )
            parsed += not np.isnan(parse_answer(text, item))
    return parsed


def floor(sim: HFSimulator, prompts: list[str], *, batch_size: int) -> None:
    """Tokenize ``prompts`` (left-padded) and run one bare forward per batch."""
    import torch

    model, tokenizer = sim.model, sim.tokenizer
    with torch.inference_mode():
        for i in range(0, len(prompts), batch_size):
            batch = tokenizer(
                prompts[i : i + batch_size],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                logits_to_keep=1,
            )


def prompts_of(sim: HFSimulator, people: pd.DataFrame) -> list[str]:
    """Every prompt of the study's items for ``people``, item by item."""
    return [
        sim.prompt(row, item)
        for item in sim.study.items
        for _, row in people.iterrows()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personas", type=int, default=512, help="default 512")
    parser.add_argument(
        "--naive-personas",
        type=int,
        default=16,
        help="personas in the subsample the naive loop runs on (default 16)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="default 16")
    parser.add_argument(
        "--quick", action="store_true", help="64 personas, 4 naive (a smoke test)"
    )
    parser.add_argument(
        "--option-floor",
        action="store_true",
        help="also time (b'): a bare forward over every prompt + each option",
    )
    parser.add_argument("--seed", type=int, default=0, help="persona draw (default 0)")
    args = parser.parse_args()
    if args.quick:
        args.personas, args.naive_personas = 64, 4
    args.naive_personas = min(args.naive_personas, args.personas)
    import torch

    task = load_task("example")
    study = bench_study(task.study)
    people = personas(args.personas, study, seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    subsample = people.iloc[
        np.sort(rng.choice(len(people), size=args.naive_personas, replace=False))
    ]
    items = study.items
    memory = PeakRSS()

    with tempfile.TemporaryDirectory(prefix="simval-bench-hf-") as tmp:
        # Convert the default model once (untimed, in a child process so that its
        # memory is not counted here), then time a simulator whose cache folder holds
        # only a link to the converted model: its result store is empty.
        models_root = Path(tmp) / "models-cache"
        subprocess.run([sys.executable, "-c", CONVERT, str(models_root)], check=True)
        run_cache = Path(tmp) / "run-cache"
        run_cache.mkdir()
        os.symlink(models_root / "models", run_cache / "models")
        sim = HFSimulator(
            "default",
            study=study,
            cache_dir=run_cache,
            batch_size=args.batch_size,
            progress=False,
        )
        assert len(sim.store) == 0, "the timed run must start from an empty store"
        prompts = prompts_of(sim, people)
        assert len(set(prompts)) == len(prompts), "prompts must be distinct"
        tokens = [
            len(sim.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts
        ]
        floor(sim, prompts[: args.batch_size], batch_size=args.batch_size)  # warm-up

        phases: list[tuple[str, float, float, dict]] = []
        seconds, answers, info = measured(
            memory, lambda: sim.simulate(people, items, seed=0)
        )
        assert len(sim.store) == len(prompts), "every probability must be computed"
        assert answers.notna().all().all()
        phases.append(("simval simulate (score)", seconds, len(people) / seconds, info))

        seconds, parsed, info = measured(memory, lambda: naive(sim, subsample))
        name = f"(a) naive generate, {len(subsample)} personas *"
        phases.append((name, seconds, len(subsample) / seconds, info))

        seconds, _, info = measured(
            memory, lambda: floor(sim, prompts, batch_size=args.batch_size)
        )
        phases.append(("(b) floor: bare forward", seconds, len(people) / seconds, info))

        if args.option_floor:
            extended = [
                p + sim._render.continuation(label)
                for p, item in zip(prompts, [i for i in items for _ in people.index])
                for label in item.labels
            ]
            seconds, _, info = measured(
                memory, lambda: floor(sim, extended, batch_size=args.batch_size)
            )
            name = "(b') bare forward, prompt+option"
            phases.append((name, seconds, len(people) / seconds, info))

    options = sum(len(item.labels) for item in items)
    print(
        f"HFSimulator('default') on {torch.device('cpu')}, torch threads "
        f"{torch.get_num_threads()}, batch size {args.batch_size}: {len(people)} "
        f"distinct personas x {len(items)} items = {len(prompts)} prompts "
        f"(tokens per prompt {min(tokens)}-{max(tokens)}, mean {np.mean(tokens):.0f}; "
        f"{options} options per respondent)"
    )
    print()
    print(
        f"{'method':<36} {'seconds':>9} {'resp/s':>8} {'RSS start MiB':>14} "
        f"{'peak MiB':>9} {'+peak MiB':>10} {'CPU GFLOP/s':>12}"
    )
    for name, seconds, rate, info in phases:
        print(
            f"{name:<36} {seconds:>9.2f} {rate:>8.2f} {info['start']:>14.0f} "
            f"{info['peak']:>9.0f} {info['peak'] - info['start']:>10.0f} "
            f"{info['probe']:>12.0f}"
        )
    ours, naive_rate, floor_time = phases[0][1], phases[1][2], phases[2][1]
    note = (
        f"* (a) ran on a random subsample of {len(subsample)} personas "
        f"({len(subsample) * len(items)} generate calls, {NAIVE_NEW_TOKENS} new tokens "
        "each); its respondents/s is that rate, extrapolated to all personas. "
        f"{parsed} of its {len(subsample) * len(items)} answers parsed to an option. "
        "simval's time includes rendering every prompt; (b)'s includes tokenizing "
        "them (rendered beforehand). +peak: the phase's peak RSS over its start "
        "(memory freed by an earlier phase is reused). CPU GFLOP/s: a fixed matmul "
        "just before and after the phase, the lower kept; a low value flags a "
        "machine slowed by something else, and a timing to rerun."
    )
    print(textwrap.fill(note, width=100))
    print()
    speedup = (len(people) / ours) / naive_rate
    print(f"speed-up, simval resp/s / naive resp/s:  {speedup:8.1f}x  (target >= 20)")
    print(
        f"simval seconds / floor seconds:          {ours / floor_time:8.2f}   "
        "(target <= 1.2; < 1 means faster than the floor)"
    )
    if args.option_floor:
        print(f"simval seconds / (b') seconds:           {ours / phases[3][1]:8.2f}")
    print(
        f"peak RSS of the whole process (model loading included): "
        f"{memory.overall():.0f} MiB (per-phase peaks from {memory.how})"
    )
    memory.close()


if __name__ == "__main__":
    main()
