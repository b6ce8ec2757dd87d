"""LoRA training examples per second on the default model (CPU), against a bare peft loop.

Both train the same LoRA configuration (r=8, all linear layers) from the same base
weights on the same examples (the example task's pilot, rendered as HFSimulator's
prompts), batch size 8, one epoch each, AdamW at the same learning rate, measured in
the same run. The bare loop is what one would write by hand: shuffle, pad each batch
to its longest example, forward with labels, backward, step. simval's ``train``
batches examples that share a prompt prefix (one item and arm) and runs that prefix
once per batch. Each runs in its own fresh process, one after the other. Printed:
seconds, examples/s and optimizer steps of each, their ratio, the resident memory
before training and its peak during training, and the load average before and after.

    .venv/bin/python benchmarks/bench_finetune.py             # 48 respondents x 3 items
    .venv/bin/python benchmarks/bench_finetune.py --quick     # 16 respondents
"""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model

from simval.finetune import (
    IGNORE,
    Example,
    pilot,
    train,
    training_examples,
)
from simval.simulators.loading import load_causal_lm
from simval.simulators.prefixes import prefix_groups
from simval.simulators.prompts import PromptRenderer, PromptTemplate
from simval.tasks import load_task

BATCH_SIZE = 8
LR = 2e-4


def lora_model(model: str) -> tuple[object, object]:
    """A fresh LoRA-wrapped copy of the base model (same seed, same initial adapter)."""
    torch.manual_seed(0)
    base, tokenizer = load_causal_lm(model)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.05,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, config), tokenizer


def collate(batch: list[Example], *, pad: int) -> dict[str, torch.Tensor]:
    """Whole sequences right-padded to the longest, labels on the answer tokens only."""
    width = max(len(e.prompt_ids) + len(e.answer_ids) for e in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for row, example in enumerate(batch):
        sequence = example.prompt_ids + example.answer_ids
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
        labels[row, len(example.prompt_ids) : len(sequence)] = torch.tensor(
            example.answer_ids
        )
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def bare_loop(model: object, examples: list[Example], *, pad: int, seed: int) -> None:
    """One epoch of the hand-written loop: shuffled batches padded to their longest example."""
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=LR
    )
    model.train()
    order = rng.permutation(len(examples))
    for start in range(0, len(order), BATCH_SIZE):
        batch = [examples[i] for i in order[start : start + BATCH_SIZE]]
        loss = model(**collate(batch, pad=pad)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def measure(method: str, *, model_name: str, respondents: int) -> dict[str, float]:
    """In a fresh process: one epoch of ``method`` ("bare" or "simval") on the pilot's
    examples; seconds, optimizer steps, RSS before training and peak RSS during it."""
    task = load_task("example")
    chosen, _ = pilot(task.human, n=respondents, seed=0)
    model, tokenizer = lora_model(model_name)
    renderer = PromptRenderer(
        study=task.study, template=PromptTemplate(), tokenizer=tokenizer
    )
    examples = training_examples(chosen, task.study, renderer=renderer)
    pad = tokenizer.pad_token_id
    groups = prefix_groups([e.prompt_ids for e in examples], batch_size=BATCH_SIZE)
    lengths = [len(e.prompt_ids) + len(e.answer_ids) for e in examples]
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = status_mib("VmRSS")
    start = time.perf_counter()
    if method == "bare":
        bare_loop(model, examples, pad=pad, seed=0)
        steps = math.ceil(len(examples) / BATCH_SIZE)
    else:
        settings = {"epochs": 1, "lr": LR, "batch_size": BATCH_SIZE, "seed": 0}
        train(model, examples, pad=pad, progress=False, **settings)
        steps = sum(math.ceil(len(g) / BATCH_SIZE) for g in groups)
    return {
        "seconds": time.perf_counter() - start,
        "steps": steps,
        "rss_start": before,
        "peak": status_mib("VmHWM"),
        "examples": len(examples),
        "items": len(task.study.items),
        "groups": len(groups),
        "shortest": min(lengths),
        "longest": max(lengths),
        "threads": torch.get_num_threads(),
    }


def in_child(method: str, **options: object) -> dict[str, float]:
    """``measure`` in a spawned process, so each method's memory is its own."""
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure, method, **options).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--respondents", type=int, default=48)
    parser.add_argument("--quick", action="store_true", help="16 respondents")
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    options = {
        "model_name": args.model,
        "respondents": 16 if args.quick else args.respondents,
    }
    load_before = os.getloadavg()
    bare = in_child("bare", **options)
    ours = in_child("simval", **options)

    print(
        f"{ours['examples']} examples ({options['respondents']} respondents x "
        f"{ours['items']} items), tokens per example {ours['shortest']}-"
        f"{ours['longest']}, {ours['groups']} shared-prefix groups; "
        f"torch threads {ours['threads']}"
    )
    print(
        f"{'method':<16} {'seconds':>8} {'examples/s':>11} {'steps':>6} "
        f"{'RSS start MiB':>14} {'peak MiB':>9}"
    )
    for name, run in (("bare peft loop", bare), ("simval train", ours)):
        print(
            f"{name:<16} {run['seconds']:>8.1f} {run['examples'] / run['seconds']:>11.2f} "
            f"{run['steps']:>6} {run['rss_start']:>14.0f} {run['peak']:>9.0f}"
        )
    print(f"speed ratio simval / bare: {bare['seconds'] / ours['seconds']:.2f}")
    load_after = os.getloadavg()
    print(
        "load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after: "
        + ", ".join(f"{x:.2f}" for x in load_after)
    )


if __name__ == "__main__":
    main()
