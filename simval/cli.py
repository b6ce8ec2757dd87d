"""The ``simval`` command: task, validate, finetune, bench and demo.

Exit status 0 on success (bare ``simval`` prints the help), 2 on bad input with one
line on stderr naming the culprit (checked before any model is loaded where
possible), 1 on anything else.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from typer.core import TyperCommand

from simval.bench import DEMO_RESPONDENTS, DEMO_TRAINING
from simval.errors import OptionError, SimvalError
from simval.finetune import Strategy, finetune
from simval.results import Validation
from simval.runtime import prepare_torch
from simval.simulators.hf import Mode
from simval.simulators.served import Api
from simval.study import Study
from simval.tasks import TASKS

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
TRAINING = inspect.signature(finetune).parameters
"""``simval.finetune.finetune``'s keywords: the finetune command's defaults are its own."""
DEMO_FLAGS = " ".join(
    f"--{key.replace('_', '-')} {value}" for key, value in DEMO_TRAINING.items()
)
"""The finetune flags that train as ``simval demo`` does (``simval.bench.DEMO_TRAINING``)."""


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
    """Write a built-in task's study.yaml and its SIMULATED respondents (data.csv) to try
    validate, finetune and bench on."""
    from simval.tasks import load_task, write_task

    loaded = load_task(task, seed=seed)
    study, data = write_task(loaded, out_dir=out)
    typer.echo(
        f"study: {study}\n"
        f"data: {data} ({len(loaded.human)} respondents of a SIMULATED reference "
        f"population, seed {seed}, not human data)\n"
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
    adapter: Annotated[
        Path | None,
        typer.Option(
            metavar="FOLDER",
            help="A LoRA adapter folder (from simval finetune); the respondents it "
            "was trained on are left out.",
        ),
    ] = None,
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
    if pilot:
        notes.append(
            f"{len(pilot)} pilot respondents the adapter was trained on are left out."
        )
    paths = write_report(
        result.validations, out=out, title=f"simval report: {study.name}", notes=notes,
        references=(RESAMPLING,),
    )  # fmt: skip
    _print_table(result.validations, references=(RESAMPLING,))
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
    epochs: Annotated[
        int,
        typer.Option(min=1, metavar="N", help="Passes over the pilot's examples."),
    ] = TRAINING["epochs"].default,
    lr: Annotated[
        float,
        typer.Option(
            metavar="RATE", help="Learning rate of the LoRA weights (AdamW), above 0."
        ),
    ] = TRAINING["lr"].default,
    layers: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Put LoRA on the last N transformer blocks only; the blocks below "
            "run forward only, which is cheaper (default: every block).",
        ),
    ] = TRAINING["layers"].default,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="N",
            help="Examples per training step (those of one item and arm together).",
        ),
    ] = TRAINING["batch_size"].default,
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
    if not 0 < lr < math.inf:
        raise OptionError(f"--lr {lr:g} must be a positive number")
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
    try:
        folder = finetune(
            model, pilot_df, declared, out, epochs=epochs, lr=lr, layers=layers,
            batch_size=batch_size, seed=seed,
        )  # fmt: skip
    except OptionError as exc:  # e.g. layers=40 for a model of 30 blocks
        raise OptionError(str(exc).replace("layers=", "--layers ")) from exc
    typer.echo(
        f"adapter: {folder} (trained on {len(pilot_df)} respondents; "
        f"{len(holdout)} held out for validation)"
    )


@app.command("bench", cls=_Command)
def bench_command(
    task: TaskName,
    model: Annotated[
        list[str],
        typer.Option(
            metavar="NAME=PATH[:ADAPTER]",
            help="Once per model to rank: its name, model (PATH may be default) and "
            "optional LoRA adapter folder; or NAME=SERVED_MODEL@URL for a model on "
            "an OpenAI-compatible server (vLLM, SGLang: URL like "
            "http://host:8000/v1).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            metavar="FOLDER", help="Folder for the leaderboard and the report."
        ),
    ],
    human: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE.csv",
            help="Your own respondents (CSV) instead of the simulated population.",
        ),
    ] = None,
    mode: AnswerMode = "score",
    api: ServedApi = "completions",
    api_key_env: ApiKeyEnv = None,
    reps: Reps = 20,
    seed: Seed = 0,
    n: Count = None,
) -> None:
    """Rank language models on a built-in task: a leaderboard (CSV, Markdown, HTML) and a report."""
    from simval.bench import (
        RESAMPLING,
        bench,
        build_simulator,
        evaluation_sample,
        parse_model_spec,
        pilot_rows_of,
        write_outputs,
    )  # fmt: skip
    from simval.tasks import load_task

    specs = [parse_model_spec(text) for text in model]
    names = [spec.name for spec in specs]
    if len(set(names)) < len(names):
        raise OptionError(f"--model names must differ; got {', '.join(names)}")
    loaded = load_task(task, seed=seed, human=human)
    compared = evaluation_sample(
        loaded.human, exclude=pilot_rows_of(specs), n=n, seed=seed
    )
    missing = _echo_missing_personas(loaded.study, compared)
    simulators = {
        spec.name: build_simulator(
            spec, study=loaded.study, mode=mode, api=api, api_key_env=api_key_env
        )
        for spec in specs
    }
    result = bench(simulators, compared, loaded.study, reps=reps, seed=seed)
    paths = write_outputs(result, task=loaded, out_dir=out, notes=missing)
    _print_table(result.validations, references=(RESAMPLING,))
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
