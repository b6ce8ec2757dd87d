"""--dry-run: the forecast counts exactly the prompts a run then asks (the result store
counted), stops before any model beyond the warm-up loads, still refuses bad input, and
prices tokens; simval.defaults agrees with the modules whose values it shows."""

from __future__ import annotations

import dataclasses
import http.server
import json
import re
import threading
from pathlib import Path

import pytest
from support import run

from simval import cli_flags
from simval.errors import OptionError
from simval.forecast import (
    ESTIMATE,
    Forecast,
    chat_prompt_tokens,
    prices,
    scoring_forecast,
    total_text,
)
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
        (["validate", "--out", "r.html", "--price", "2.5,10,1"], "--price"),
        (["bench", "--out", "{tmp}/b", "--price", "cheap"], "--price"),
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
        command="validate", model="m", asks=100, tokens=2_500_000, price=(0.4, 0.4),
        seconds_each=0.5, warmup=8,
    )  # fmt: skip
    assert forecast.cost == pytest.approx(1.0)
    assert forecast.seconds == pytest.approx(50.0)
    text = forecast.to_text()
    assert "tokens: 2,500,000" in text and "cost: 1.0000 at 0.4 per million" in text
    assert "50.0 s" in text
    assert Forecast(command="v", model="m", asks=1, tokens=10).cost is None
    served = Forecast(
        command="validate", model="m", asks=100, tokens=2_000_000,
        completion_tokens=100_000, completion_note="1 per scored request",
        price=prices([2.5, 10]),
    )  # fmt: skip
    assert served.cost == pytest.approx(2 * 2.5 + 0.1 * 10)
    text = served.to_text()
    assert "prompt tokens: 2,000,000\n" in text
    assert "completion tokens: 100,000 (1 per scored request)" in text
    assert (
        "cost: 6.0000 at 2.5 per million prompt tokens and 10 per million "
        "completion tokens" in text
    )
    chat = dataclasses.replace(served, estimated=ESTIMATE)
    text = chat.to_text()
    assert f"prompt tokens: about 2,000,000 ({ESTIMATE})" in text
    assert "cost: about 6.0000 at" in text
    assert "cost in all: about 12.0000" in total_text([chat, served])
    assert "cost in all: 12.0000" in total_text([served, served])
    assert prices(3) == (3.0, 3.0) and prices(None) is None
    for bad in (-1, (1, 2, 3), (1, -2), "2.5", float("nan"), True):
        with pytest.raises(OptionError, match=r"^price="):
            prices(bad)
    with pytest.raises(OptionError, match="price=-1"):  # before the simulator is read
        scoring_forecast(None, command="validate", frames=[], price=-1)


@pytest.mark.parametrize(
    "text, pair",
    [("2.5", (2.5, 2.5)), ("2.5,10", (2.5, 10.0)), ("0,0.6", (0.0, 0.6)),
     ("abc", None), ("1,2,3", None), ("-1", None), ("1,", None), ("nan", None),
     ("inf,1", None), ("", None)],
)  # fmt: skip
def test_the_price_flag_takes_in_or_in_and_out(text, pair):
    if pair is not None:
        assert cli_flags.price(text) == pair
        return
    with pytest.raises(OptionError) as refused:
        cli_flags.price(text)
    assert str(refused.value).startswith(f"--price={text!r} is not allowed")


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
    counting the completions requests, the tokens they carry and the tokens they ask
    to generate (``completions``); chat requests (kept
    in ``chats``) get ``_chat_reply``."""

    def __init__(self, model: str) -> None:
        super().__init__(("127.0.0.1", 0), _FakeHandler)
        self.model, self.requests, self.tokens, self.completions = model, 0, 0, 0
        self.chats: list[dict] = []
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
        if self.path.endswith("/chat/completions"):
            self.server.chats.append(payload)
            self._reply(_chat_reply(payload))
            return
        self.server.requests += 1
        self.server.tokens += sum(map(len, payload["prompt"]))
        self.server.completions += len(payload["prompt"]) * payload["max_tokens"]
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
    """The requests, prompt tokens and completion tokens the forecast counts are
    those the server then receives and is asked to generate, and the cost is the
    tokens at --price per million."""
    server = FakeServer(str(tiny_model_dir))
    argv = [
        "validate", EXAMPLE, "--human", example_csv, "--model",
        f"{tiny_model_dir}@{server.url}", "--reps", "2", "--n", "40", "--out",
        tmp_path / "r.html",
    ]  # fmt: skip
    code, out, err = run(capsys, *argv, "--dry-run", "--price", "2.5")
    assert code == 0, err
    requests, tokens, completions = (
        printed(name, out)
        for name in ("requests", "prompt tokens", "completion tokens")
    )
    cost = float(re.search(r"cost: ([\d.]+) at 2.5 per million tokens", out).group(1))
    assert cost == pytest.approx((tokens + completions) / 1e6 * 2.5, abs=1e-4)
    server.requests = server.tokens = server.completions = 0  # the warm-up's
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    received = (server.requests, server.tokens, server.completions)
    assert received == (requests, tokens, completions)
    server.shutdown()


def _chat_reply(payload: dict) -> dict:
    """A chat completion as a hosted API sends it: the options the user turn lists
    ("1. Yes") as the first token's top log-probabilities (-1, -2, ...) when asked for
    them, and the first option as the answer."""
    labels = re.findall(
        r"^\d+\. (.+)$", payload["messages"][-1]["content"], re.MULTILINE
    )
    top = [{"token": label, "logprob": -1.0 - i} for i, label in enumerate(labels)]
    logprobs = {"content": [{"token": labels[0], "top_logprobs": top}]}
    return {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": labels[0]},
                "logprobs": logprobs if payload.get("logprobs") else None,
            }
        ]
    }


def one_word_study(folder: Path) -> Path:
    """The example study with one-word option labels, which a chat API can score."""
    yaml = Path(EXAMPLE).read_text(encoding="utf-8")
    labels = {
        "Not at all concerned": "Calm", "Slightly concerned": "Slight",
        "Somewhat concerned": "Moderate", "Very concerned": "High",
        "Extremely concerned": "Extreme", "Not at all": "Never", "A little": "Little",
        "Quite a lot": "Mostly",
    }  # fmt: skip
    for old, new in labels.items():
        assert f"{old}:" in yaml
        yaml = yaml.replace(f"{old}:", f"{new}:")
    path = folder / "study.yaml"
    path.write_text(yaml, encoding="utf-8")
    return path


def estimated_tokens(payload: dict) -> int:
    """The documented estimate, by hand: characters / 4 rounded up per message, 4
    tokens per message, 3 per request."""
    return sum(-(-len(m["content"]) // 4) + 4 for m in payload["messages"]) + 3


def printed(name: str, text: str) -> int:
    found = re.search(rf"^  {name}: (?:about |at most )?([\d,]+)", text, re.MULTILINE)
    assert found, text
    return int(found.group(1).replace(",", ""))


@pytest.mark.parametrize("mode", ["score", "generate"])
def test_a_chat_api_forecasts_requests_prompt_and_completion_tokens_and_cost(
    capsys, tmp_path, example_csv, mode
):
    """Through a chat API (no tokenizer here): the requests are those the server then
    receives, the prompt tokens the documented estimate of what it receives ("about"),
    the completion tokens the max_tokens it is asked for (1 per scored request;
    max_new_tokens per generated answer, "at most"), and the cost each at its price."""
    server = FakeServer("hosted-model")
    argv = [
        "validate", one_word_study(tmp_path), "--human", example_csv, "--model",
        f"hosted-model@{server.url}", "--api", "chat", "--mode", mode, "--reps", "2",
        "--n", "20", "--out", tmp_path / "r.html",
    ]  # fmt: skip
    code, out, err = run(capsys, *argv, "--dry-run", "--price", "2.5,10")
    assert code == 0, err
    requests, prompt, completion = (
        printed(name, out)
        for name in ("requests", "prompt tokens", "completion tokens")
    )
    assert "prompt tokens: about" in out and "characters / 4" in out
    cost = float(re.search(r"cost: about ([\d.]+) at 2.5 per million prompt", out)[1])
    assert cost == pytest.approx((prompt * 2.5 + completion * 10) / 1e6, abs=1e-4)
    server.chats.clear()  # the warm-up's
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    sent = server.chats
    assert requests == len(sent) > 0
    assert completion == sum(p["max_tokens"] for p in sent)
    assert {p["max_tokens"] for p in sent} == ({1} if mode == "score" else {16})
    by_hand = sum(map(estimated_tokens, sent))
    if mode == "score":
        assert "(1 per scored request)" in out and prompt == by_hand
    else:  # each answer drawn counted at the compared respondents' mean prompt; the
        # run's draws (rectify's under re-drawn arms) differ a little: 2.7% here
        assert "(max_new_tokens=16 per generated answer, an upper bound)" in out
        assert "completion tokens: at most" in out
        assert prompt == pytest.approx(by_hand, rel=0.05)
    server.shutdown()


def test_a_chat_api_counts_prompt_tokens_with_a_tokenizer_it_holds(
    tmp_path, tiny_model_dir
):
    """Where the simulator holds the served model's tokenizer, the prompt tokens are
    counted with its chat template (no "about"): exactly the tokens of the messages
    the server then receives, rendered as the model reads them."""
    from transformers import AutoTokenizer

    from simval.simulators.served import ServedSimulator
    from simval.study import Study
    from simval.tasks import load_task

    study = Study.from_yaml(one_word_study(tmp_path))
    people = load_task("example").human.iloc[:12]
    server = FakeServer("hosted-model")
    simulator = ServedSimulator(
        server.url, "hosted-model", study=study, api="chat", progress=False
    )
    simulator.tokenizer = tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    forecast = scoring_forecast(
        simulator, command="validate", frames=[people], price=(1, 2), warmup=2
    )
    assert forecast.estimated is None and "about" not in forecast.to_text()
    server.chats.clear()  # the warm-up's
    for item in study.items:
        simulator.predict_proba(people, item)
    rendered = [
        tokenizer.apply_chat_template(
            p["messages"], tokenize=False, add_generation_prompt=True
        )
        for p in server.chats
    ]
    by_hand = sum(
        len(tokenizer(t, add_special_tokens=False).input_ids) for t in rendered
    )
    assert forecast.tokens == by_hand
    assert forecast.requests == forecast.completion_tokens == len(server.chats)
    assert forecast.cost == pytest.approx((by_hand + 2 * len(server.chats)) / 1e6)
    messages = server.chats[0]["messages"]  # without a chat template: text + overhead
    tokenizer.chat_template = None
    words = sum(len(tokenizer(m["content"]).input_ids) for m in messages)
    assert chat_prompt_tokens(json.dumps(messages), tokenizer=tokenizer) == (
        words + 4 * len(messages) + 3
    )
    server.shutdown()
