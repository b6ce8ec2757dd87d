"""Finding and loading the language models simval simulates with.

Everything heavy (torch, transformers, peft) is imported inside the functions, so
importing this module costs nothing. simval never downloads a model: a model is
``"default"`` (SmolLM2-135M-Instruct, converted once into the simval cache by
``simval.simulators.conversion``), a local folder, or a hub id whose files are
already in the local Hugging Face cache. Setting ``SIMVAL_ALLOW_DOWNLOAD=1`` lifts
the last restriction. Checking the optional dependencies lives in ``dependencies``,
hashing a model's contents in ``fingerprints``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simval.errors import ModelError, OptionError, SimvalError, check_option
from simval.simulators.conversion import _quiet_transformers, default_model_dir
from simval.simulators.dependencies import require_llm

DTYPES = ("auto", "fast", "float32", "float16", "bfloat16")

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")

RECORD = "simval_finetune.json"
"""The file in an adapter folder that records how ``simval.finetune`` made it."""


def adapter_record(adapter: str | Path) -> dict[str, Any]:
    """The record finetune wrote into an adapter folder, or {} for an adapter made elsewhere."""
    path = Path(adapter) / RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


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


def resolve_model(model: str | Path, *, cache_dir: str | Path | None = None) -> str:
    """Turn a ``model`` argument into something ``from_pretrained`` can load without a download.

    ``"default"`` becomes the converted default model's folder, an existing local
    folder its absolute path; any other string is taken as a hub id and must already
    be in the local Hugging Face cache (or ``SIMVAL_ALLOW_DOWNLOAD=1`` must be set),
    otherwise ModelError names it.
    """
    if isinstance(model, str) and model == "default":
        return str(default_model_dir(cache_root(cache_dir) / "models"))
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists():
        raise ModelError(
            f"model={str(model)!r} is a file, not a model folder; pass the folder that "
            "holds config.json and the weights"
        )
    if isinstance(model, Path) or not _looks_like_hub_id(model):
        raise ModelError(f"model folder {str(model)!r} does not exist")
    if _downloads_allowed() or _hub_snapshot(model) is not None:
        return model
    raise ModelError(
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
        raise ModelError(
            f"{where} does not hold a loadable causal language model "
            f"({type(err).__name__}: {err})"
        ) from err
    lm = lm.to(target)
    if adapter_dir is not None:
        lm = merged_adapter(lm, adapter_dir, where=where)
    lm.eval()
    contiguous_head(lm)

    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(
                f"the tokenizer of {where} has neither a pad nor an end-of-sequence token"
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    generation_config = getattr(lm, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    return lm, tokenizer


@contextlib.contextmanager
def peft_quietly() -> Iterator[None]:
    """Hide peft's call of a renamed transformers method (a FutureWarning meant for
    peft's authors) while an adapter is built or loaded."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated"
        )
        yield


def merged_adapter(lm: Any, adapter: str | Path, *, where: str) -> Any:
    """``lm`` with the peft adapter folder ``adapter`` merged into its weights (the same
    function, without LoRA's extra matrix products per token; for inference only).
    ``lm`` itself is changed: pass a copy to keep it. ``where``: the model, for errors."""
    from peft import PeftModel

    adapter_dir = _check_adapter(adapter)
    try:
        with peft_quietly():
            wrapped = PeftModel.from_pretrained(lm, str(adapter_dir))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise ModelError(
            f"adapter folder {adapter_dir} does not fit {where} "
            f"({type(err).__name__}: {err})"
        ) from err
    return contiguous_head(wrapped.merge_and_unload().to(lm.device).eval())


def contiguous_head(lm: Any) -> Any:
    """Make ``lm``'s output layer read contiguous hidden states; returns ``lm``.

    transformers slices the positions whose logits are wanted (``logits_to_keep``)
    before the output layer. On such a strided 3-D input, torch's matmul folds the
    batch into one matrix product only when the weight needs a gradient; a frozen or
    merged output layer gets a batched product over a copy of its weight per row
    instead: 2x slower in float32, 20x in bfloat16 on this project's CPUs, which made a
    fine-tuned model's whole scoring 1.13x (float32) and 2.72x (bfloat16) slower
    (``benchmarks/bench_scoring.py``). A pre-hook makes the input contiguous; the
    numbers are the same up to float32 rounding. Applied once.
    """
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    if head is not None and not getattr(head, "_simval_contiguous", False):
        head.register_forward_pre_hook(_contiguous_inputs)
        head._simval_contiguous = True
    return lm


def _contiguous_inputs(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.contiguous() if hasattr(a, "contiguous") else a for a in args)


# --- hub ids, devices, precision, folder checks --------------------------------------------


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
        raise ModelError(f"adapter folder {str(adapter)!r} does not exist")
    if not (path / "adapter_config.json").is_file():
        raise ModelError(
            f"adapter folder {str(adapter)!r} holds no adapter_config.json, so it is not a peft adapter"
        )
    return path.resolve()


def _check_model_folder(path: Path) -> None:
    if (path / "config.json").is_file():
        return
    if (path / "adapter_config.json").is_file():
        raise ModelError(
            f"model folder {path} holds a peft adapter, not a model; pass it as adapter= "
            "and its base model as model="
        )
    raise ModelError(
        f"model folder {path} holds no config.json, so it is not a transformers model"
    )
