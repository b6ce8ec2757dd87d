"""Shared fixtures: a private answer cache, the example task's respondents as a CSV, and
tiny Llama-architecture causal LMs built offline in a second or two.

torch and transformers are imported inside the model fixtures, so test modules that do
not use them stay fast. When torch is missing the fixtures fail (they never skip):
the test command installs the LLM extras. Seeded processes and the binomial tolerance
live in tests/support.py and tests/calibration.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# A small survey-flavoured corpus the tiny byte-level BPE tokenizer is trained on.
TINY_CORPUS = """\
How old are you? I am 34 years old. I am 61 years old. I am 19 years old.
Do you agree with the following statement? Strongly agree. Agree. Neither agree nor disagree. Disagree. Strongly disagree.
Would you share your health data with your employer? Yes. No. I don't know.
Would you tell your doctor about your income? Yes, I would. No, I would not.
How much do you trust your neighbours? Not at all. A little. Somewhat. A lot. Completely.
On a scale from 0 to 10, how satisfied are you with your life? 0 1 2 3 4 5 6 7 8 9 10
Answer with a number from 1 to 7, where 1 means never and 7 means always.
Please answer the question with one of the options. Answer: Yes. Answer: No. Answer: Strongly agree.
You are a 45-year-old woman from Ohio with a college degree. You work as a nurse.
You are a 23-year-old man from Texas. You are a student and your income is low.
You are a 67-year-old retired teacher living in a small town in Maine. You are married.
You are a 38-year-old Black woman from Georgia. You have two children and work full time.
You are a 52-year-old Hispanic man from California. You own a small business.
You are a 29-year-old Asian American software engineer in Washington. Your income is high.
Gender: female. Gender: male. Age: 18-29, 30-44, 45-64, 65+. Education: high school, bachelor's degree, graduate degree.
Ethnicity: White, Black, Hispanic, Asian, Other. Income: under $30,000, $30,000 to $75,000, over $75,000.
Political views: very liberal, liberal, moderate, conservative, very conservative.
Have you ever disclosed a mental health condition at work? Yes, to my manager. No, never.
If your data were used for research, would you consent? I would consent. I would not consent.
How likely are you to vote in the next election? Very likely. Somewhat likely. Not very likely. Not at all likely.
Which statement is closest to your view? The first one. The second one. Neither of them.
Thank you for taking part in this survey. Your answers are anonymous and confidential.
"""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

BOS, EOS, PAD = "<|im_start|>", "<|im_end|>", "<pad>"


def _build_tiny_llama(folder: Path, *, chat_template: bool, seed: int) -> Path:
    """Train a byte-level BPE tokenizer, build a seeded tiny Llama, save both, and check they reload."""
    import torch
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=640,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(TINY_CORPUS.splitlines(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=BOS, eos_token=EOS, pad_token=PAD
    )
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as in SmolLM2
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        initializer_range=0.1,  # wider than usual, so option probabilities differ visibly
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():  # seeded without touching the global generator
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)

    reloaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    retokenizer = AutoTokenizer.from_pretrained(folder)
    ids = retokenizer("Do you agree? Strongly agree.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits), (
            "tiny model did not reload"
        )
    assert (retokenizer.chat_template is not None) == chat_template
    assert retokenizer.pad_token == PAD and retokenizer.eos_token == EOS
    return folder


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh answer cache for this test (``SIMVAL_CACHE_DIR``), so no test reads
    answers another stored or writes into the user's cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SIMVAL_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def example_csv(tmp_path: Path) -> Path:
    """The example task's first 120 respondents as a CSV (``respondent`` ids first), as
    the commands read a researcher's data."""
    from simval.tasks import load_task

    path = tmp_path / "people.csv"
    load_task("example").human.iloc[:120].to_csv(path, index_label="respondent")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny Llama causal LM (~0.1M parameters) whose tokenizer has a ChatML-like chat template."""
    return _build_tiny_llama(
        tmp_path_factory.mktemp("tiny_chat_llama"), chat_template=True, seed=0
    )


@pytest.fixture(scope="session")
def tiny_plain_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny Llama causal LM like ``tiny_model_dir``, but with no chat template (plain prompts)."""
    return _build_tiny_llama(
        tmp_path_factory.mktemp("tiny_plain_llama"), chat_template=False, seed=1
    )
