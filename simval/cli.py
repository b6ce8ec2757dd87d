"""The ``simval`` command: task, init, validate, finetune, rectify, plan, bench and demo.

Each command checks its flags, calls the library and prints with the library's own
renderers (``leaderboard_text``, ``aggregate_text``, ``report.rectified_text``,
``Plan.to_text``); the workflows live in the library. Exit status 0 on success (bare
``simval`` prints the help), 2 on bad input with one line on stderr naming the
culprit (checked before any model is loaded where possible), 1 on anything else.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand

# what the flags and the help need only: the commands import the library when they run
from simval import cli_flags as flags
from simval.defaults import (
    DEMO_RESPONDENTS,
    DEMO_TRAINING,
    FINETUNE_DEFAULTS,
    TASK_SUITES,
)
from simval.errors import OptionError, SimvalError, check_number
from simval.outputs import check_output, seen_from
from simval.runtime import prepare_torch

if TYPE_CHECKING:
    import pandas as pd

    from simval.bench import Benchmark
    from simval.rectify import LabeledSplit, Rectified
    from simval.simulators.specs import ModelSpec
    from simval.study import Study
    from simval.tasks import Task

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


@contextmanager
def _training_flags() -> Iterator[None]:
    """Name finetune's refusals by the flag given (``--layers 40`` for a model of 30
    blocks, not the keyword ``layers=40``)."""
    try:
        yield
    except OptionError as exc:
        raise OptionError(str(exc).replace("layers=", "--layers ")) from exc


@contextmanager
def _naming(flag: str) -> Iterator[None]:
    """Prefix a refusal of the library's with the flag whose value caused it
    (``--labeled-n 500: ...``)."""
    try:
        yield
    except OptionError as exc:
        raise OptionError(f"{flag}: {exc}") from exc


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
    task: flags.TaskName, out: flags.TaskFolder, seed: flags.PopulationSeed = 0
) -> None:
    """Write a built-in task's study.yaml and its respondents (data.csv: a simulated
    population, or a real survey's respondents) to try validate, finetune and bench on."""
    from simval.tasks import load_task, write_task

    check_output(out, folder=True)
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
        f"{flags.DEMO_FLAGS} --out adapters/pilot10"
    )


@app.command("init", cls=_Command)
def init_command(data: flags.SurveyFile, out: flags.DraftFolder) -> None:
    """Draft a study.yaml from a survey file: items, options and missing codes from its
    value labels, persona columns and their prompt text, a model to fill in."""
    from simval.draft import write_draft

    check_output(out, folder=True)
    path, draft = write_draft(data, out_dir=out)
    if note := draft.survey.reading_note:
        typer.echo(note)
    study = draft.study
    left = ", ".join(draft.left_out) or "none"
    items, persona = len(study.items), len(study.persona)
    typer.echo(
        f"study: {path} ({items} item{'s' * (items != 1)}, {persona} persona "
        f"column{'s' * (persona != 1)}; left out: {left})\n"
        "next: edit the guesses its comments name, then: "
        f"simval validate {path} --human {data} --model default --out report.html"
    )


@app.command("validate", cls=_Command)
def validate_command(
    study: flags.StudyFile, human: flags.Human, model: flags.ModelOrServed,
    out: flags.HtmlReport, adapter: flags.Adapter = None,
    mode: flags.AnswerMode = "score", api: flags.ServedApi = "completions",
    api_key_env: flags.ApiKeyEnv = None, reps: flags.Reps = 20, seed: flags.Seed = 0,
    n: flags.Count = None, dry_run: flags.DryRun = False, price: flags.Price = None,
    title: flags.Title = None,
) -> None:  # fmt: skip
    """Compare one model's simulated respondents with the humans; write a report."""
    from simval.bench import RESAMPLING, bench, check_sample, evaluation_sample
    from simval.report import write_report
    from simval.simulators.specs import pilot_rows_of

    check_output(out, suffix=".html")
    prices = flags.price(price)
    declared, people = _study_and_human(study, human)
    chosen = flags.ModelFlags(model, adapter, mode, api, api_key_env)
    spec = chosen.spec()  # named by its model and adapter
    pilot = pilot_rows_of([spec])
    compared = evaluation_sample(people, exclude=pilot, n=n, seed=seed)
    check_sample(declared, compared, what=str(human))  # before the model loads
    _echo_missing_personas(declared, compared)
    if dry_run:  # every check has run; the model would load next
        _dry_run("validate", chosen, declared, [compared], reps=reps, price=prices)
    # bench, not validate: the model beside the resampling reference on the same
    # seed, then put to use for valid inference, is what this command reports
    result = bench(
        {spec.name: chosen.simulator(declared)}, compared, declared, reps=reps,
        seed=seed,
    )  # fmt: skip
    notes = [f"Respondents: {len(compared)} from {seen_from(out.parent, human)}."]
    if result.inference_note:
        notes.append(f"{result.inference_note.capitalize()}.")
    if pilot:
        notes.append(
            f"{len(pilot)} pilot respondents the adapter was trained on are left out."
        )
    paths = write_report(
        result.validations, out=out, title=title or f"simval report: {_study_name(study)}",
        notes=notes,
        references=(RESAMPLING,), rectified=result.rectified,
    )  # fmt: skip
    _echo_benchmark(result)
    typer.echo(f"report: {paths[0]}\nmarkdown: {paths[1]}")


@app.command(
    "finetune",
    cls=_Command,
    help="Fine-tune a LoRA adapter on a pilot drawn from the human respondents.\n\n"
    "Give exactly one of --pilot-frac and --pilot-n. The defaults put LoRA on every "
    "block for several epochs, which is slow on a CPU; simval demo's adapter was "
    f"trained with {flags.DEMO_FLAGS}, about 3x cheaper.",
)
def finetune_command(
    study: flags.StudyFile, human: flags.Human, model: flags.Model,
    out: flags.AdapterFolder, pilot_frac: flags.PilotFrac = None,
    pilot_n: flags.PilotN = None, strategy: flags.PilotStrategy = "random",
    by: flags.By = None, epochs: flags.Epochs = FINETUNE_DEFAULTS["epochs"],
    lr: flags.LearningRate = FINETUNE_DEFAULTS["lr"],
    layers: flags.Layers = FINETUNE_DEFAULTS["layers"],
    batch_size: flags.BatchSize = FINETUNE_DEFAULTS["batch_size"],
    seed: flags.Seed = 0, dry_run: flags.DryRun = False,
) -> None:  # fmt: skip
    """Fine-tune a LoRA adapter on a pilot; flag values are checked before any file is read."""
    from simval.bench import check_sample
    from simval.finetune import finetune, pilot

    check_output(out, folder=True)
    if (pilot_frac is None) == (pilot_n is None):
        raise OptionError("give exactly one of --pilot-frac and --pilot-n")
    if pilot_frac is not None:
        check_number("--pilot-frac", pilot_frac, above=0, below=1)
    check_number("--lr", lr, above=0)
    declared, people = _study_and_human(study, human)
    check_sample(declared, people, what=str(human))  # before the model loads
    columns = by or list(declared.treatment) or None
    if strategy != "random" and not columns:
        raise OptionError(
            f"--strategy {strategy} needs --by (the study has no treatment)"
        )
    unknown = [column for column in by or () if column not in people.columns]
    if unknown:
        raise OptionError(f"--by {', '.join(unknown)}: no such column in {human}")
    size = f"--pilot-frac {pilot_frac:g}" if pilot_n is None else f"--pilot-n {pilot_n}"
    with _naming(size):  # the data cannot give a pilot of that size
        pilot_df, holdout = pilot(
            people, frac=pilot_frac, n=pilot_n, strategy=strategy, seed=seed,
            by=None if strategy == "random" else columns,
        )  # fmt: skip
    training = {"epochs": epochs, "lr": lr, "layers": layers, "batch_size": batch_size}
    with _training_flags():
        if dry_run:  # every check has run; the model would load next
            _dry_run_finetune(model, pilot_df, declared, seed=seed, **training)
        folder = finetune(model, pilot_df, declared, out, seed=seed, **training)
    typer.echo(
        f"adapter: {folder} (trained on {len(pilot_df)} respondents; "
        f"{len(holdout)} held out for validation)"
    )


@app.command("rectify", cls=_Command)
def rectify_command(
    study: flags.StudyFile, human: flags.Human, model: flags.ModelOrServed,
    out: flags.HtmlReportTable, adapter: flags.Adapter = None,
    labeled_frac: flags.Labeled = None, labeled_n: flags.LabeledN = None,
    unlabeled: flags.Unlabeled = None, personas: flags.Personas = None,
    lam: flags.Lam = "tuned", alpha: flags.Alpha = 0.05,
    mode: flags.AnswerMode = "score", api: flags.ServedApi = "completions",
    api_key_env: flags.ApiKeyEnv = None, seed: flags.Seed = 0,
    dry_run: flags.DryRun = False, price: flags.Price = None,
    title: flags.Title = None,
) -> None:  # fmt: skip
    """Valid estimates of the study's formulas from humans plus simulated-only
    respondents (PPI++); write a report.

    Give one source of simulated-only respondents: --unlabeled, --personas, or
    --labeled-frac / --labeled-n (the other humans' personas).
    """
    from simval.report.inference import rectified_text, write_rectified_report

    check_output(out, suffix=".html")
    chosen = flags.ModelFlags(model, adapter, mode, api, api_key_env)
    job = _rectify_job(
        study, human, chosen,
        labeled_frac=labeled_frac, labeled_n=labeled_n, unlabeled=unlabeled,
        personas=personas, lam=lam, alpha=alpha, seed=seed, dry_run=dry_run,
        report_folder=out.parent,
        price=flags.price(price),
    )  # fmt: skip
    reference = job.split.reference if job.split else None
    paths = write_rectified_report(
        {chosen.spec().name: job.result}, out=out,
        title=title or f"simval valid inference: {_study_name(study)}",
        notes=job.notes, reference=reference,
    )  # fmt: skip
    table = out.with_suffix(".csv")
    job.result.table.to_csv(table, index=False)
    typer.echo(rectified_text(job.result, reference=reference))
    typer.echo(f"report: {paths[0]}\nmarkdown: {paths[1]}\ntable: {table}")


@app.command("plan", cls=_Command)
def plan_command(
    study: flags.StudyFile, human: flags.Human, model: flags.ModelOrServed,
    cost_human: flags.CostHuman, cost_simulated: flags.CostSimulated,
    out: flags.PlanOut, effective_n: flags.EffectiveN = None,
    half_width: flags.HalfWidth = None, budget: flags.Budget = None,
    adapter: flags.Adapter = None, unlabeled: flags.Unlabeled = None,
    personas: flags.Personas = None, labeled_frac: flags.Labeled = None,
    labeled_n: flags.LabeledN = None, fractions: flags.Fractions = None,
    layers: flags.PlanLayers = DEMO_TRAINING["layers"], alpha: flags.Alpha = 0.05,
    mode: flags.AnswerMode = "score", api: flags.ServedApi = "completions",
    api_key_env: flags.ApiKeyEnv = None, seed: flags.Seed = 0,
) -> None:  # fmt: skip
    """How many humans and simulated respondents to use, from a pilot: the humans
    given here, with the simulator's answers for them and for simulated-only personas
    (--unlabeled, --personas, or --labeled-frac / --labeled-n: the other humans'
    personas). Give exactly one of --effective-n, --half-width and --budget."""
    from simval.plan import plan

    check_output(out, suffix=".csv")
    targets = {"effective_n": effective_n, "half_width": half_width, "budget": budget}
    if sum(v is not None for v in targets.values()) != 1:
        raise OptionError(
            "give exactly one of --effective-n, --half-width and --budget"
        )
    check_number("--cost-human", cost_human, above=0)
    check_number("--cost-simulated", cost_simulated, above=0)
    shares = flags.fractions(fractions)
    if shares and (adapter is not None or "@" in model):
        raise OptionError("--fractions fine-tunes a local base model: drop --adapter")
    job = _rectify_job(
        study, human, flags.ModelFlags(model, adapter, mode, api, api_key_env),
        labeled_frac=labeled_frac, labeled_n=labeled_n, unlabeled=unlabeled,
        personas=personas, lam="tuned", alpha=alpha, seed=seed,
        report_folder=out.parent,
    )  # fmt: skip
    found = plan(
        job.result, cost_human=cost_human, cost_simulated=cost_simulated, **targets
    )
    out.parent.mkdir(parents=True, exist_ok=True)  # as the other commands' outputs
    found.table.to_csv(out, index=False)
    typer.echo(found.to_text())
    typer.echo(f"plan: {out}")
    if shares:
        _finetune_or_rectify(
            job, model=model, out=out, fractions=shares, seed=seed, layers=layers
        )


@app.command("bench", cls=_Command)
def bench_command(
    model: flags.ModelSpecs, out: flags.BenchOut, task: flags.OneTask = None,
    tasks: flags.Tasks = None, human: flags.OwnHuman = None,
    mode: flags.AnswerMode = "score", api: flags.ServedApi = "completions",
    api_key_env: flags.ApiKeyEnv = None, reps: flags.Reps = 20, seed: flags.Seed = 0,
    n: flags.Count = None, epochs: flags.Epochs = DEMO_TRAINING["epochs"],
    lr: flags.LearningRate = DEMO_TRAINING["lr"],
    layers: flags.Layers = DEMO_TRAINING["layers"],
    batch_size: flags.BatchSize = DEMO_TRAINING["batch_size"],
    title: flags.Title = None, dry_run: flags.DryRun = False,
    price: flags.Price = None,
) -> None:  # fmt: skip
    """Rank language models on built-in tasks or your own study: a leaderboard (CSV,
    Markdown, HTML) and a report.

    simval bench TASK ranks them on one task; simval bench STUDY.yaml --human FILE on
    your own study, every model on the same respondents (any :pilot model's pilot left
    out for all), e.g. simval bench study.yaml --human data.csv --model base=default
    --model tuned=default:pilot --out bench. With --task (repeatable, or a suite such
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
    from simval.bench import bench_task, bench_tasks, own_task
    from simval.report.leaderboard import aggregate_text
    from simval.simulators.specs import check_specs, parse_model_spec
    from simval.tasks import load_task

    check_output(out, folder=True)
    prices = flags.price(price)
    if task is not None and tasks:
        raise OptionError("give the task as TASK or with --task, not both")
    if task is None and not tasks:
        raise OptionError("give a task: simval bench TASK, or --task TASK per task")
    if tasks and human is not None:
        raise OptionError("--human goes with one task: simval bench TASK --human FILE")
    if tasks and title is not None:
        raise OptionError("--title goes with one task: simval bench TASK --title TEXT")
    own = flags.study_path(task) if task is not None else None
    if own is not None and human is None:
        raise OptionError(
            f"simval bench {own} needs --human FILE: your respondents to compare with"
        )
    specs = [parse_model_spec(text) for text in model]
    check_number("--lr", lr, above=0)
    options = {
        "n": n, "reps": reps, "mode": mode, "api": api, "api_key_env": api_key_env,
        "epochs": epochs, "lr": lr, "layers": layers, "batch_size": batch_size,
    }  # fmt: skip
    if tasks:
        if dry_run:  # every check has run; the models would load next
            _dry_run_bench(tasks, specs, seed=seed, price=prices, **options)
        with _training_flags():
            across, paths = bench_tasks(tasks, specs, out_dir=out, seed=seed, **options)
        typer.echo(aggregate_text(across.aggregate))
    else:
        check_specs(specs)
        if own is not None:
            declared, people = _study_and_human(own, human)
            loaded = own_task(
                declared, people, name=_study_name(own), source=str(human)
            )
        else:
            loaded = load_task(task, seed=seed, human=human)
        if dry_run:  # every check has run; the models would load next
            _dry_run_bench([loaded], specs, seed=seed, price=prices, **options)
        with _training_flags():
            result, paths = bench_task(
                loaded, specs, out_dir=out, seed=seed, title=title, **options
            )
        _echo_missing_personas(loaded.study, result.human)
        _echo_benchmark(result)
    typer.echo("\n".join(f"{kind}: {path}" for kind, path in paths.items()))


@app.command("demo")
def demo_command(
    out: flags.DemoOut = Path("simval-demo"), n: flags.DemoCount = DEMO_RESPONDENTS,
    reps: flags.Reps = 10, seed: flags.Seed = 0,
) -> None:  # fmt: skip
    """The disclosure task on the default model: base vs fine-tuned (10% pilot), with references.

    Compares on 300 holdout respondents and the items the decisions need (concern and
    share_location); "simval bench disclosure" compares every item.
    """
    import time

    from simval.bench import demo, human_findings
    from simval.progress import duration

    check_output(out, folder=True)
    started = time.perf_counter()
    typer.echo(
        "simval demo: the disclosure task (a SIMULATED reference population of 929, "
        "not human data) on SmolLM2-135M-Instruct"
    )
    result, paths = demo(out_dir=out, n=n, reps=reps, seed=seed)
    _echo_benchmark(result)
    typer.echo(
        f"On {len(result.human)} respondents the humans' own models find "
        f"{human_findings(result)} significant term(s) (intercepts aside)."
    )
    typer.echo("\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    typer.echo(f"done in {duration(time.perf_counter() - started)}")


@dataclass(frozen=True)
class _RectifyJob:
    """What ``simval rectify`` and ``simval plan`` computed, and what to say about it."""

    result: Rectified
    split: LabeledSplit | None
    notes: tuple[str, ...]
    labeled: pd.DataFrame
    unlabeled: int | pd.DataFrame


def _rectify_job(
    study: Path,
    human: Path,
    model: flags.ModelFlags,
    *,
    labeled_frac: float | None,
    labeled_n: int | None,
    unlabeled: int | None,
    personas: Path | None,
    lam: str,
    alpha: float,
    seed: int,
    report_folder: Path,
    dry_run: bool = False,
    price: tuple[float, float] | None = None,
) -> _RectifyJob:
    """Check every flag and file and fit the humans' own models (``check_inputs``),
    then load the model and rectify: the humans minus those the adapter was trained
    on (``evaluation_sample``), labeled all or a random share (``split_labeled``),
    against the simulated-only source the flags name."""
    from simval.bench import evaluation_sample
    from simval.rectify import check_inputs, rectify, split_labeled
    from simval.simulators.specs import pilot_rows_of
    from simval.tasks import read_human

    weight = flags.lam(lam)
    if labeled_frac is not None and labeled_n is not None:
        raise OptionError("give at most one of --labeled-frac and --labeled-n")
    if labeled_frac is not None:
        check_number("--labeled-frac", labeled_frac, above=0, below=1)
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
    if unlabeled is not None and not declared.treatment:
        raise OptionError(
            f"--unlabeled {unlabeled} re-draws the humans' personas under a "
            f"re-randomised treatment, and {study} declares none: give --personas "
            "FILE.csv (personas drawn from the population independently of the humans) "
            "or --labeled-frac / --labeled-n (the other humans' personas)"
        )
    trained = pilot_rows_of([model.spec()])
    people = evaluation_sample(people, exclude=trained)
    notes = [f"Humans: {len(people)} from {seen_from(report_folder, human)}."]
    if trained:
        notes.append(
            f"{len(trained)} respondents the adapter was trained on are left out."
        )
    split = None
    if subsample:
        size = (
            f"--labeled-frac {labeled_frac:g}" if labeled_n is None
            else f"--labeled-n {labeled_n}"
        )  # fmt: skip
        with _naming(size):
            split = split_labeled(
                declared, people, frac=labeled_frac, n=labeled_n, seed=seed
            )
        notes.append(
            f"Labeled: {len(split.labeled)} humans drawn at random ({size}); the other "
            f"{len(split.unlabeled)} humans' personas are the simulated-only "
            f"respondents, and 'all humans' is the fit to all {split.n_human}."
        )
    labeled = split.labeled if split else people
    simulated: int | pd.DataFrame
    if personas is not None:
        simulated = read_human(personas)
        notes.append(
            f"Simulated-only personas: {len(simulated)} from "
            f"{seen_from(report_folder, personas)}."
        )
    else:
        simulated = unlabeled if unlabeled is not None else split.unlabeled
    check_inputs(declared, labeled, unlabeled=simulated, lam=weight, alpha=alpha)
    if dry_run:  # every check has run; the model would load next
        _dry_run_rectify(model, declared, labeled, simulated, price=price)
    result = rectify(
        declared, labeled, model.simulator(declared), unlabeled=simulated,
        lam=weight, alpha=alpha, seed=seed,
    )  # fmt: skip
    return _RectifyJob(
        result=result, split=split, notes=tuple(notes), labeled=labeled,
        unlabeled=simulated,
    )  # fmt: skip


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
    typer.echo(f"{found.to_text()}\nfine-tune or rectify: {table}")
    for i, model_ in enumerate(result.study.models, start=1):
        figure = out.with_name(f"{out.stem}_finetune_{i}.png")
        figure.write_bytes(png(found.figure(model_.formula)))
        typer.echo(f"figure: {figure}")


def _dry_run(
    command: str,
    chosen: flags.ModelFlags,
    study: Study,
    frames: list[pd.DataFrame],
    *,
    reps: int = 0,
    price: tuple[float, float] | None,
) -> NoReturn:
    """--dry-run: load the model, print what the run would ask of it (``frames``: the
    personas it asks about; answers drawn per generated item as a validation of
    ``reps`` replicates draws them) and how long it would take from a warm-up
    (``simval.forecast``), and stop with exit status 0."""
    from simval.forecast import bench_generated, loaded, scoring_forecast

    generated = bench_generated(study, n=len(frames[0]), reps=reps)
    simulator, seconds = loaded(lambda: chosen.simulator(study))
    forecast = scoring_forecast(
        simulator, command=command, frames=frames, generated=generated, price=price,
        load_seconds=seconds,
    )  # fmt: skip
    typer.echo(forecast.to_text())
    raise typer.Exit()


def _dry_run_rectify(
    chosen: flags.ModelFlags,
    study: Study,
    labeled: pd.DataFrame,
    unlabeled: int | pd.DataFrame,
    *,
    price: tuple[float, float] | None,
) -> NoReturn:
    """--dry-run of rectify: load the model, print what ``rectify`` would ask of it
    (``simval.forecast.rectify_forecast``: the items its formulas use, for the
    personas it asks about), and stop with exit status 0."""
    from simval.forecast import loaded, rectify_forecast

    simulator, seconds = loaded(lambda: chosen.simulator(study))
    forecast = rectify_forecast(
        simulator, labeled=labeled, unlabeled=unlabeled, price=price,
        load_seconds=seconds,
    )  # fmt: skip
    typer.echo(forecast.to_text())
    raise typer.Exit()


def _dry_run_finetune(
    model: str, pilot_df: pd.DataFrame, study: Study, **settings: Any
) -> NoReturn:
    """--dry-run of finetune: its steps and their time from a couple of measured
    steps (``simval.forecast.finetune_forecast``), then stop with exit status 0."""
    from simval.forecast import finetune_forecast

    typer.echo(finetune_forecast(model, pilot_df, study, **settings).to_text())
    raise typer.Exit()


def _dry_run_bench(
    tasks: list[Task] | list[str],
    specs: list[ModelSpec],
    *,
    seed: int,
    price: tuple[float, float] | None,
    n: int | None,
    reps: int,
    **options: Any,
) -> NoReturn:
    """--dry-run of bench: per task (a name or suite is loaded) and model, what the run
    would ask and how long it would take (``simval.forecast.bench_forecasts``; a
    ``:pilot`` model's fine-tuning first), then stop with exit status 0."""
    from simval.forecast import bench_forecasts, total_text
    from simval.tasks import load_task

    training = {key: options.pop(key) for key in DEMO_TRAINING}
    forecasts = []
    for task in tasks:
        for name in TASK_SUITES.get(task, (task,)) if isinstance(task, str) else [task]:
            chosen = load_task(name, seed=seed) if isinstance(name, str) else name
            forecasts += bench_forecasts(
                chosen, specs, n=n, reps=reps, seed=seed, price=price,
                training=training, **options,
            )  # fmt: skip
    typer.echo(total_text(forecasts))
    raise typer.Exit()


def _echo_benchmark(result: Benchmark) -> None:
    """The leaderboard of a benchmark's validations, the resampling reference never
    marked (``leaderboard_text``), then what each model was worth for valid inference."""
    from simval.bench import RESAMPLING
    from simval.report.leaderboard import leaderboard_text

    typer.echo(leaderboard_text(result.validations, references=(RESAMPLING,)))
    if gains := result.inference_text():
        typer.echo(gains)


def _study_and_human(study: Path, human: Path) -> tuple[Study, pd.DataFrame]:
    """The study from its YAML file and the human CSV, checked against it.

    Every problem with the study file (missing, not UTF-8, broken YAML, a wrong field)
    is a one-line SimvalError from ``Study.from_yaml`` that names the file.
    """
    from simval.study import Study
    from simval.tasks import read_human

    declared = Study.from_yaml(study)
    people = read_human(human)
    if note := people.attrs.get("reading_note"):
        typer.echo(note)
    coded = declared.coded(people, what=str(human))
    if coded.note:
        typer.echo(coded.note)
    declared.check_data(coded.data, what=str(human))
    return declared, coded.data


def _study_name(study: Path) -> str:
    """What a report calls the study: its file's stem, or its folder's name for a file
    called study.yaml (what ``simval init`` and ``simval task`` write), so that
    mystudy/study.yaml reads "mystudy", not "study"."""
    study = Path(study)
    folder = study.resolve().parent.name
    return folder if study.stem == "study" and folder else study.stem


def _echo_missing_personas(declared: Study, compared: pd.DataFrame) -> None:
    """Say how many compared respondents miss persona values and what is done with them
    (``Study.missing_persona_note``; the report repeats it from the validations'
    notes)."""
    note = declared.missing_persona_note(compared)
    if note is not None:
        typer.echo(note)


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
