"""--dry-run: the forecast counts exactly the prompts a run then asks (the result store
counted), stops before any model beyond the warm-up loads, still refuses bad input, and
prices tokens; simval.defaults agrees with the modules whose values it shows."""

from __future__ import annotations

import http.server
import json
import re
import threading
from pathlib import Path

import pytest
from support import run

from simval.errors import OptionError
from simval.forecast import Forecast, scoring_forecast
from simval.simulators import hf
from simval.simulators.hf import HFSimulator

EXAMPLE = "simval/tasks/example/study.yaml"

pytestmark = pytest.mark.usefixtures("private_cache")  # conftest.py


def forecast_of(text: str) -> tuple[int, int]:
    """(prompts to ask, prompts already stored) as a forecast prints them."""
    found = re.search(r"prompts to ask: ([\d,]+) \(([\d,]+) already", text)
    assert found, text
    return tuple(int(g.replace(",", "")) for g in found.groups())


@pytest.fixture
def asked(monkeypatch):
    """Every prompt the in-process model is asked to score or generate, as asked."""
    prompts: list[str] = []
    score, generate = HFSimulator._score_prompts, HFSimulator._generate_texts

    def scoring(self, batch, item):
        prompts.extend(batch)
        yield from score(self, batch, item)

    def generating(self, todo):
        prompts.extend(p for _, p in todo)
        yield from generate(self, todo)

    monkeypatch.setattr(HFSimulator, "_score_prompts", scoring)
    monkeypatch.setattr(HFSimulator, "_generate_texts", generating)
    return prompts


@pytest.mark.parametrize(
    "flags",
    [
        ("validate", "--reps", "2", "--n", "40", "--out", "{tmp}/r.html"),
        ("rectify", "--labeled-frac", "0.3", "--out", "{tmp}/r.html"),
        ("rectify", "--unlabeled", "30", "--out", "{tmp}/r.html"),
        (
            "validate",
            "--mode",
            "generate",
            "--reps",
            "2",
            "--n",
            "20",
            "--out",
            "{tmp}/r.html",
        ),
    ],
    ids=["validate", "rectify-labeled", "rectify-unlabeled", "generate"],
)
def test_the_forecast_counts_what_the_run_asks(
    capsys, tmp_path, example_csv, tiny_model_dir, asked, flags
):
    """The dry run's count equals the prompts the real run then hands the model; after
    it every prompt is in the store, and the next forecast says so."""
    command, *rest = (f.format(tmp=tmp_path) for f in flags)
    argv = [command, EXAMPLE, "--human", example_csv, "--model", tiny_model_dir, *rest]
    code, out, err = run(capsys, *argv, "--dry-run")
    assert code == 0, err
    todo, stored = forecast_of(out)
    assert todo > 0 and stored == 0
    assert "estimated time:" in out and re.search(r"measured on \d+", out)
    assert not (tmp_path / "r.html").exists()  # nothing written
    asked.clear()  # the warm-up's prompts
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert len(asked) == todo
    code, out, _ = run(capsys, *argv, "--dry-run")
    if "generate" in flags:  # generated answers are counted as drawn afresh
        assert forecast_of(out) == (todo, 0) and "generated answers: at most" in out
    else:
        assert forecast_of(out) == (0, todo)
        assert "nothing to ask the model" in out


def test_rectify_forecasts_only_the_items_its_formulas_use(
    capsys, tmp_path, example_csv, tiny_model_dir, asked
):
    """A study whose one model uses one of its three items: rectify asks that item
    alone, for the labeled humans and the others' personas, and the forecast counts
    exactly those prompts; after the run, none is left to ask."""
    yaml = Path(EXAMPLE).read_text(encoding="utf-8")
    head, _, tail = yaml.partition("models:")
    study = tmp_path / "study.yaml"
    study.write_text(
        head + "models:\n  - formula: concern ~ C(arm) + age\n    family: ols\n"
        + "subgroups" + tail.partition("subgroups")[2],
        encoding="utf-8",
    )  # fmt: skip
    argv = [
        "rectify", study, "--human", example_csv, "--model", tiny_model_dir,
        "--labeled-frac", "0.3", "--out", tmp_path / "r.html",
    ]  # fmt: skip
    code, out, err = run(capsys, *argv, "--dry-run")
    assert code == 0, err
    todo, stored = forecast_of(out)
    assert stored == 0 and 0 < todo <= 120  # one item: at most a prompt per human
    asked.clear()  # the warm-up's prompts
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert len(asked) == todo
    assert all("How concerned are you" in prompt for prompt in asked)
    code, out, _ = run(capsys, *argv, "--dry-run")
    assert forecast_of(out) == (0, todo) and "nothing to ask the model" in out


def test_a_dry_run_loads_the_model_once_and_stores_nothing(
    capsys, tmp_path, example_csv, tiny_model_dir, monkeypatch
):
    loads = []
    load = hf.load_causal_lm
    monkeypatch.setattr(
        hf, "load_causal_lm", lambda *a, **k: loads.append(1) or load(*a, **k)
    )
    argv = [
        "validate", EXAMPLE, "--human", example_csv, "--model", tiny_model_dir,
        "--n", "20", "--out", tmp_path / "r.html", "--dry-run",
    ]  # fmt: skip
    first = run(capsys, *argv)
    assert first[0] == 0 and len(loads) == 1
    second = run(capsys, *argv)
    assert forecast_of(first[1]) == forecast_of(second[1])  # the warm-up stored nothing


@pytest.mark.parametrize(
    "argv, culprit",
    [
        (["validate", "--out", "r.txt"], "--out"),
        (["validate", "--out", "r.html", "--n", "5"], "--n"),
        (["validate", "--out", "r.html", "--price", "-1"], "--price"),
        (["rectify", "--out", "r.html"], "--unlabeled N"),
        (["finetune", "--out", "{tmp}/a"], "--pilot-frac"),
        (["bench", "--out", "{tmp}/b"], "--human"),
    ],
)
def test_bad_input_still_exits_2_before_the_forecast(
    capsys, tmp_path, example_csv, tiny_model_dir, argv, culprit, monkeypatch
):
    """Each check runs before the forecast: a bad flag is one line naming it and exit
    status 2, and no model loads."""
    monkeypatch.setattr(hf, "load_causal_lm", pytest.fail)
    command, *flags = (a.format(tmp=tmp_path) for a in argv)
    study = tmp_path / "study.yaml" if command == "bench" else EXAMPLE
    if command == "bench":
        study.write_text(Path(EXAMPLE).read_text(encoding="utf-8"), encoding="utf-8")
        human = ["--model", f"m={tiny_model_dir}"]
    else:
        human = ["--human", example_csv, "--model", tiny_model_dir]
    code, out, err = run(capsys, command, study, *human, *flags, "--dry-run")
    assert code == 2 and out == ""
    assert err.startswith("simval: error:") and err.count("\n") == 1
    assert culprit in err, err


def test_finetune_forecasts_the_steps_it_then_takes(
    capsys, tmp_path, example_csv, tiny_model_dir, monkeypatch
):
    import torch

    argv = [
        "finetune", EXAMPLE, "--human", example_csv, "--model", tiny_model_dir,
        "--pilot-n", "12", "--epochs", "2", "--batch-size", "4", "--out",
        tmp_path / "adapter",
    ]  # fmt: skip
    code, out, err = run(capsys, *argv, "--dry-run")
    assert code == 0, err
    steps = int(re.search(r"training steps: (\d+)", out).group(1))
    assert "estimated time:" in out and not (tmp_path / "adapter").exists()
    taken = []
    step = torch.optim.AdamW.step
    monkeypatch.setattr(
        torch.optim.AdamW, "step", lambda self, *a, **k: taken.append(1) or step(self)
    )
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert len(taken) == steps


def test_cost_is_tokens_times_the_price_per_million():
    forecast = Forecast(
        command="validate", model="m", asks=100, tokens=2_500_000, price=0.4,
        seconds_each=0.5, warmup=8,
    )  # fmt: skip
    assert forecast.cost == pytest.approx(1.0)
    assert forecast.seconds == pytest.approx(50.0)
    text = forecast.to_text()
    assert "tokens: 2,500,000" in text and "cost: 1.0000 at 0.4 per million" in text
    assert "50.0 s" in text
    assert Forecast(command="v", model="m", asks=1, tokens=10).cost is None
    with pytest.raises(OptionError, match="price=-1"):  # before the simulator is read
        scoring_forecast(None, command="validate", frames=[], price=-1)


def test_bench_forecasts_every_model_and_the_pilot_training(
    capsys, tmp_path, tiny_model_dir, asked
):
    """On a task, a base model and a :pilot one: the training steps, and the prompts
    of both models, which sum to what the run then asks; each block is titled by its
    spec's name and model."""
    argv = [
        "bench", "example", "--model", f"base={tiny_model_dir}", "--model",
        f"tuned={tiny_model_dir}:pilot", "--n", "30", "--reps", "2", "--epochs", "1", "--layers", "1",
        "--out", tmp_path / "bench",
    ]  # fmt: skip
    code, out, err = run(capsys, *argv, "--dry-run")
    assert code == 0, err
    counts = [
        int(n.replace(",", "")) for n in re.findall(r"prompts to ask: ([\d,]+)", out)
    ]
    assert len(counts) == 2 and "training steps:" in out
    assert "estimated time in all:" in out
    model = tiny_model_dir.name  # each block named by its spec's name and model
    titles = re.findall(r"^simval bench example --dry-run: (.*)$", out, re.MULTILINE)
    assert titles == [
        f"base ({model})",
        f"tuned ({model}, fine-tuning on the pilot)",
        f"tuned ({model}, fine-tuned on the pilot)",
    ]
    asked.clear()
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert len(asked) == sum(counts)


class FakeServer(http.server.ThreadingHTTPServer):
    """An OpenAI-compatible server of one model (named by a local folder, whose
    tokenizer simval then uses) that echoes a log-probability of -1 for every token,
    counting the completions requests and the tokens they carry."""

    def __init__(self, model: str) -> None:
        super().__init__(("127.0.0.1", 0), _FakeHandler)
        self.model, self.requests, self.tokens = model, 0, 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _FakeHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._reply({"data": [{"id": self.server.model}]})

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests += 1
        self.server.tokens += sum(map(len, payload["prompt"]))
        self._reply(
            {
                "choices": [
                    {"index": i, "logprobs": {"token_logprobs": [-1.0] * len(s)}}
                    for i, s in enumerate(payload["prompt"])
                ]
            }
        )


def test_a_served_model_forecasts_its_requests_tokens_and_cost(
    capsys, tmp_path, example_csv, tiny_model_dir
):
    """The requests and tokens the forecast counts are those the server then receives,
    and the cost is the tokens at --price per million."""
    server = FakeServer(str(tiny_model_dir))
    argv = [
        "validate", EXAMPLE, "--human", example_csv, "--model",
        f"{tiny_model_dir}@{server.url}", "--reps", "2", "--n", "40", "--out",
        tmp_path / "r.html",
    ]  # fmt: skip
    code, out, err = run(capsys, *argv, "--dry-run", "--price", "2.5")
    assert code == 0, err
    requests = int(re.search(r"requests: ([\d,]+)", out).group(1).replace(",", ""))
    tokens = int(re.search(r"tokens: ([\d,]+)", out).group(1).replace(",", ""))
    cost = float(re.search(r"cost: ([\d.]+) at 2.5 per million", out).group(1))
    assert cost == pytest.approx(tokens / 1e6 * 2.5, abs=1e-4)
    server.requests = server.tokens = 0  # the warm-up's
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert (server.requests, server.tokens) == (requests, tokens)
    server.shutdown()
