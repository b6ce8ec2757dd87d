"""Model specs and the backend registry: which simulator a ``--model`` text names.

A spec (``NAME=PATH[:ADAPTER]``, ``NAME=PATH:pilot`` or ``NAME=SERVED_MODEL@URL``,
``NAME=SERVED_MODEL@URL1,URL2`` for replicas of one server) is parsed into a
``ModelSpec``; ``build_simulator`` hands it to the backend that serves it.
Each backend is one ``register_backend`` entry (a name, which specs it serves, and its
constructor), as lm-evaluation-harness registers its ``LM`` backends; backends are
asked newest first, so one registered later (in its own module) can take over a kind
of spec from the in-process fallback. Constructors import their backend lazily, which
keeps ``import simval`` free of torch and httpx. A server address is shown only through
``redact``: the user name, password, query and fragment of a URL never reach a message,
a progress line or a report.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simval.errors import ModelError, OptionError
from simval.outputs import redact
from simval.simulators.loading import adapter_record
from simval.simulators.store import check_store

if TYPE_CHECKING:
    from simval.simulators.base import Simulator
    from simval.study import Study


@dataclass(frozen=True)
class ModelSpec:
    """One leaderboard entry: a display name, a model (folder, hub id or "default") and
    an adapter folder, or a model served at ``server`` (an OpenAI-compatible API root,
    or several replicas' roots joined by commas: ``servers``); ``pilot``: fine-tune the
    model on each task's pilot first (``bench_task``)."""

    name: str
    model: str
    adapter: str | None = None
    server: str | None = None
    pilot: bool = False

    @property
    def servers(self) -> tuple[str, ...]:
        """Each replica's API root in ``server`` (split at a comma before a scheme)."""
        if not self.server:
            return ()
        return tuple(REPLICAS.split(self.server))

    def __str__(self) -> str:
        """The spec as the user wrote it, with the server's address ``redact``-ed."""
        if self.server:
            return f"{self.name}={self.model}@{self._shown_server()}"
        tail = f":{PILOT}" if self.pilot else f":{self.adapter}" if self.adapter else ""
        return f"{self.name}={self.model}{tail}"

    def __repr__(self) -> str:
        """The fields, with the server's address ``redact``-ed."""
        server = self._shown_server() if self.server else None
        return (
            f"ModelSpec(name={self.name!r}, model={self.model!r}, "
            f"adapter={self.adapter!r}, server={server!r}, pilot={self.pilot!r})"
        )

    def _shown_server(self) -> str:
        """Every replica's address ``redact``-ed on its own (a credential of one
        never shows through another's)."""
        return ",".join(redact(url) for url in self.servers)


PILOT = "pilot"
"""The adapter of a spec that asks for fine-tuning on each task's pilot
(``tuned=default:pilot``); an adapter folder of that name is written ``./pilot``."""

REPLICAS = re.compile(r"\s*,\s*(?=https?://)", re.IGNORECASE)
"""Where a served spec's address text splits into replicas: a comma before a scheme."""

SPEC_FORMS = (
    "NAME=PATH, NAME=PATH:ADAPTER, NAME=PATH:pilot or NAME=SERVED_MODEL@URL[,URL...]"
)


def parse_model_spec(text: str) -> ModelSpec:
    """Parse ``NAME=PATH[:ADAPTER]`` (``smollm=default:adapters/smollm-pilot``),
    ``NAME=PATH:pilot`` (fine-tuned on each task's pilot) or ``NAME=SERVED_MODEL@URL``
    (``big=llama-70b@http://gpu-box:8000/v1``; replicas of one server joined by
    commas: ``big=llama-70b@http://gpu1:8000/v1,http://gpu2:8000/v1``)."""
    name, equals, rest = text.partition("=")
    served = re.fullmatch(r"([^@]+)@(https?://\S+)", rest.strip(), re.IGNORECASE)
    if served:
        model, server, adapter = served.group(1), served.group(2), ""
    else:
        model, _, adapter = rest.partition(":")
        server = None
    if not equals or not name.strip() or not model.strip():
        raise OptionError(
            f"--model {redact(text)!r} must read {SPEC_FORMS}, e.g. base=default"
        )
    if not served and "@" in model and not Path(model.strip()).exists():
        model, _, address = rest.partition("@")
        raise OptionError(
            f"--model {name.strip()}={model.strip()}@{redact(address.strip())}: a "
            "server's address starts with http:// or https://, e.g. "
            f"{name.strip()}={model.strip()}@http://host:8000/v1"
        )
    tuned = adapter.strip() == PILOT
    return ModelSpec(
        name=name.strip(), model=model.strip(),
        adapter=None if tuned else adapter.strip() or None, server=server, pilot=tuned,
    )  # fmt: skip


def check_specs(specs: Sequence[ModelSpec]) -> None:
    """Specs benchmarked together: at least one, distinct names, at most one fine-tuned
    on the pilot (its adapter is ``adapter`` in the task's folder), every adapter
    folder present."""
    names = [spec.name for spec in specs]
    if not names:
        raise OptionError("give at least one --model NAME=PATH to benchmark")
    if len(set(names)) < len(names):
        raise OptionError(f"--model names must differ; got {', '.join(names)}")
    tuned = [spec.name for spec in specs if spec.pilot]
    if len(tuned) > 1:
        raise OptionError(
            f"at most one --model may be fine-tuned on the pilot; got {', '.join(tuned)}"
        )
    pilot_rows_of(list(specs))


def pilot_rows_of(specs: list[ModelSpec]) -> set[Any]:
    """Every respondent any of the adapters was trained on (they must not be evaluated)."""
    rows: set[Any] = set()
    for spec in specs:
        if spec.adapter:
            if not Path(spec.adapter).is_dir():
                raise ModelError(f"adapter folder {spec.adapter!r} does not exist")
            rows |= set(adapter_record(spec.adapter).get("pilot_index", ()))
    return rows


Constructor = Callable[..., "Simulator"]
"""A backend's constructor: ``(spec, *, study, mode, api, api_key_env) -> Simulator``;
it reads the keywords that apply to it and imports its backend only when called."""


@dataclass(frozen=True)
class Backend:
    """A kind of model spec: its ``name``, ``serves`` (does a spec name this backend)
    and ``build`` (the simulator for such a spec)."""

    name: str
    serves: Callable[[ModelSpec], bool]
    build: Constructor


BACKENDS: dict[str, Backend] = {}
"""Every backend by name, in the order registered; ``build_simulator`` asks them newest
first, and the first that serves a spec builds it."""


def register_backend(
    name: str, *, serves: Callable[[ModelSpec], bool]
) -> Callable[[Constructor], Constructor]:
    """Register the decorated constructor as backend ``name`` for the specs ``serves``
    accepts (asked before the backends registered before it)."""

    def register(build: Constructor) -> Constructor:
        if name in BACKENDS:
            raise OptionError(f"a backend named {name!r} is already registered")
        BACKENDS[name] = Backend(name=name, serves=serves, build=build)
        return build

    return register


def backend_of(spec: ModelSpec) -> Backend:
    """The newest registered backend that serves ``spec``."""
    for backend in reversed(BACKENDS.values()):
        if backend.serves(spec):
            return backend
    raise OptionError(f"--model {spec}: no backend serves it")


def build_simulator(
    spec: ModelSpec,
    *,
    study: Study,
    mode: str = "score",
    api: str = "completions",
    api_key_env: str | None = None,
) -> Simulator:
    """The simulator a spec names, answering in ``mode``: in-process (``HFSimulator``)
    or served (``ServedSimulator`` through ``api``, with the API key from
    ``api_key_env``)."""
    build = backend_of(spec).build
    check_store()  # a broken result store is named before any model loads
    return build(spec, study=study, mode=mode, api=api, api_key_env=api_key_env)


@register_backend("hf", serves=lambda spec: True)
def _hf(spec: ModelSpec, *, study: Study, mode: str, **_served: Any) -> Simulator:
    """A local or hub model, with its adapter, in-process (``NAME=PATH[:ADAPTER]``):
    the fallback, for every spec no later backend serves; the served-only keywords
    (``api``, ``api_key_env``) do not apply."""
    from simval.simulators.hf import HFSimulator

    return HFSimulator(spec.model, study=study, adapter=spec.adapter, mode=mode)


@register_backend("served", serves=lambda spec: bool(spec.server))
def _served(
    spec: ModelSpec, *, study: Study, mode: str, api: str, api_key_env: str | None
) -> Simulator:
    """A model behind an OpenAI-compatible server (``NAME=SERVED_MODEL@URL``), or
    several replicas of it (``@URL1,URL2``)."""
    from simval.simulators.served import ServedSimulator

    return ServedSimulator(
        spec.servers, spec.model, study=study, mode=mode, api=api,
        api_key_env=api_key_env,
    )  # fmt: skip
