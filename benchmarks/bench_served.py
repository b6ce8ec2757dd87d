"""The same scoring through a local vLLM server (ServedSimulator) and in-process (HFSimulator).

The default model (SmolLM2-135M-Instruct, float32) scores the disclosure task's two
decision items for N personas from empty result stores, once through a vLLM server
this script starts from ``.vllm-venv`` (``scripts/install-vllm``) on 127.0.0.1, once
in-process; it prints both times, their ratio from this one run, and the largest
probability difference. vLLM starts before either is timed; its start-up (compilation)
is printed separately.

    .venv/bin/python benchmarks/bench_served.py            # 48 personas
    .venv/bin/python benchmarks/bench_served.py --n 16
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from simval.bench import decision_study
from simval.simulators.hf import HFSimulator
from simval.simulators.loading import resolve_model
from simval.simulators.served import ServedSimulator
from simval.tasks import load_task

ROOT = Path(__file__).resolve().parents[1]


def start_vllm(folder: Path, *, log: Path) -> tuple[subprocess.Popen, str, float]:
    """A vLLM server on ``folder``; (process, API root, seconds until it answered)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        str(ROOT / ".vllm-venv" / "bin" / "python"),
        "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
        "--served-model-name", "smollm", "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--max-model-len", "2048",
    ]  # fmt: skip
    start = time.perf_counter()
    with log.open("w") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    while server.poll() is None:
        try:
            if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                return server, url, time.perf_counter() - start
        except httpx.TransportError:
            time.sleep(2)
    raise RuntimeError(f"vLLM exited:\n{log.read_text()[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="personas")
    args = parser.parse_args()
    task = load_task("disclosure", seed=0)
    study = decision_study(task.study)
    people = task.human.iloc[: args.n]
    with tempfile.TemporaryDirectory() as cache:
        folder = resolve_model("default", cache_dir=cache)
        server, url, startup = start_vllm(folder, log=Path(cache) / "vllm.log")
        try:
            print(f"vLLM answered after {startup:.1f} s (start-up, not timed below)")
            served = ServedSimulator(
                url, "smollm", study=study, cache_dir=Path(cache) / "served",
                progress=False, timeout=600,
            )  # fmt: skip
            start = time.perf_counter()
            remote = {i.name: served.predict_proba(people, i) for i in study.items}
            served_s = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(timeout=60)
        local = HFSimulator(
            "default", study=study, cache_dir=Path(cache) / "local", progress=False
        )
        start = time.perf_counter()
        here = {i.name: local.predict_proba(people, i) for i in study.items}
        local_s = time.perf_counter() - start
    prompts = len(people) * len(study.items)
    difference = max(float(np.abs(remote[k] - here[k]).to_numpy().max()) for k in here)
    print(f"{prompts} prompts ({', '.join(study.item_names)}), float32")
    print(f"ServedSimulator on local vLLM: {served_s:.2f} s")
    print(f"HFSimulator in-process:        {local_s:.2f} s")
    print(f"served / in-process: {served_s / local_s:.2f}")
    print(f"largest probability difference: {difference:.1e}")
    print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
