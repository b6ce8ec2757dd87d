"""What simval writes and what it shows: output paths checked before any work, and
server addresses with their credentials removed.

``check_output`` refuses, in one line and before any file is read or model loaded, an
output that could not be written (a path under a regular file, a folder where a file
is wanted or the reverse, a folder this user cannot write), so a long run never ends
in a traceback that loses its results. ``redact`` is the one way a URL is shown: its
user name, password, query and fragment never reach a message, progress line or report.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from simval.errors import OptionError, refuse


def check_output(
    path: str | Path,
    *,
    flag: str = "--out",
    suffix: str | None = None,
    folder: bool = False,
) -> Path:
    """``path`` as a Path, or OptionError naming ``flag`` unless it can be written: a
    file ending in ``suffix`` (``folder=False``) or a folder (``folder=True``). Missing
    folders on the way are fine (the writers make them, as ``mkdir -p``); the nearest
    one that exists must be a folder this user can write in."""
    path = Path(path)
    if suffix is not None and path.suffix.lower() != suffix:
        raise refuse(flag, str(path), f"a path ending in {suffix}")
    if folder and path.exists() and not path.is_dir():
        raise OptionError(f"{flag} {path}: is a file, not a folder; name a folder")
    if not folder and path.is_dir():
        raise OptionError(f"{flag} {path}: is a folder; name a file in it")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OptionError(
            f"{flag} {path}: {existing} is a file, not a folder; choose another path"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OptionError(
            f"{flag} {path}: cannot write in {existing} (permission denied); "
            "choose another folder"
        )
    if not folder and path.is_file() and not os.access(path, os.W_OK):
        raise OptionError(f"{flag} {path}: the file is read-only; choose another path")
    return path


def seen_from(folder: str | Path, path: str | Path) -> str:
    """``path`` as a file written in ``folder`` names it: relative to that folder, so
    a shared report holds no machine path (``../data/survey.dta``)."""
    return os.path.relpath(Path(path).resolve(), Path(folder).resolve())


_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s'\"]*", re.IGNORECASE)
"""A URL in a text: a scheme, then anything up to white space or a quote."""


def redact(text: str) -> str:
    """``text`` with every URL in it shown without its user name, password, query and
    fragment (``http://user:SECRET@host:8000/v1?api_key=K`` reads
    ``http://host:8000/v1``); a text without a scheme is taken as one address and
    loses what precedes its last ``@``."""
    if not _URL.search(text):
        return _address(text) if "@" in text else text
    return _URL.sub(lambda found: _public(found.group()), text)


def _public(url: str) -> str:
    """One URL without credentials, query and fragment, nor a trailing ``/``."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{_address(rest)}"


def _address(rest: str) -> str:
    """An address without credentials (all up to its last ``@``: a password may hold
    ``/``, ``?`` or ``#``), query and fragment, nor a trailing ``/``."""
    rest = rest.rpartition("@")[2]
    for mark in "?#":
        rest = rest.partition(mark)[0]
    return rest.rstrip("/")
