"""benchmarks/bench_gpu.py on a machine without a GPU: its arguments, its refusal (one
line, exit status 2, before any model loads), its refusal of a Python without vllm,
and its reading of vLLM's token counters. The GPU runs themselves need a GPU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    """The script as a module (registered while the tests use it: its dataclass needs it)."""
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["bench_gpu"]


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test."""
    from simval.simulators import hf, loading, served

    for module, name in (
        (loading, "load_causal_lm"),
        (hf, "load_causal_lm"),
        (served, "ServedSimulator"),
    ):
        monkeypatch.setattr(module, name, pytest.fail)


def test_help_runs_and_names_every_argument():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    for flag in ("--n", "--model", "--dtype", "--vllm-python", "--skip-vllm",
                 "--out", "--markdown"):  # fmt: skip
        assert flag in out.stdout


def test_the_arguments_and_their_defaults(bench):
    args = bench.parser().parse_args([])
    assert (args.n, args.model, args.dtype) == (48, "default", "bfloat16")
    assert args.vllm_python == Path(sys.executable) and not args.skip_vllm
    assert args.out is None and not args.markdown
    args = bench.parser().parse_args(
        ["--n", "200", "--model", "/m/Qwen", "--dtype", "float16", "--vllm-python",
         "/opt/v/bin/python", "--skip-vllm", "--out", "run", "--markdown"]
    )  # fmt: skip
    assert (args.n, args.model, args.dtype) == (200, "/m/Qwen", "float16")
    assert args.vllm_python == Path("/opt/v/bin/python") and args.skip_vllm
    assert args.out == Path("run") and args.markdown


@pytest.mark.parametrize(
    "argv, culprit",
    [(["--n", "0"], "--n"), (["--n", "many"], "--n"), (["--dtype", "int8"], "--dtype"),
     (["--workers", "-1"], "--workers"), (["--gpus", "2"], "--gpus")],
)  # fmt: skip
def test_bad_arguments_exit_2_naming_the_flag(bench, capsys, argv, culprit):
    with pytest.raises(SystemExit) as exited:
        bench.main(argv)
    assert exited.value.code == 2
    assert culprit in capsys.readouterr().err.splitlines()[-1]


def test_without_a_gpu_one_line_and_exit_2_before_any_model(bench, capsys, no_model):
    import torch

    assert not torch.cuda.is_available()  # this machine: the refusal is real
    assert bench.main(["--n", "4", "--skip-vllm"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("bench_gpu.py: no CUDA GPU here")


def test_in_a_subprocess_too(tmp_path):
    """As run from a shell: status 2, one line, nothing written to --out."""
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--n", "4", "--out", str(tmp_path / "run")],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "no CUDA GPU" in out.stderr
    assert not (tmp_path / "run").exists()


def test_a_python_without_vllm_is_refused(
    bench, capsys, monkeypatch, tmp_path, no_model
):
    """With a GPU (pretended), a --vllm-python that is missing or lacks vllm is one
    line naming the flag; one with vllm (a stand-in that answers its version) passes,
    and --skip-vllm needs none."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    lacking, having = tmp_path / "lacking", tmp_path / "having"
    lacking.write_text("#!/bin/sh\nexit 1\n")  # as `import vllm` fails
    having.write_text("#!/bin/sh\necho 0.12.0\n")
    for python in (lacking, having):
        python.chmod(0o755)
    for python in (lacking, tmp_path / "no-such-python"):
        args = bench.parser().parse_args(["--vllm-python", str(python)])
        problem = bench.refusal(args)
        assert problem.startswith(f"--vllm-python {python} has no vllm package")
    assert (
        bench.refusal(bench.parser().parse_args(["--vllm-python", str(having)])) is None
    )
    assert bench.vllm_version(having) == "0.12.0"
    assert bench.refusal(bench.parser().parse_args(["--skip-vllm"])) is None


def test_the_tokens_vllm_computed_from_its_metrics(bench, monkeypatch):
    """vLLM's computed prompt tokens: its local_compute counter where it has one,
    else its prompt tokens less its prefix-cache hits, summed over engines."""
    import httpx

    pages = {
        "by source": 'vllm:prompt_tokens_total{engine="0"} 900.0\n'
        'vllm:prompt_tokens_by_source_total{engine="0",source="local_compute"} 250.0\n'
        'vllm:prompt_tokens_by_source_total{engine="0",source="local_cache_hit"} 650.0\n'
        "# HELP vllm:prefix_cache_hits_total tokens\n"
        'vllm:prefix_cache_hits_total{engine="0"} 650.0\n',
        "hits": 'vllm:prompt_tokens_total{engine="0"} 900.0\n'
        'vllm:prompt_tokens_total{engine="1"} 100.0\n'
        'vllm:prefix_cache_hits_total{engine="0"} 600.0\n',
        "neither": "process_cpu_seconds_total 3.0\n",
    }
    expected = {"by source": 250, "hits": 400, "neither": None}
    for name, page in pages.items():
        monkeypatch.setattr(
            httpx, "get", lambda url, timeout, page=page: httpx.Response(200, text=page)
        )
        assert bench.engine_tokens("http://127.0.0.1:1/v1") == expected[name]


def test_the_block_floor_counts_what_a_block_prefix_cache_recomputes(bench):
    """Blocks of 4: the first sequence computes all 10 tokens; a second sharing 9
    reuses its two whole blocks (8) and computes 3; a copy of the first reuses 8 and
    computes 2 (never its last token from the cache); an unrelated one computes all."""
    from vllm_server import block_floor

    first = list(range(10))
    shared = first[:9] + [99, 98]
    assert block_floor([first], block=4) == 10
    assert block_floor([first, shared], block=4) == 10 + 3
    assert block_floor([first, shared, first], block=4) == 10 + 3 + 2
    assert block_floor([first, [7] * 6], block=4) == 10 + 6
    assert block_floor([first[:8], first[:8]], block=4) == 8 + 4
