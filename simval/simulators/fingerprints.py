"""Short content hashes of models and adapters, the model part of on-disk cache keys.

A cached simulation is only valid for the exact weights, tokenizer and chat template
that produced it, so the result store keys on a fingerprint of the model's (and the
adapter's) files rather than on a path or name that may point at other contents
later. Hashing is kept cheap (large weight files are sampled, results memoised)
because it runs on every simulator start.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from simval.errors import ModelError
from simval.simulators.conversion import _default_gguf
from simval.simulators.loading import _check_adapter, _hub_snapshot, _looks_like_hub_id

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
_FINGERPRINTS: dict[tuple[Any, ...], str] = {}


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


def _model_digest(model: str | Path) -> str:
    if isinstance(model, str) and model == "default":
        gguf = _default_gguf()
        return "gguf\0" + _files_digest([(gguf.name, gguf, True)])
    path = Path(model).expanduser()
    if path.is_dir():
        return _folder_digest(path.resolve())
    if isinstance(model, Path) or path.exists() or not _looks_like_hub_id(str(model)):
        raise ModelError(f"model folder {str(model)!r} does not exist")
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
        raise ModelError(
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
