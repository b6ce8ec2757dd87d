"""LoRA training examples per second on the default model (CPU), against a bare peft loop.

Both train the same LoRA configuration (r=8, all linear layers) from the same base
weights on the same examples (the example task's pilot, rendered as HFSimulator's
prompts), batch size 8, one epoch each, AdamW at the same learning rate. The bare
loop is what one would write by hand: shuffle, pad each batch to its longest
example, forward with labels, backward, step. simval's ``train`` also draws its
batches from length buckets. Printed: examples/s of each, their ratio, and the peak
resident memory of each phase, from one run.

    .venv/bin/python benchmarks/bench_finetune.py             # 48 respondents x 3 items
    .venv/bin/python benchmarks/bench_finetune.py --quick     # 16 respondents
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from peft import LoraConfig, get_peft_model

from simval.finetune import Example, _collate, pilot, train, training_examples
from simval.simulators.loading import load_causal_lm
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
        loss = model(**_collate(batch, pad=pad, device="cpu")).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--respondents", type=int, default=48)
    parser.add_argument("--quick", action="store_true", help="16 respondents")
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    respondents = 16 if args.quick else args.respondents

    task = load_task("example")
    chosen, _ = pilot(task.human, n=respondents, seed=0)
    model, tokenizer = lora_model(args.model)
    renderer = PromptRenderer(
        study=task.study, template=PromptTemplate(), tokenizer=tokenizer
    )
    examples = training_examples(chosen, task.study, renderer=renderer)
    pad = tokenizer.pad_token_id
    print(
        f"{len(examples)} examples ({respondents} respondents x {len(task.study.items)} items)"
    )

    start = time.perf_counter()
    bare_loop(model, examples, pad=pad, seed=0)
    bare = time.perf_counter() - start
    bare_peak = peak_rss_mib()

    model, _ = lora_model(args.model)
    start = time.perf_counter()
    train(
        model,
        examples,
        pad=pad,
        epochs=1,
        lr=LR,
        batch_size=BATCH_SIZE,
        seed=0,
        progress=False,
    )
    ours = time.perf_counter() - start
    ours_peak = peak_rss_mib()

    print(
        f"{'method':<22} {'seconds':>8} {'examples/s':>11} {'peak RSS so far MiB':>20}"
    )
    print(
        f"{'bare peft loop':<22} {bare:>8.1f} {len(examples) / bare:>11.2f} {bare_peak:>20.0f}"
    )
    print(
        f"{'simval train':<22} {ours:>8.1f} {len(examples) / ours:>11.2f} {ours_peak:>20.0f}"
    )
    print(f"speed ratio simval / bare: {bare / ours:.2f}")


if __name__ == "__main__":
    main()
