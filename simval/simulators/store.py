"""An on-disk store of model outputs, so an interrupted run resumes and a repeated one is free.

Each result (option probabilities, or a generated text) is written under a key that
hashes everything it depends on: the model and adapter contents, the mode, the exact
prompt, the options and, for sampled text, the seed and sample index. SQLite gives
atomic commits per batch, so a run killed mid-way keeps every finished batch. A store
that cannot be read or written (a corrupted file, a full disk, a read-only folder) is a
one-line ``StoreError`` naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from simval.errors import SimvalError
from simval.simulators.loading import cache_root

STORE_NAME = "results.sqlite"
"""The store's file in the cache folder (``simval.simulators.loading.cache_root``)."""
CACHE_VARIABLE = "SIMVAL_CACHE_DIR"
"""The environment variable naming the folder of the model cache and the result store."""


class StoreError(SimvalError):
    """The result store cannot be opened, read or written (corrupted, full, read-only)."""


def result_key(*parts: Any) -> str:
    """A stable hex key for the JSON-serialisable ``parts``."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ResultStore:
    """Key -> JSON value table in one SQLite file; ``put_many`` commits a whole batch at once.

    Usable from any thread (a simulator may score in a worker thread), one at a time.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        with self._failing("open"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection = sqlite3.connect(
                self.path, timeout=60, check_same_thread=False
            )
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS results "
                "(key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            self._connection.commit()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection (every ``put_many`` is already committed)."""
        with self._lock:
            self._connection.close()

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The stored values of those ``keys`` that are present."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        for start in range(
            0, len(keys), 500
        ):  # SQLite caps the number of bound parameters
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock, self._failing("read"):
                rows = self._connection.execute(
                    f"SELECT key, value FROM results WHERE key IN ({marks})", chunk
                ).fetchall()
            found.update((key, json.loads(value)) for key, value in rows)
        return found

    def put_many(self, values: Mapping[str, Any]) -> None:
        """Store every (key, value) in one transaction: all of them, or (StoreError)
        none."""
        with self._lock, self._failing("write to"), self._connection:
            self._connection.executemany(
                "INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)",
                [(key, json.dumps(value)) for key, value in values.items()],
            )

    def __len__(self) -> int:
        with self._lock, self._failing("read"):
            return self._connection.execute("SELECT COUNT(*) FROM results").fetchone()[
                0
            ]

    @contextmanager
    def _failing(self, action: str) -> Iterator[None]:
        """SQLite's and the file system's errors as one ``StoreError`` line (``action``:
        open, read, write to) naming the file and what to do."""
        try:
            yield
        except sqlite3.ProgrammingError:  # a misuse (a closed store), not the file's
            raise
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(_problem(self.path, action=action, error=exc)) from exc


def store_path(cache_dir: str | Path | None = None) -> Path:
    """The result store's file in the cache folder (``cache_root``: ``cache_dir``, else
    $SIMVAL_CACHE_DIR, else ~/.cache/simval)."""
    try:
        return cache_root(cache_dir) / STORE_NAME
    except OSError as exc:
        raise StoreError(
            f"cannot make the cache folder of the result store: {exc}; set "
            f"{CACHE_VARIABLE} to a folder that can be written (cache_dir= in Python)"
        ) from exc


def check_store(cache_dir: str | Path | None = None) -> None:
    """Open and close the result store, so a broken one (``StoreError``) is named
    before any model loads."""
    ResultStore(store_path(cache_dir)).close()


def _problem(path: Path, *, action: str, error: BaseException) -> str:
    """What went wrong with the store at ``path`` and what to do, in one line."""
    text = " ".join(str(error).split()) or type(error).__name__
    elsewhere = f"or set {CACHE_VARIABLE} to a folder elsewhere (cache_dir= in Python)"
    lowered = text.lower()
    if "full" in lowered or "no space" in lowered:
        fix = f"free space on its disk, {elsewhere}"
    elif "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        fix = f"delete it (only stored model outputs are lost), {elsewhere}"
    else:
        fix = f"check that it can be written, delete it, {elsewhere}"
    return f"cannot {action} the result store {path}: {text}; {fix}"
