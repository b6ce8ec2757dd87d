"""The request shapes of exact option scoring, answered by a fake engine in the test:
each shape's requests, read back, give every option's summed token log-probabilities,
and the cached shapes send each prompt and option prefix once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simval.simulators.option_requests import (
    MAX_READ_TOKENS,
    SHAPES,
    ReplyError,
    option_requests,
)

VOCAB = 400


def logprob(context: list[int], token: int) -> float:
    """A deterministic next-token log-probability: a fake model's."""
    rng = np.random.default_rng([len(context), sum(context) % 997, *context[-3:]])
    logits = rng.normal(size=VOCAB)
    return float(logits[token] - np.log(np.exp(logits).sum()))


def answer(body: dict) -> list[dict]:
    """A vLLM-like completions engine's choices for one request body."""
    choices = []
    for index, sequence in enumerate(body["prompt"]):
        if body.get("echo"):
            echoed = [None] + [
                logprob(sequence[:k], sequence[k]) for k in range(1, len(sequence))
            ]
            logprobs = {"token_logprobs": echoed}
        elif "logprob_token_ids" in body:
            listed = {
                f"token_id:{t}": logprob(sequence, t) for t in body["logprob_token_ids"]
            }
            logprobs = {"top_logprobs": [listed]}
        else:
            (token,) = body["allowed_token_ids"]
            logprobs = {
                "tokens": [f"token_id:{token}"],
                "token_logprobs": [logprob(sequence, token)],
            }
        choices.append({"index": index, "logprobs": logprobs})
    return choices


def expected(tokens) -> np.ndarray:
    return np.array(
        [
            [
                sum(logprob(ids + option[:k], option[k]) for k in range(len(option)))
                for option in options
            ]
            for ids, options in tokens
        ]
    )


prompts = st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=6)
option = st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=4)


@st.composite
def batches(draw) -> list[tuple[list[int], list[list[int]]]]:
    """Prompts of one item: each with the same number of distinct options, whose
    tokens may differ by prompt (an answer's tokens depend on what precedes it)."""
    count = draw(st.integers(2, 5))
    options = st.lists(option, min_size=count, max_size=count, unique_by=tuple)
    return draw(st.lists(st.tuples(prompts, options), min_size=1, max_size=4))


@given(batches(), st.sampled_from(SHAPES), st.booleans())
def test_every_shape_reads_each_options_summed_log_probability(tokens, shape, serial):
    requests = option_requests(shape, tokens, serial=serial)
    replies = [answer(body) for body in requests.bodies]
    np.testing.assert_allclose(requests.read(replies), expected(tokens), atol=1e-12)
    if serial:
        assert all(len(body["prompt"]) == 1 for body in requests.bodies)


def test_the_cached_shapes_send_each_prefix_once_and_echo_every_option():
    """Strongly agree / Strongly disagree / Agree share a first token: next-token sends
    the prompt and the one shared prefix (2 sequences, 1 request); forced sends one
    request per distinct token to read (each
    sequence once per token read after it); echo sends prompt + option per option."""
    ids = [1, 2, 3, 4]
    options = [[7, 8], [7, 9], [8]]
    tokens = [(ids, options), ([1, 2, 5], options)]
    nexts = option_requests("next-token", tokens, serial=False)
    assert nexts.sequences == 4 and len(nexts.bodies) == 1
    assert nexts.bodies[0]["logprob_token_ids"] == [7, 8, 9]
    forced = option_requests("forced", tokens, serial=False)
    # per prompt: 7 and 8 read at the root, 8 and 9 after 7; one request per token
    assert len(forced.bodies) == 3 and forced.sequences == 8
    echo = option_requests("echo", tokens, serial=False)
    assert echo.sequences == 6 and echo.tokens == sum(
        len(i) + len(o) for i, os in tokens for o in os
    )


def test_a_request_names_at_most_the_engines_limit_of_tokens_to_read():
    """Items with many one-token options across many prompts: requests split where
    their tokens to read would pass vLLM's 128."""
    tokens = [([1, p], [[200 + p * 3 + k] for k in range(3)]) for p in range(100)]
    requests = option_requests("next-token", tokens, serial=False)
    assert len(requests.bodies) > 1
    assert all(len(b["logprob_token_ids"]) <= MAX_READ_TOKENS for b in requests.bodies)
    assert sum(len(b["prompt"]) for b in requests.bodies) == 100


@pytest.mark.parametrize(
    ("shape", "choice"),
    [
        ("next-token", {"index": 0, "logprobs": {"top_logprobs": [{"No": -0.1}]}}),
        (
            "next-token",
            {"index": 0, "logprobs": {"top_logprobs": [{"token_id:3": -0.1}]}},
        ),
        (
            "forced",
            {
                "index": 0,
                "logprobs": {"tokens": ["token_id:9"], "token_logprobs": [-0.1]},
            },
        ),
        ("echo", {"index": 0, "logprobs": {"token_logprobs": [None]}}),
    ],
)
def test_a_reply_without_the_asked_log_probabilities_is_a_reply_error(shape, choice):
    """Keys not by token id, a token not listed, another token generated, no prompt
    log-probabilities: each is named, never read as a number."""
    requests = option_requests(shape, [([1, 2], [[5]])], serial=True)
    with pytest.raises(ReplyError):
        requests.read([[choice] for _ in requests.bodies])


def test_a_prompt_with_more_tokens_to_read_than_the_limit_is_sent_in_chunks():
    """150 one-token options: the prompt goes in two copies, each naming at most 128
    tokens to read, and every option's log-probability is read back."""
    tokens = [([1, 2, 3], [[t] for t in range(200, 350)])]
    requests = option_requests("next-token", tokens, serial=False)
    assert requests.sequences == 2
    assert all(len(b["logprob_token_ids"]) <= MAX_READ_TOKENS for b in requests.bodies)
    replies = [answer(body) for body in requests.bodies]
    np.testing.assert_allclose(requests.read(replies), expected(tokens), atol=1e-12)
