"""The ``simval`` command: task, validate, finetune, rectify, plan, bench and demo.

Exit status 0 on success (bare ``simval`` prints the help), 2 on bad input with one
line on stderr naming the culprit (checked before any model is loaded where
possible), 1 on anything else.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pandas as pd
import typer
from typer.core import TyperCommand

from simval.bench import DEMO_RESPONDENTS, DEMO_TRAINING, PILOT_SHARE, TASK_SUITES
from simval.errors import OptionError, SimvalError
from simval.finetune import Strategy, finetune
from simval.results import Validation
from simval.runtime import prepare_torch
from simval.simulators.hf import Mode
from simval.simulators.served import Api
from simval.study import Study
from simval.tasks import TASKS

if TYPE_CHECKING:
    from simval.aggregate import Aggregate
    from simval.bench import Benchmark
    from simval.rectify import Rectified

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class _Command(TyperCommand):
    """A command whose usage line names its arguments plainly: ``STUDY``, where typer
    writes ``{STUDY}``, which reads like a placeholder left unfilled."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [piece.removeprefix("{").removesuffix("}") for piece in pieces]


Reps = Annotated[
    int,
    typer.Option(min=1, metavar="N", help="Replicate synthetic samples per simulator."),
]
Seed = Annotated[int, typer.Option(metavar="SEED", help="Seed of every random step.")]
Count = Annotated[
    int | None,
    typer.Option(
        "--n",
        min=10,
        metavar="N",
        help="Compare on this many respondents, drawn at random (default: all).",
    ),
]
StudyFile = Annotated[
    Path,
    typer.Argument(
        metavar="STUDY",
        help="The study declaration (YAML), e.g. one written by simval task.",
    ),
]
TaskName = Annotated[
    str,
    typer.Argument(metavar="TASK", help=f"A built-in task: {' or '.join(TASKS)}."),
]
Human = Annotated[
    Path,
    typer.Option(
        metavar="FILE.csv",
        help="CSV of the human respondents: persona, treatment and item columns.",
    ),
]
Model = Annotated[
    str,
    typer.Option(
        metavar="MODEL",
        help='A model folder, a cached hub id, or "default" (SmolLM2-135M).',
    ),
]
ModelOrServed = Annotated[
    str,
    typer.Option(
        "--model",
        metavar="MODEL",
        help='A model folder, a cached hub id, "default" (SmolLM2-135M), or '
        "SERVED_MODEL@URL for a model on an OpenAI-compatible server (vLLM, SGLang; "
        "URL like http://host:8000/v1).",
    ),
]
ApiKeyEnv = Annotated[
    str | None,
    typer.Option(
        metavar="VARIABLE",
        help="Environment variable holding the API key of served models (never "
        "stored or shown).",
    ),
]
AnswerMode = Annotated[
    Mode,
    typer.Option(
        "--mode",
        metavar="MODE",
        help="score: read each option's probability; generate: sample an answer and "
        "parse it.",
    ),
]
ServedApi = Annotated[
    Api,
    typer.Option(
        "--api",
        metavar="API",
        help="How served models are asked: completions (exact option scoring, vLLM "
        "and SGLang) or chat (chat-only APIs; scoring reads one-word options from "
        "the first token's top log-probabilities).",
    ),
]
Adapter = Annotated[
    Path | None,
    typer.Option(
        metavar="FOLDER",
        help="A LoRA adapter folder (from simval finetune); the respondents it was "
        "trained on are left out.",
    ),
]
SUITES = "; ".join(f"{name}: {' '.join(tasks)}" for name, tasks in TASK_SUITES.items())
"""The task suites ``simval bench --task`` takes, with the tasks each stands for."""
TRAINING = inspect.signature(finetune).parameters
"""``simval.finetune.finetune``'s keywords: the finetune command's defaults are its own."""
DEMO_FLAGS = " ".join(
    f"--{key.replace('_', '-')} {value}" for key, value in DEMO_TRAINING.items()
)
"""The finetune flags that train as ``simval demo`` does (``simval.bench.DEMO_TRAINING``)."""


Epochs = Annotated[
    int, typer.Option(min=1, metavar="N", help="Passes over the pilot's examples.")
]
LearningRate = Annotated[
    float,
    typer.Option(
        metavar="RATE", help="Learning rate of the LoRA weights (AdamW), above 0."
    ),
]
Layers = Annotated[
    int | None,
    typer.Option(
        min=1,
        metavar="N",
        help="Put LoRA on the last N transformer blocks only; the blocks below run "
        "forward only, which is cheaper (simval finetune without it: every block).",
    ),
]
BatchSize = Annotated[
    int,
    typer.Option(
        min=1,
        metavar="N",
        help="Examples per training step (those of one item and arm together).",
    ),
]


def _checked_lr(lr: float) -> None:
    """--lr must be a positive number (typer cannot state an open bound)."""
    if not 0 < lr < math.inf:
        raise OptionError(f"--lr {lr:g} must be a positive number")


@contextmanager
def _training_flags() -> Iterator[None]:
    """Name finetune's refusals by the flag given (``--layers 40`` for a model of 30
    blocks, not the keyword ``layers=40``)."""
    try:
        yield
    except OptionError as exc:
        raise OptionError(str(exc).replace("layers=", "--layers ")) from exc


def _print_version(value: bool) -> None:
    """``--version``: the installed simval distribution's version, then stop."""
    if value:
        typer.echo(f"simval {version('simval')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print simval's version and exit.",
        ),
    ] = False,
) -> None:
    """Can LLM-simulated respondents stand in for your humans? Measure it.

    New here? simval task disclosure --out mystudy writes a study and its data to try
    the other commands on; simval demo runs the whole comparison.
    """


@app.command("task", cls=_Command)
def task_command(
    task: TaskName,
    out: Annotated[
        Path,
        typer.Option(
            metavar="FOLDER",
            help="Folder for study.yaml and data.csv (made if missing; existing files "
            "are never overwritten).",
        ),
    ],
    seed: Annotated[
        int, typer.Option(metavar="SEED", help="Seed of the simulated population.")
    ] = 0,
) -> None:
    """Write a built-in task's study.yaml and its respondents (data.csv: a simulated
    population, or a real survey's respondents) to try validate, finetune and bench on."""
    from simval.tasks import load_task, write_task

    loaded = load_task(task, seed=seed)
    study, data = write_task(loaded, out_dir=out)
    kind = (
        f"respondents of a SIMULATED reference population, seed {seed}, not human data"
        if loaded.simulated
        else f"REAL respondents: {loaded.source}"
    )
    typer.echo(
        f"study: {study}\n"
        f"data: {data} ({len(loaded.human)} {kind})\n"
        f"next: simval finetune {study} --human {data} --model default --pilot-frac 0.1 "
        f"{DEMO_FLAGS} --out adapters/pilot10"
    )


@app.command("validate", cls=_Command)
def validate_command(
    study: StudyFile,
    human: Human,
    model: ModelOrServed,
    out: Annotated[
        Path,
        typer.Option(
            metavar="REPORT.html",
            help="Report to write (.html; a .md twin goes beside it).",
        ),
    ],
    adapter: Adapter = None,
    mode: AnswerMode = "score",
    api: ServedApi = "completions",
    api_key_env: ApiKeyEnv = None,
    reps: Reps = 20,
    seed: Seed = 0,
    n: Count = None,
) -> None:
    """Compare one model's simulated respondents with the humans; write a report."""
    from simval.bench import (
        RESAMPLING,
        ModelSpec,
        bench,
        build_simulator,
        evaluation_sample,
        parse_model_spec,
        pilot_rows_of,
    )
    from simval.report import write_report

    _check_suffix(out, ".html")
    declared, people = _study_and_human(study, human)
    spec = parse_model_spec(f"model={model}")
    if not spec.server:  # a local model: the adapter comes from --adapter
        spec = ModelSpec("model", model, str(adapter) if adapter else None)
    pilot = pilot_rows_of([spec])
    compared = evaluation_sample(people, exclude=pilot, n=n, seed=seed)
    missing = _echo_missing_personas(declared, compared)
    simulator = build_simulator(
        spec, study=declared, mode=mode, api=api, api_key_env=api_key_env
    )
    result = bench({"model": simulator}, compared, declared, reps=reps, seed=seed)
    notes = [f"Respondents: {len(compared)} from {human}.", *missing]
    if result.inference_note:
        notes.append(f"{result.inference_note.capitalize()}.")
    if pilot:
        notes.append(
            f"{len(pilot)} pilot respondents the adapter was trained on are left out."
        )
    paths = write_report(
        result.validations, out=out, title=f"simval report: {study.name}", notes=notes,
        references=(RESAMPLING,), rectified=result.rectified,
    )  # fmt: skip
    _print_table(result.validations, references=(RESAMPLING,))
    _print_gains(result)
    typer.echo(f"report: {paths[0]}\nmarkdown: {paths[1]}")


@app.command(
    "finetune",
    cls=_Command,
    help="Fine-tune a LoRA adapter on a pilot drawn from the human respondents.\n\n"
    "Give exactly one of --pilot-frac and --pilot-n. The defaults put LoRA on every "
    "block for several epochs, which is slow on a CPU; simval demo's adapter was "
    f"trained with {DEMO_FLAGS}, about 3x cheaper.",
)
def finetune_command(
    study: StudyFile,
    human: Human,
    model: Model,
    out: Annotated[
        Path,
        typer.Option(metavar="FOLDER", help="Folder the LoRA adapter is written to."),
    ],
    pilot_frac: Annotated[
        float | None,
        typer.Option(
            metavar="FRAC",
            help="Share of the respondents to train on, strictly between 0 and 1; "
            "give this or --pilot-n.",
        ),
    ] = None,
    pilot_n: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Number of respondents to train on (per arm with per_arm); give this "
            "or --pilot-frac.",
        ),
    ] = None,
    strategy: Annotated[
        Strategy,
        typer.Option(
            metavar="STRATEGY",
            help="Pilot design: random (a simple random sample), balanced (the same "
            "number from each level of --by) or per_arm (the share or number from "
            "each arm).",
        ),
    ] = "random",
    by: Annotated[
        list[str] | None,
        typer.Option(
            metavar="COLUMN",
            help="Column a balanced or per-arm pilot is drawn by, repeated for several "
            "(default: the study's treatment columns).",
        ),
    ] = None,
    epochs: Epochs = TRAINING["epochs"].default,
    lr: LearningRate = TRAINING["lr"].default,
    layers: Layers = TRAINING["layers"].default,
    batch_size: BatchSize = TRAINING["batch_size"].default,
    seed: Seed = 0,
) -> None:
    """Fine-tune a LoRA adapter on a pilot; flag values are checked before any file is read."""
    from simval.finetune import pilot

    if (pilot_frac is None) == (pilot_n is None):
        raise OptionError("give exactly one of --pilot-frac and --pilot-n")
    if pilot_frac is not None and not 0 < pilot_frac < 1:
        raise OptionError(
            f"--pilot-frac {pilot_frac:g} must lie strictly between 0 and 1"
        )
    _checked_lr(lr)
    declared, people = _study_and_human(study, human)
    columns = by or list(declared.treatment) or None
    if strategy != "random" and not columns:
        raise OptionError(
            f"--strategy {strategy} needs --by (the study has no treatment)"
        )
    unknown = [column for column in by or () if column not in people.columns]
    if unknown:
        raise OptionError(f"--by {', '.join(unknown)}: no such column in {human}")
    size = f"--pilot-frac {pilot_frac:g}" if pilot_n is None else f"--pilot-n {pilot_n}"
    try:
        pilot_df, holdout = pilot(
            people, frac=pilot_frac, n=pilot_n, strategy=strategy, seed=seed,
            by=None if strategy == "random" else columns,
        )  # fmt: skip
    except OptionError as exc:  # the data cannot give a pilot of that size
        raise OptionError(f"{size}: {exc}") from exc
    with _training_flags():
        folder = finetune(
            model, pilot_df, declared, out, epochs=epochs, lr=lr, layers=layers,
            batch_size=batch_size, seed=seed,
        )  # fmt: skip
    typer.echo(
        f"adapter: {folder} (trained on {len(pilot_df)} respondents; "
        f"{len(holdout)} held out for validation)"
    )


Labeled = Annotated[
    float | None,
    typer.Option(
        "--labeled-frac",
        metavar="FRAC",
        help="Use this share of the humans (drawn at random) as the labeled ones, "
        "strictly between 0 and 1; the other humans' personas become simulated-only "
        "respondents, and every human's own estimates are shown beside.",
    ),
]
LabeledN = Annotated[
    int | None,
    typer.Option(
        "--labeled-n",
        min=2,
        metavar="N",
        help="As --labeled-frac, with this number of humans.",
    ),
]
Unlabeled = Annotated[
    int | None,
    typer.Option(
        "--unlabeled",
        min=1,
        metavar="N",
        help="Simulated-only respondents: N of the humans' personas re-drawn with "
        "the treatment re-randomised.",
    ),
]
Personas = Annotated[
    Path | None,
    typer.Option(
        "--personas",
        metavar="FILE.csv",
        help="Simulated-only respondents: a CSV of personas drawn from the population "
        "the humans come from (arms drawn where it has no treatment column).",
    ),
]
Lam = Annotated[
    str,
    typer.Option(
        "--lam",
        metavar="LAMBDA",
        help="tuned (a λ per term), tuned_overall (one λ per formula), or a number "
        "in [0, 1] (0: humans only).",
    ),
]
Alpha = Annotated[
    float,
    typer.Option(metavar="ALPHA", help="1 − the confidence level of the intervals."),
]


@app.command("rectify", cls=_Command)
def rectify_command(
    study: StudyFile,
    human: Human,
    model: ModelOrServed,
    out: Annotated[
        Path,
        typer.Option(
            metavar="REPORT.html",
            help="Report to write (.html; a .md twin and a .csv of the table beside).",
        ),
    ],
    adapter: Adapter = None,
    labeled_frac: Labeled = None,
    labeled_n: LabeledN = None,
    unlabeled: Unlabeled = None,
    personas: Personas = None,
    lam: Lam = "tuned",
    alpha: Alpha = 0.05,
    mode: AnswerMode = "score",
    api: ServedApi = "completions",
    api_key_env: ApiKeyEnv = None,
    seed: Seed = 0,
) -> None:
    """Valid estimates of the study's formulas from humans plus simulated-only
    respondents (PPI++); write a report.

    Give one source of simulated-only respondents: --unlabeled, --personas, or
    --labeled-frac / --labeled-n (the other humans' personas).
    """
    from simval.report.inference import write_rectified_report

    _check_suffix(out, ".html")
    job = _rectify_job(
        study, human, model, adapter=adapter, labeled_frac=labeled_frac,
        labeled_n=labeled_n, unlabeled=unlabeled, personas=personas, lam=lam,
        alpha=alpha, mode=mode, api=api, api_key_env=api_key_env, seed=seed,
    )  # fmt: skip
    rectified = {"model": job.result}
    paths = write_rectified_report(
        rectified, out=out, title=f"simval valid inference: {study.name}",
        notes=job.notes, reference=job.reference,
    )  # fmt: skip
    table = out.with_suffix(".csv")
    job.result.table.to_csv(table, index=False)
    _print_rectified(job)
    typer.echo(f"report: {paths[0]}\nmarkdown: {paths[1]}\ntable: {table}")


@app.command("plan", cls=_Command)
def plan_command(
    study: StudyFile,
    human: Human,
    model: ModelOrServed,
    cost_human: Annotated[
        float, typer.Option(metavar="COST", help="Cost of one human respondent.")
    ],
    cost_simulated: Annotated[
        float,
        typer.Option(
            metavar="COST", help="Cost of one simulated respondent (above 0)."
        ),
    ],
    out: Annotated[
        Path, typer.Option(metavar="PLAN.csv", help="The plan's table (CSV).")
    ],
    effective_n: Annotated[
        float | None,
        typer.Option(metavar="N", help="Target: the precision of N humans."),
    ] = None,
    half_width: Annotated[
        float | None,
        typer.Option(
            metavar="WIDTH",
            help="Target: this CI half-width on every term (in its own units).",
        ),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(metavar="COST", help="Target: the most precise mix for this."),
    ] = None,
    adapter: Adapter = None,
    unlabeled: Unlabeled = None,
    personas: Personas = None,
    fractions: Annotated[
        str | None,
        typer.Option(
            metavar="F,F,...",
            help="Also ask whether to spend the humans given on fine-tuning: for each "
            "share (e.g. 0,0.25,0.5) fine-tune LoRA on that share of them, as simval "
            f"demo trains ({DEMO_FLAGS}), and rectify with the rest; writes "
            "PLAN_finetune.csv and a figure per formula.",
        ),
    ] = None,
    layers: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="With --fractions: LoRA on the last N transformer blocks.",
        ),
    ] = DEMO_TRAINING["layers"],
    alpha: Alpha = 0.05,
    mode: AnswerMode = "score",
    api: ServedApi = "completions",
    api_key_env: ApiKeyEnv = None,
    seed: Seed = 0,
) -> None:
    """How many humans and simulated respondents to use, from a pilot: the humans
    given here, with the simulator's answers for them and for simulated-only personas
    (--unlabeled or --personas). Give exactly one of --effective-n, --half-width and
    --budget."""
    from simval.plan import plan

    _check_suffix(out, ".csv")
    targets = {"effective_n": effective_n, "half_width": half_width, "budget": budget}
    if sum(v is not None for v in targets.values()) != 1:
        raise OptionError(
            "give exactly one of --effective-n, --half-width and --budget"
        )
    for flag, value in (
        ("--cost-human", cost_human),
        ("--cost-simulated", cost_simulated),
    ):
        if not 0 < value < math.inf:
            raise OptionError(f"{flag} {value:g} must be a positive number")
    shares = _fractions(fractions)
    if shares and (adapter is not None or "@" in model):
        raise OptionError("--fractions fine-tunes a local base model: drop --adapter")
    job = _rectify_job(
        study, human, model, adapter=adapter, labeled_frac=None, labeled_n=None,
        unlabeled=unlabeled, personas=personas, lam="tuned", alpha=alpha,
        mode=mode, api=api, api_key_env=api_key_env, seed=seed,
    )  # fmt: skip
    found = plan(
        job.result, cost_human=cost_human, cost_simulated=cost_simulated, **targets
    )
    found.table.to_csv(out, index=False)
    for row in found.table.to_dict("records"):
        if row["term"] != "Intercept":
            typer.echo(found.sentence(row["formula"], row["term"]))
    typer.echo(f"plan: {out}")
    if shares:
        _finetune_or_rectify(
            job, model=model, out=out, fractions=shares, seed=seed, layers=layers
        )


def _fractions(text: str | None) -> list[float]:
    """--fractions: comma-separated shares in [0, 1)."""
    if text is None:
        return []
    try:
        shares = [float(part) for part in text.split(",")]
    except ValueError:
        shares = [math.nan]
    if not all(0 <= share < 1 for share in shares):
        raise OptionError(
            f"--fractions {text} must be comma-separated numbers in [0, 1), e.g. 0,0.25,0.5"
        )
    return shares


def _finetune_or_rectify(
    job: _RectifyJob,
    *,
    model: str,
    out: Path,
    fractions: list[float],
    seed: int,
    layers: int,
) -> None:
    """The fine-tune-or-rectify table and figures beside the plan."""
    from simval.plan import finetune_or_rectify
    from simval.report.plots import png

    result = job.result
    found = finetune_or_rectify(
        result.study, job.labeled, unlabeled=job.unlabeled, model=model,
        adapters_dir=out.with_name(f"{out.stem}_adapters"), fractions=fractions,
        alpha=result.alpha, seed=seed, **{**DEMO_TRAINING, "layers": layers},
    )  # fmt: skip
    table = out.with_name(f"{out.stem}_finetune.csv")
    found.table.to_csv(table, index=False)
    shown = found.table[found.table["term"] != "Intercept"]
    typer.echo(
        shown[
            ["fraction", "n_finetune", "n_labeled", "formula", "term", "effective_n"]
        ].to_string(index=False)
    )
    typer.echo(f"fine-tune or rectify: {table}")
    for i, model_ in enumerate(result.study.models, start=1):
        figure = out.with_name(f"{out.stem}_finetune_{i}.png")
        figure.write_bytes(png(found.figure(model_.formula)))
        typer.echo(f"figure: {figure}")


@dataclass(frozen=True)
class _RectifyJob:
    """What ``simval rectify`` and ``simval plan`` computed, and what to say about it."""

    result: Rectified
    reference: pd.DataFrame | None
    notes: tuple[str, ...]
    labeled: pd.DataFrame
    unlabeled: int | pd.DataFrame


def _rectify_job(
    study: Path,
    human: Path,
    model: str,
    *,
    adapter: Path | None,
    labeled_frac: float | None,
    labeled_n: int | None,
    unlabeled: int | None,
    personas: Path | None,
    lam: str,
    alpha: float,
    mode: str,
    api: str,
    api_key_env: str | None,
    seed: int,
) -> _RectifyJob:
    """Check every flag and file, then load the model and rectify."""
    from simval.bench import ModelSpec, build_simulator, parse_model_spec, pilot_rows_of
    from simval.finetune import pilot as draw_pilot
    from simval.rectify import check_inputs, rectify
    from simval.regression import fit
    from simval.tasks import read_human

    weight = _lam(lam)
    if labeled_frac is not None and labeled_n is not None:
        raise OptionError("give at most one of --labeled-frac and --labeled-n")
    if labeled_frac is not None and not 0 < labeled_frac < 1:
        raise OptionError(
            f"--labeled-frac {labeled_frac:g} must lie strictly between 0 and 1"
        )
    subsample = labeled_frac is not None or labeled_n is not None
    sources = [
        f for f, v in (("--unlabeled", unlabeled), ("--personas", personas)) if v
    ]
    if len(sources) > 1 or not (sources or subsample):
        raise OptionError(
            "give one source of simulated-only respondents: --unlabeled N, --personas "
            "FILE.csv, or --labeled-frac / --labeled-n (the other humans' personas)"
        )
    declared, people = _study_and_human(study, human)
    spec = parse_model_spec(f"model={model}")
    if not spec.server:  # a local model: the adapter comes from --adapter
        spec = ModelSpec("model", model, str(adapter) if adapter else None)
    trained = pilot_rows_of([spec])
    people = people.drop(index=[i for i in trained if i in people.index])
    notes = [f"Humans: {len(people)} from {human}."]
    if trained:
        notes.append(
            f"{len(trained)} respondents the adapter was trained on are left out."
        )
    labeled, reference = people, None
    if subsample:
        size = (
            f"--labeled-frac {labeled_frac:g}" if labeled_n is None
            else f"--labeled-n {labeled_n}"
        )  # fmt: skip
        try:
            labeled, rest = draw_pilot(
                people, frac=labeled_frac, n=labeled_n, seed=seed
            )
        except OptionError as exc:
            raise OptionError(f"{size}: {exc}") from exc
        reference = pd.concat(
            [
                fit(m.formula, people, family=m.family, cov=m.cov).table.assign(
                    formula=m.formula
                )
                for m in declared.models
            ]
        )
        notes.append(
            f"Labeled: {len(labeled)} humans drawn at random ({size}); the other "
            f"{len(rest)} humans' personas are the simulated-only respondents, and "
            f"'all humans' is the fit to all {len(people)}."
        )
    simulated: int | pd.DataFrame
    if personas is not None:
        simulated = read_human(personas)
        notes.append(f"Simulated-only personas: {len(simulated)} from {personas}.")
    elif unlabeled is not None:
        simulated = unlabeled
    else:
        simulated = rest.drop(columns=list(declared.item_names))
    check_inputs(declared, labeled, unlabeled=simulated, lam=weight, alpha=alpha)
    simulator = build_simulator(
        spec, study=declared, mode=mode, api=api, api_key_env=api_key_env
    )
    result = rectify(
        declared, labeled, simulator, unlabeled=simulated, lam=weight, alpha=alpha,
        seed=seed,
    )  # fmt: skip
    return _RectifyJob(
        result=result, reference=reference, notes=tuple(notes), labeled=labeled,
        unlabeled=simulated,
    )  # fmt: skip


def _lam(text: str) -> float | str:
    """--lam: 'tuned', 'tuned_overall' or a number in [0, 1]."""
    if text in ("tuned", "tuned_overall"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise OptionError(
            f"--lam {text} must be tuned, tuned_overall or a number in [0, 1]"
        )
    return value


def _print_rectified(job: _RectifyJob) -> None:
    """Each formula's sentence, then a row per term: every interval and the gain."""
    from simval.report.blocks import interval

    result = job.result
    for formula in dict.fromkeys(result.table["formula"]):
        typer.echo(result.sentence(formula))
    for caveat in result.caveats():
        typer.echo(caveat)
    known = (
        {}
        if job.reference is None
        else job.reference.set_index(["formula", "term"]).to_dict("index")
    )
    rows = {}
    for row in result.table.to_dict("records"):
        shown = {}
        if known:
            full = known[row["formula"], row["term"]]
            shown["all humans"] = interval(
                full["estimate"], full["ci_low"], full["ci_high"]
            )
        for method, label in (("classical", "humans only"), ("naive", "simulated only"),
                              ("rectified", "rectified")):  # fmt: skip
            shown[label] = interval(
                row[f"{method}_estimate"],
                row[f"{method}_ci_low"],
                row[f"{method}_ci_high"],
            )
        shown["gain"] = f"{row['gain']:.2f}"
        rows[f"{row['term']} ({row['formula']})"] = shown
    typer.echo(pd.DataFrame.from_dict(rows, orient="index").to_string())


@app.command("bench", cls=_Command)
def bench_command(
    model: Annotated[
        list[str],
        typer.Option(
            metavar="NAME=PATH[:ADAPTER]",
            help="Once per model to rank: its name, model (PATH may be default) and "
            "optional LoRA adapter folder, or :pilot to LoRA-fine-tune the model on a "
            f"random {PILOT_SHARE:.0%} pilot of each task first (as simval demo "
            "does; the pilot left out of that task's comparison; the adapter in the "
            "task's folder); or NAME=SERVED_MODEL@URL for a model on an "
            "OpenAI-compatible server (vLLM, SGLang: URL like http://host:8000/v1).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            metavar="FOLDER",
            help="Folder for the leaderboard and the report (with --task: each "
            "task's in FOLDER/TASK, the leaderboard across the tasks in FOLDER).",
        ),
    ],
    task: Annotated[
        str | None,
        typer.Argument(
            metavar="TASK",
            help=f"One built-in task: {' or '.join(TASKS)} (or give --task).",
        ),
    ] = None,
    tasks: Annotated[
        list[str] | None,
        typer.Option(
            "--task",
            metavar="TASK",
            help="A task to benchmark across, once per task: a built-in task or a "
            f"suite ({SUITES}).",
        ),
    ] = None,
    human: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE.csv",
            help="Your own respondents (CSV) instead of the task's own (simulated or "
            "real); one TASK only.",
        ),
    ] = None,
    mode: AnswerMode = "score",
    api: ServedApi = "completions",
    api_key_env: ApiKeyEnv = None,
    reps: Reps = 20,
    seed: Seed = 0,
    n: Count = None,
    epochs: Epochs = DEMO_TRAINING["epochs"],
    lr: LearningRate = DEMO_TRAINING["lr"],
    layers: Layers = DEMO_TRAINING["layers"],
    batch_size: BatchSize = DEMO_TRAINING["batch_size"],
) -> None:
    """Rank language models on built-in tasks: a leaderboard (CSV, Markdown, HTML) and a report.

    simval bench TASK ranks them on one task. With --task (repeatable, or a suite such
    as --task real), each task is benchmarked into FOLDER/TASK and FOLDER holds the
    leaderboard across the tasks: per metric and model each task's value [CI], the
    mean over the tasks with a CI from the tasks' own standard errors (independent
    respondents), over how many tasks and how many it wins; best marked only where a
    t interval over the tasks' paired differences separates the models (at least 3
    tasks; docs/reports.md). E.g. base vs fine-tuned on a 10% pilot of
    every real task: simval bench --task real --model base=default --model
    fine-tuned=default:pilot --out bench-real. A :pilot model trains as simval demo's
    does unless --epochs, --lr, --layers or --batch-size say otherwise.
    """
    from simval.bench import (
        RESAMPLING,
        bench_task,
        bench_tasks,
        check_specs,
        parse_model_spec,
    )  # fmt: skip
    from simval.tasks import load_task

    if task is not None and tasks:
        raise OptionError("give the task as TASK or with --task, not both")
    if task is None and not tasks:
        raise OptionError("give a task: simval bench TASK, or --task TASK per task")
    if tasks and human is not None:
        raise OptionError("--human goes with one task: simval bench TASK --human FILE")
    specs = [parse_model_spec(text) for text in model]
    _checked_lr(lr)
    options = {
        "n": n,
        "reps": reps,
        "mode": mode,
        "api": api,
        "api_key_env": api_key_env,
        "epochs": epochs,
        "lr": lr,
        "layers": layers,
        "batch_size": batch_size,
    }
    if tasks:
        with _training_flags():
            across, paths = bench_tasks(tasks, specs, out_dir=out, seed=seed, **options)
        _print_aggregate(across.aggregate)
    else:
        check_specs(specs)
        loaded = load_task(task, seed=seed, human=human)
        with _training_flags():
            result, paths = bench_task(loaded, specs, out_dir=out, seed=seed, **options)
        _echo_missing_personas(loaded.study, result.human)
        _print_table(result.validations, references=(RESAMPLING,))
        _print_gains(result)
    typer.echo("\n".join(f"{kind}: {path}" for kind, path in paths.items()))


@app.command("demo")
def demo_command(
    out: Annotated[
        Path,
        typer.Option(
            metavar="FOLDER", help="Folder for the report, leaderboard and adapter."
        ),
    ] = Path("simval-demo"),
    n: Annotated[
        int,
        typer.Option(
            "--n", min=10, metavar="N", help="Holdout respondents to compare on."
        ),
    ] = DEMO_RESPONDENTS,
    reps: Reps = 10,
    seed: Seed = 0,
) -> None:
    """The disclosure task on the default model: base vs fine-tuned (10% pilot), with references.

    Compares on 300 holdout respondents and the items the decisions need (concern and
    share_location); "simval bench disclosure" compares every item.
    """
    import time

    from simval.bench import RESAMPLING, demo, human_findings
    from simval.progress import duration

    started = time.perf_counter()
    typer.echo(
        "simval demo: the disclosure task (a SIMULATED reference population of 929, "
        "not human data) on SmolLM2-135M-Instruct"
    )
    result, paths = demo(out_dir=out, n=n, reps=reps, seed=seed)
    _print_table(result.validations, references=(RESAMPLING,))
    _print_gains(result)
    typer.echo(
        f"On {len(result.human)} respondents the humans' own models find "
        f"{human_findings(result)} significant term(s) (intercepts aside)."
    )
    typer.echo("\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    typer.echo(f"done in {duration(time.perf_counter() - started)}")


def _print_table(
    validations: Mapping[str, Validation], *, references: tuple[str, ...]
) -> None:
    """The headline metrics as text, a row per metric (``simval.results.HEADLINE``): each
    simulator's value [CI], * for best and ~ for tied (``simval.results.rank``), the fresh
    reference and the humans' own levels beside; then each formula's decision per simulator."""
    from simval.report import leaderboard_marks
    from simval.report.blocks import interval, number
    from simval.results import (
        HEADLINE,
        HUMAN_ROW,
        REFERENCE_ROW,
        summary_table,
        verdict_sentence,
    )

    marks = leaderboard_marks(validations, references=references)
    reference = summary_table(validations).loc[REFERENCE_ROW]
    summaries = {name: v.summary() for name, v in validations.items()}
    human = next(iter(summaries.values()))
    signs = {"best": "*", "tie": "~", "": ""}

    def shown(summary: dict, key: str) -> str:
        return interval(
            summary[key], summary[f"{key}_ci_low"], summary[f"{key}_ci_high"]
        )

    rows = {
        metric.label: {
            **{
                name: shown(summary, metric.name) + signs[marks.at[name, metric.name]]
                for name, summary in summaries.items()
            },
            REFERENCE_ROW: number(reference[metric.name]),
            HUMAN_ROW: shown(human, metric.human) if metric.human else "",
        }
        for metric in HEADLINE
    }
    typer.echo(pd.DataFrame.from_dict(rows, orient="index").to_string())
    never = ", ".join((*references, REFERENCE_ROW, HUMAN_ROW))
    typer.echo(
        "value [CI]; * best among the models, ~ tied for best (paired-difference CIs); "
        f"{REFERENCE_ROW}: a perfect simulator's value; never marked: {never}"
    )
    formulas = dict.fromkeys(
        f for v in validations.values() for f in v.verdicts["formula"]
    )
    for formula in formulas:
        for name, v in validations.items():
            for row in v.verdicts[v.verdicts["formula"] == formula].to_dict("records"):
                typer.echo(verdict_sentence(row, simulator=name))
    flagged: dict[str, list[str]] = {}
    for name, v in validations.items():
        for warning in v.notes.get("warnings", ()):
            flagged.setdefault(warning, []).append(name)
    for warning, names in flagged.items():
        who = "" if len(names) == len(validations) else f" ({', '.join(names)})"
        typer.echo(f"warning{who}: {warning}")


def _print_gains(benchmark: Benchmark) -> None:
    """Per simulator and formula, what its answers were worth for valid inference (or
    why that was not measured)."""
    if benchmark.inference_note:
        typer.echo(benchmark.inference_note)
    for name, result in benchmark.rectified.items():
        for formula in dict.fromkeys(result.table["formula"]):
            typer.echo(f"{name}: {result.sentence(formula)}")
        for caveat in result.caveats():
            typer.echo(f"{name}: {caveat}")


def _print_aggregate(result: Aggregate) -> None:
    """The leaderboard across tasks as text, a row per headline metric: each row's mean
    over the tasks [CI], * for best and ~ for tied over the tasks."""
    from simval.aggregate import ACROSS
    from simval.report.blocks import interval
    from simval.results import HEADLINE

    across = result.table[result.table["task"] == ACROSS]
    cells = across.set_index(["metric", "simulator"])
    signs = {"best": "*", "tie": "~", "": ""}
    rows = {
        metric.label: {
            name: interval(
                *cells.loc[(metric.name, name), ["value", "ci_low", "ci_high"]]
            )
            + signs[cells.at[(metric.name, name), "mark"]]
            for name in result.simulators
        }
        for metric in HEADLINE
    }
    typer.echo(f"mean over the tasks {', '.join(result.tasks)}:")
    typer.echo(pd.DataFrame.from_dict(rows, orient="index").to_string())
    typer.echo(
        "mean [CI] over the tasks where defined; * best, ~ tied for best over the tasks "
        "(t interval over the tasks' paired differences, T - 1 df; none below 3 tasks); "
        "sign-F1, false-positive rate and coverage CIs over the replicates only; each "
        "task's leaderboard and report in its folder"
    )


def _study_and_human(study: Path, human: Path) -> tuple[Study, pd.DataFrame]:
    """The study from its YAML file and the human CSV, checked against it.

    Every problem with the study file (missing, not UTF-8, broken YAML, a wrong field)
    is a one-line SimvalError from ``Study.from_yaml`` that names the file.
    """
    from simval.tasks import read_human

    declared = Study.from_yaml(study)
    people = read_human(human)
    declared.check_data(people, what=str(human))
    return declared, people


def _echo_missing_personas(declared: Study, compared: pd.DataFrame) -> tuple[str, ...]:
    """Say how many compared respondents miss persona values and what is done with them
    (``Study.missing_persona_note``); the note, if any, for the report's notes."""
    note = declared.missing_persona_note(compared)
    if note is None:
        return ()
    typer.echo(note)
    return (note,)


def _check_suffix(path: Path, suffix: str) -> None:
    if path.suffix.lower() != suffix:
        raise OptionError(f"--out {str(path)!r} must end in {suffix}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; bad input ends with one line on stderr and exit status 2.

    Bare ``simval`` asks for nothing wrong, so it prints the help on stdout (exit 0)
    rather than the usage error typer raises for it.
    """
    args = sys.argv[1:] if argv is None else argv
    prepare_torch()
    try:
        code = app(args=args or ["--help"], prog_name="simval", standalone_mode=False)
    except (SimvalError, FileNotFoundError, ImportError) as exc:
        return _fail(str(exc))
    except typer.Abort:
        return _fail("aborted")
    except Exception as exc:
        # click's usage errors (typer >= 0.29 vendors click, so match them by shape)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            return _fail(exc.format_message())
        raise
    return code if isinstance(code, int) else 0


def _fail(message: str) -> int:
    typer.echo(f"simval: error: {' '.join(message.split())}", err=True)
    return 2


if __name__ == "__main__":
    sys.exit(main())
