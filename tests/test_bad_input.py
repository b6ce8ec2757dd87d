"""Bad input a new user gives, refused in one line (exit 2) before the work it would
spoil: an output that cannot be written, a negative seed, a broken result store, and
credentials in a server's URL, which no message, progress line or record ever shows."""

from __future__ import annotations

import base64
import http.server
import importlib
import json
import re
import socket
import sqlite3
import threading
from pathlib import Path

import pandas as pd
import pytest
from support import run

from simval.errors import OptionError
from simval.outputs import check_output
from simval.simulators.specs import ModelSpec, parse_model_spec
from simval.simulators.store import ResultStore, StoreError
from simval.study import Study
from simval.tasks import load_task

EXAMPLE = "simval/tasks/example/study.yaml"
COSTS = ("--cost-human", "5", "--cost-simulated", "1", "--budget", "100")
SECRET = "SECRET-d41d8cd9"

pytestmark = pytest.mark.usefixtures("private_cache")  # conftest.py


def one_line_error(code: int, out: str, err: str) -> str:
    """The error line of a run that exited 2 with one line on stderr (and nothing on
    stdout)."""
    assert code == 2 and out == "", (code, out, err)
    assert err.count("\n") == 1 and err.startswith("simval: error: "), err
    return err


def trip(monkeypatch, *, reading: bool) -> list[str]:
    """Record (and stop) every model load and, with ``reading``, every read of the
    study, a task, the demo or a survey: what a refused command must not reach."""
    module = importlib.import_module  # simval.finetune is also the function's name
    reached: list[str] = []

    def wire(what: str):
        def record(*args, **kwargs):
            reached.append(what)
            raise AssertionError(f"{what} ran before the bad input was refused")

        return record

    # every module imported before any is patched: one imported after would keep the
    # wire it imported by name once the patches are undone
    loaders = ("simval.simulators.loading", "simval.simulators.hf", "simval.finetune")
    loaded = {name: module(name) for name in (*loaders, "simval.bench", "simval.draft")}
    for name in loaders:
        monkeypatch.setattr(loaded[name], "load_causal_lm", wire("loading a model"))
    if reading:
        monkeypatch.setattr(Study, "from_yaml", classmethod(wire("reading the study")))
        monkeypatch.setattr(module("simval.tasks"), "load_task", wire("loading a task"))
        monkeypatch.setattr(loaded["simval.bench"], "demo", wire("the demo"))
        monkeypatch.setattr(loaded["simval.draft"], "write_draft", wire("a draft"))
    return reached


@pytest.fixture
def tripwire(monkeypatch) -> list[str]:
    return trip(monkeypatch, reading=True)


@pytest.fixture
def no_model_load(monkeypatch) -> list[str]:
    return trip(monkeypatch, reading=False)


def commands(out: Path) -> dict[str, list[object]]:
    """Each command's arguments, its --out the path given (a file of the kind it
    writes, or a folder)."""
    human = ("--human", "h.csv", "--model", "m")
    return {
        "validate": ["validate", EXAMPLE, *human, "--out", out.with_suffix(".html")],
        "rectify": ["rectify", EXAMPLE, *human, "--unlabeled", "9",
                    "--out", out.with_suffix(".html")],
        "plan": ["plan", EXAMPLE, *human, "--unlabeled", "9", *COSTS,
                 "--out", out.with_suffix(".csv")],
        "finetune": ["finetune", EXAMPLE, *human, "--pilot-n", "9", "--out", out],
        "bench": ["bench", "example", "--model", "a=default", "--out", out],
        "task": ["task", "example", "--out", out],
        "demo": ["demo", "--out", out],
        "init": ["init", "survey.dta", "--out", out],
    }  # fmt: skip


COMMANDS = list(commands(Path("x")))


@pytest.mark.parametrize("command", COMMANDS)
def test_an_out_under_a_regular_file_is_refused_before_any_work(
    capsys, tmp_path, tripwire, command
):
    """``--out report.html/x.html`` where report.html is a file."""
    blocker = tmp_path / "report.html"
    blocker.write_text("an earlier report")
    err = one_line_error(*run(capsys, *commands(blocker / "x")[command]))
    assert f"{blocker} is a file, not a folder" in err and "--out" in err
    assert tripwire == []


@pytest.mark.parametrize("command", ["finetune", "bench", "task", "demo", "init"])
def test_a_folder_flag_naming_a_file_is_refused_before_any_work(
    capsys, tmp_path, tripwire, command
):
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    err = one_line_error(*run(capsys, *commands(blocker)[command]))
    assert f"--out {blocker}: is a file, not a folder" in err
    assert tripwire == []


@pytest.mark.parametrize("command", ["validate", "rectify", "plan"])
def test_a_file_flag_naming_a_folder_is_refused_before_any_work(
    capsys, tmp_path, tripwire, command
):
    argv = commands(tmp_path / "out")[command]
    argv[-1].mkdir()  # a folder named like the report: out.html/
    err = one_line_error(*run(capsys, *argv))
    assert f"--out {argv[-1]}: is a folder" in err
    assert tripwire == []


@pytest.fixture
def read_only(tmp_path, monkeypatch) -> Path:
    """A folder this user cannot write in. Root ignores permission bits, so for root
    ``os.access`` answers as it does for any other user of a mode-555 folder."""
    import os

    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    if os.geteuid() == 0:
        access = os.access

        def as_a_user(path, mode, **kwargs):
            if Path(path) == folder and mode & os.W_OK:
                return False
            return access(path, mode, **kwargs)

        monkeypatch.setattr(os, "access", as_a_user)
    yield folder
    folder.chmod(0o755)


@pytest.mark.parametrize("command", COMMANDS)
def test_an_out_in_a_read_only_folder_is_refused_before_any_work(
    capsys, read_only, tripwire, command
):
    argv = commands(read_only / "new" / "out")[command]  # a missing folder inside
    err = one_line_error(*run(capsys, *argv))
    assert f"cannot write in {read_only} (permission denied)" in err
    assert tripwire == []


def test_check_output_accepts_what_can_be_written(tmp_path):
    """Missing folders on the way are made by the writers; an existing writable file
    or folder is fine."""
    assert check_output(tmp_path / "a" / "b" / "plan.csv", suffix=".csv")
    assert check_output(tmp_path / "a" / "b", folder=True)
    (tmp_path / "r.html").write_text("old")
    assert check_output(tmp_path / "r.html", suffix=".html") == tmp_path / "r.html"
    with pytest.raises(OptionError, match=r"^--out=.*choose a path ending in \.csv"):
        check_output(tmp_path / "plan.txt", suffix=".csv")


def test_plan_makes_a_missing_output_folder_as_the_other_commands_do(
    capsys, tmp_path, example_csv, tiny_model_dir
):
    out = tmp_path / "not" / "yet" / "plan.csv"
    code, printed, err = run(
        capsys, "plan", EXAMPLE, "--human", example_csv, "--model", tiny_model_dir,
        "--unlabeled", "60", "--cost-human", "10", "--cost-simulated", "0.1",
        "--effective-n", "100", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert len(pd.read_csv(out)) > 0 and f"plan: {out}" in printed


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "init"])
def test_a_negative_seed_is_refused_before_any_work(
    capsys, tmp_path, tripwire, command
):
    argv = [*commands(tmp_path / "out")[command], "--seed", "-1"]
    err = one_line_error(*run(capsys, *argv))
    assert "--seed" in err and ">= 0" in err.replace("greater than or equal to", ">=")
    assert tripwire == []


# --- the result store ----------------------------------------------------------------


def test_a_corrupted_store_is_named_with_the_fix_before_any_model_loads(
    capsys, tmp_path, private_cache, example_csv, no_model_load
):
    private_cache.mkdir(parents=True, exist_ok=True)
    store = private_cache / "results.sqlite"
    store.write_bytes(b"garbage, not SQLite " * 300)
    code, out, err = run(
        capsys, "validate", EXAMPLE, "--human", example_csv, "--model", "m",
        "--out", tmp_path / "r.html",
    )  # fmt: skip
    line = one_line_error(code, out, err)
    assert f"cannot open the result store {store}: file is not a database" in line
    assert "delete it" in line and "SIMVAL_CACHE_DIR" in line
    assert no_model_load == []


def test_a_store_corrupted_inside_is_one_store_error(tmp_path):
    path = tmp_path / "results.sqlite"
    with ResultStore(path) as store:
        store.put_many({str(i): [i] * 50 for i in range(500)})
    data = bytearray(path.read_bytes())
    data[4096:] = b"\xff" * (len(data) - 4096)  # every page past the first wrecked
    path.write_bytes(bytes(data))
    with (
        pytest.raises(StoreError, match=rf"result store {re.escape(str(path))}"),
        ResultStore(path) as store,
    ):
        store.get_many([str(i) for i in range(500)])


def fill_up_after_first_batch(monkeypatch) -> None:
    """The store's disk fills up once the first batch is in: SQLite's own "database
    or disk is full" from a page limit set at the size the file has then."""
    first = ResultStore.put_many

    def put_many(self, values):
        first(self, values)
        pages = self._connection.execute("PRAGMA page_count").fetchone()[0]
        self._connection.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(ResultStore, "put_many", put_many)


def test_a_full_store_stops_the_run_and_its_progress_counts_what_was_saved(
    tmp_path, tiny_model_dir, monkeypatch, capfd
):
    from simval.simulators.hf import HFSimulator

    task = load_task("example")
    fill_up_after_first_batch(monkeypatch)
    sim = HFSimulator(
        tiny_model_dir, study=task.study, cache_dir=tmp_path, batch_size=4,
        progress=True,
    )  # fmt: skip
    with pytest.raises(StoreError) as failure:
        sim.predict_proba(task.human.iloc[:40], task.study.items[0])
    message = str(failure.value)
    assert "\n" not in message and str(tmp_path / "results.sqlite") in message
    assert "database or disk is full" in message and "free space" in message
    assert "SIMVAL_CACHE_DIR" in message
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        saved = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    claimed = re.findall(r"scoring \w+: (\d+) prompts in", capfd.readouterr().err)
    assert claimed == [str(saved)] and saved > 0  # the first batch, no more


def test_a_full_store_ends_the_command_in_one_line(
    capsys, tmp_path, example_csv, tiny_model_dir, monkeypatch
):
    fill_up_after_first_batch(monkeypatch)
    code, _, err = run(
        capsys, "validate", EXAMPLE, "--human", example_csv, "--model", tiny_model_dir,
        "--out", tmp_path / "r.html", "--n", "40", "--reps", "2",
    )  # fmt: skip
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("simval: error:")]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0]
    assert "database or disk is full" in errors[0] and "results.sqlite" in errors[0]


# --- credentials in a server's URL ----------------------------------------------------


class StubServer(http.server.ThreadingHTTPServer):
    """An OpenAI-compatible server on 127.0.0.1 that answers every request with
    ``status`` and, for an error, a message quoting the credentials it was sent (as
    some APIs quote a wrong key)."""

    daemon_threads = True

    def __init__(self, status: int) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.status = status
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials}127.0.0.1:{self.server_address[1]}/v1"


class _StubHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # a chat answer: "1"
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._reply({"choices": [{"message": {"content": "1"}}]})

    def do_GET(self) -> None:
        auth = self.headers.get("authorization") or ""
        if auth.startswith("Basic "):
            auth = base64.b64decode(auth.removeprefix("Basic ")).decode()
        body = (
            {"data": [{"id": "llama", "root": None}]}
            if self.server.status == 200
            else {"error": {"message": f"Incorrect credentials provided: {auth}"}}
        )
        self._reply(body)

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_errors() -> list[tuple[str, object, str]]:
    """(case, how to build the URL, what the message says instead)."""
    creds = f"user:{SECRET}@"
    return [
        ("bad scheme", lambda: f"htp://{creds}host/v1", "http:// or https://"),
        ("no scheme", lambda: f"{creds}host:8000/v1", "http:// or https://"),
        ("unreachable", lambda: f"http://{creds}127.0.0.1:{closed_port()}/v1",
         "ConnectError after"),
        ("401", lambda: StubServer(401).url(creds), "HTTP 401: Incorrect credentials"),
        ("500", lambda: StubServer(500).url(creds), "HTTP 500 after"),
        ("401 in the query", lambda: StubServer(401).url() + f"?api_key={SECRET}",
         "HTTP 401"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "url, instead", [case[1:] for case in served_errors()],
    ids=[case[0] for case in served_errors()],
)  # fmt: skip
def test_credentials_in_a_url_are_never_echoed(
    capsys, tmp_path, example_csv, monkeypatch, url, instead
):
    import simval.simulators.http

    monkeypatch.setattr(simval.simulators.http, "_backoff", lambda attempt: 0.0)
    address = url()
    for argv in (
        ["validate", EXAMPLE, "--human", example_csv, "--model", f"llama@{address}",
         "--out", tmp_path / "r.html"],
        ["bench", "example", "--model", f"big=llama@{address}", "--n", "20",
         "--out", tmp_path / "bench"],
    ):  # fmt: skip
        code, out, err = run(capsys, *argv)
        line = one_line_error(code, out, err)
        assert SECRET not in line and "user" not in line and instead in line
        assert not (tmp_path / "r.html").exists()


def test_the_api_key_a_server_quotes_back_is_blanked(
    capsys, tmp_path, example_csv, monkeypatch
):
    monkeypatch.setenv("SIMVAL_TEST_KEY", SECRET)
    url = StubServer(401).url()
    code, out, err = run(
        capsys, "validate", EXAMPLE, "--human", example_csv, "--model", f"llama@{url}",
        "--api-key-env", "SIMVAL_TEST_KEY", "--out", tmp_path / "r.html",
    )  # fmt: skip
    line = one_line_error(code, out, err)
    assert "Incorrect credentials provided: Bearer ***" in line and SECRET not in line


def test_progress_lines_labels_and_specs_show_no_credentials(tmp_path, capfd):
    """A served run's progress lines, label and repr, and a spec's display."""
    from simval.simulators.served import ServedSimulator

    server = StubServer(200)
    task = load_task("example")
    url = server.url(f"user:{SECRET}@") + f"?api_key={SECRET}#{SECRET}"
    sim = ServedSimulator(
        url, "llama", study=task.study, api="chat", mode="generate", cache_dir=tmp_path,
        progress=True, retries=0,
    )  # fmt: skip
    sim.simulate(task.human.iloc[:30], [task.study.items[0]], seed=0)
    logged = capfd.readouterr()
    spec = parse_model_spec(f"big=llama@{url}")
    shown = [
        sim.label, repr(sim), sim.server, repr(sim.identity), logged.err, logged.out,
        str(spec), repr(spec),
    ]  # fmt: skip
    assert "127.0.0.1" in logged.err  # the progress line was written, with the host
    assert not any(SECRET in text or "user" in text for text in shown), shown
    assert spec == ModelSpec("big", "llama", server=url)  # the URL itself is kept
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
