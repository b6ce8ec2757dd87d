"""An on-disk store of model outputs, so an interrupted run resumes and a repeated one is free.

Each result (option probabilities, or a generated text) is written under a key that
hashes everything it depends on: the model and adapter contents, the mode, the exact
prompt, the options and, for sampled text, the seed and sample index. SQLite gives
atomic commits per batch, so a run killed mid-way keeps every finished batch.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(
            self.path, timeout=60, check_same_thread=False
        )
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
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
            with self._lock:
                rows = self._connection.execute(
                    f"SELECT key, value FROM results WHERE key IN ({marks})", chunk
                ).fetchall()
            found.update((key, json.loads(value)) for key, value in rows)
        return found

    def put_many(self, values: Mapping[str, Any]) -> None:
        """Store every (key, value) in one transaction."""
        with self._lock, self._connection:
            self._connection.executemany(
                "INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)",
                [(key, json.dumps(value)) for key, value in values.items()],
            )

    def __len__(self) -> int:
        with self._lock:
            return self._connection.execute("SELECT COUNT(*) FROM results").fetchone()[
                0
            ]
