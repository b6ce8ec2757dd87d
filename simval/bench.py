"""Benchmarking language models on built-in tasks, and the demo the README runs.

``bench`` validates each model (optionally with a LoRA adapter) against the task's
respondents next to the resampling reference and returns the leaderboard and the
validations a report reads (each carries its own option shares, decisions and its
fresh-sample reference values); ``bench_task`` runs it on a built-in task from model
specs (fine-tuning on the task's pilot where a spec asks) and writes its outputs;
``bench_study`` does the same on a researcher's own study and respondents
(``own_task``); ``bench_tasks`` does so for several tasks and summarises them
(``simval.aggregate``); ``demo`` compares the default model before and after
fine-tuning on a 10% pilot.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from simval.aggregate import Aggregate, aggregate
from simval.defaults import (
    DEMO_RESPONDENTS,
    DEMO_TRAINING,
    PILOT_SHARE,
    TASK_SUITES,
    TASKS,
)
from simval.errors import (
    OptionError,
    SimvalError,
    check_alpha,
    check_count,
    check_number,
    check_option,
    check_seed,
    refuse,
)
from simval.families import PPI_FAMILIES
from simval.finetune import finetune, pilot
from simval.formulas import formula_variables
from simval.outputs import seen_from
from simval.progress import phase, quiet
from simval.results import (
    HUMAN_ROW,
    OVERALL,
    REFERENCE_ROW,
    Validation,
    is_finding,
    summary_table,
)
from simval.runtime import side_by_side
from simval.simulators.base import Simulator, answers_by_scoring
from simval.simulators.fingerprints import fingerprint
from simval.simulators.loading import RECORD, resolve_model
from simval.simulators.reference import BootstrapSimulator
from simval.simulators.specs import (
    ModelSpec,
    build_simulator,
    check_specs,
    parse_model_spec,
    pilot_rows_of,
)
from simval.study import Study
from simval.tasks import Task, load_task, read_human

if TYPE_CHECKING:
    from simval.rectify import Rectified

RESAMPLING = "bootstrap (resampling reference)"

MIN_LABELED = 30
"""Fewer labeled humans than this and a benchmark does not rectify: the humans' own fits,
on which the rectified ones rest, would barely be estimable."""

INFERENCE_SHARE = 0.1
"""The share of the respondents a benchmark labels when it rectifies (the paper's
fine-tuning pilot was 10%; the same budget of humans put to another use)."""
"""The leaderboard row of ``BootstrapSimulator``: the humans' own answers resampled, so it
is centred on them and looks closer to them than any independent sample could; a
reference shown beside the models, never ranked. The perfect-simulator benchmark is
the ``fresh reference`` row (the fresh-sample reference every validation runs)."""


@dataclass(frozen=True)
class Benchmark:
    """What a benchmark run produced: the leaderboard and the validations a report reads.

    ``leaderboard``: ``simval.results.summary_table`` of the validations (a row per
    simulator, the resampling reference, the fresh reference and the humans).
    ``validations``: name -> Validation, the resampling reference last. ``human``: the
    respondents every simulator was compared with. ``rectified``: name -> each
    simulator's ``simval.rectify`` result (``inference_share`` of the respondents
    labeled, the others' personas simulated-only); empty when not asked for or, as
    ``inference_note`` then says, when that share is fewer than ``MIN_LABELED`` humans.
    """

    leaderboard: pd.DataFrame
    validations: dict[str, Validation]
    human: pd.DataFrame
    rectified: dict[str, Rectified]
    inference_note: str | None = None

    def inference_text(self) -> str:
        """What each simulator's answers were worth for valid inference, as plain text
        (what the commands print after the leaderboard): ``inference_note``, then each
        simulator's ``Rectified.lines``, named."""
        lines = [self.inference_note] if self.inference_note else []
        for name, result in self.rectified.items():
            lines.extend(f"{name}: {line}" for line in result.lines())
        return "\n".join(lines)


def bench(
    simulators: Mapping[str, Simulator],
    human_df: pd.DataFrame,
    study: Study,
    *,
    reps: int = 20,
    seed: int = 0,
    alpha: float = 0.05,
    resamples: int = 200,
    inference_share: float | None = INFERENCE_SHARE,
    progress: bool | None = None,
) -> Benchmark:
    """Validate every simulator and the resampling reference on the same respondents with
    the same seed, so their differences are paired (``simval.results.rank``).

    Simulators that score options (``predict_proba``) first score every item for every
    respondent, one phase each with its progress, so the validations after it read
    their answers from the result store. With ``inference_share``, each simulator is
    also put to use for inference (``simval.rectify``): that share of the respondents,
    drawn at random with ``seed`` (the same for every simulator), is labeled and the
    others' personas are simulated-only; None skips it.
    """
    reserved = (RESAMPLING, REFERENCE_ROW, HUMAN_ROW)
    taken = [name for name in simulators if name in reserved]
    if taken:
        others = ", ".join(map(repr, reserved))
        raise refuse("simulator name", taken[0], f"a name other than {others}")
    check_count("reps", reps)
    check_count("resamples", resamples, at_least=0)
    check_alpha(alpha)
    check_seed("seed", seed)
    if inference_share is not None:
        check_number("inference_share", inference_share, above=0, below=1)
    # statsmodels loads when something is compared, not for the command's help
    from simval.validate import validate

    with quiet(progress):  # the simulators' own scoring bars
        for simulator in simulators.values():
            prescore(simulator, human_df, study)
    everyone = {**simulators, RESAMPLING: BootstrapSimulator(human_df)}
    validations = {}
    for name, simulator in everyone.items():
        with phase(f"validating {name} ({reps} replicates)", enabled=progress):
            validations[name] = validate(
                study, human_df, simulator, reps=reps, seed=seed, alpha=alpha,
                resamples=resamples, progress=progress,
            )  # fmt: skip
    rectified, skipped = {}, None
    if inference_share is not None:
        rectified, skipped = _put_to_use(
            simulators, human_df, study, share=inference_share, alpha=alpha,
            seed=seed, progress=progress,
        )  # fmt: skip
    return Benchmark(
        leaderboard=summary_table(validations), validations=validations, human=human_df,
        rectified=rectified, inference_note=skipped,
    )  # fmt: skip


def _put_to_use(
    simulators: Mapping[str, Simulator],
    human_df: pd.DataFrame,
    study: Study,
    *,
    share: float,
    alpha: float,
    seed: int,
    progress: bool | None,
) -> tuple[dict[str, Rectified], str | None]:
    """Each simulator's ``rectify`` result with ``share`` of the respondents labeled
    (drawn with ``seed``) and the others' personas simulated-only, on the models PPI++
    covers; and why valid inference was skipped or limited (None where it was not)."""
    from simval.rectify import rectify

    labeled, rest = pilot(human_df, frac=share, seed=seed)
    personas = rest.drop(columns=list(study.item_names))
    rectifiable = tuple(m for m in study.models if m.family in PPI_FAMILIES)
    skipped = None
    if study.weight is not None:
        skipped = (
            f"valid inference skipped: the study's survey weights ({study.weight!r}) "
            "are beyond PPI++ here, which assumes equally weighted humans"
        )
        simulators = {}
    elif len(labeled) < MIN_LABELED:
        skipped = (
            f"valid inference skipped: {share:.0%} of {len(human_df)} "
            f"respondents is {len(labeled)} labeled humans, fewer than {MIN_LABELED}"
        )
        simulators = {}
    elif len(rectifiable) < len(study.models):
        left = [m for m in study.models if m not in rectifiable]
        skipped = "valid inference (PPI++) does not cover " + "; ".join(
            f"{m.formula} (family {m.family})" for m in left
        )
        simulators = simulators if rectifiable else {}
        study = dataclasses.replace(study, models=rectifiable)
    rectified = {}
    for name, simulator in simulators.items():
        with phase(f"rectifying with {name}", enabled=progress):
            rectified[name] = rectify(
                study, labeled, simulator, unlabeled=personas, alpha=alpha,
                seed=seed, progress=progress,
            )  # fmt: skip
    return rectified, skipped


def prescore(simulator: Simulator, human_df: pd.DataFrame, study: Study) -> None:
    """Score every item for every respondent, if ``simulator`` scores options, so that
    validating it reads its answers from the result store."""
    if answers_by_scoring(simulator):
        for item in study.items:
            if item.choices is not None:  # a wide number scale is generated instead
                simulator.predict_proba(human_df, item)


def evaluation_sample(
    human_df: pd.DataFrame,
    *,
    exclude: Any = (),
    n: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The respondents minus ``exclude`` (pilot respondents), optionally ``n`` drawn at random."""
    people = human_df.drop(index=[i for i in exclude if i in human_df.index])
    if n is None or n >= len(people):
        return people
    check_count("n", n, at_least=10)
    picked = np.random.default_rng(seed).choice(len(people), size=n, replace=False)
    return people.iloc[np.sort(picked)]


def write_outputs(
    result: Benchmark,
    *,
    task: Task,
    out_dir: str | Path,
    notes: tuple[str, ...] = (),
    title: str | None = None,
) -> dict[str, Path]:
    """The report (HTML + Markdown) and the leaderboard (CSV, Markdown, HTML) in
    ``out_dir``; the report titled ``title``, else by the task (``benchmark_title``)."""
    from simval.report import write_leaderboard, write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = seen_from(out, task.source) if Path(task.source).is_file() else task.source
    notes = (*notes, f"Respondents: {len(result.human)} from {source}.")
    if result.inference_note:
        notes = (*notes, f"{result.inference_note.capitalize()}.")
    html, markdown = write_report(
        result.validations,
        out=out / "report.html",
        title=title or benchmark_title(task),
        notes=notes,
        references=(RESAMPLING,),
        rectified=result.rectified,
    )
    csv, md, board = write_leaderboard(
        result.validations, out, references=(RESAMPLING,), rectified=result.rectified
    )
    return {
        "report": html,
        "report_markdown": markdown,
        "leaderboard_csv": csv,
        "leaderboard_markdown": md,
        "leaderboard_html": board,
    }


def benchmark_title(task: Task) -> str:
    """The report's default title: "the beps task" for a built-in task, the study's own
    name (its file's stem) for a researcher's study."""
    return "simval benchmark: " + (
        f"the {task.name} task" if task.name in TASKS else task.name
    )


def existing_adapter(
    model: str,
    pilot_df: pd.DataFrame,
    study: Study,
    out_dir: Path,
    *,
    seed: int,
    cache_dir: str | Path | None = None,
    **settings: Any,
) -> Path | None:
    """``out_dir`` if it holds an adapter trained on ``pilot_df`` with ``settings``
    (finetune's keywords) from this model, so a repeated demo does not train again."""
    record = out_dir / RECORD
    if not record.is_file():
        return None
    made = json.loads(record.read_text(encoding="utf-8"))
    same = {
        "base_fingerprint": fingerprint(resolve_model(model, cache_dir=cache_dir)),
        "items": list(study.item_names),
        "pilot_index": pilot_df.index.tolist(),
        "seed": seed,
        **settings,
    }
    return out_dir if all(made.get(k) == v for k, v in same.items()) else None


DEMO_DTYPE = "fast"
"""The demo scores in bfloat16 where the CPU computes it natively (1.6x faster scoring
there), else float32; training stays float32, where bfloat16 gained nothing."""


def decision_study(study: Study) -> Study:
    """``study`` with only the items its formulas and belief–action pairs read.

    What the demo compares: every decision it prints (the formulas' verdicts and the
    coherence of each pair) needs only these items, and each item left out saves a
    prompt per respondent and model. The distributional axes are then measured on
    these items only, which the report says.
    """
    used = {name for model in study.models for name in formula_variables(model.formula)}
    used |= {name for rule in study.coherence for name in (rule.belief, rule.action)}
    return dataclasses.replace(
        study, items=tuple(item for item in study.items if item.name in used)
    )


def demo(
    *,
    out_dir: str | Path,
    model: str = "default",
    n: int | None = DEMO_RESPONDENTS,
    pilot_frac: float = PILOT_SHARE,
    reps: int = 10,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
    **training: Any,
) -> tuple[Benchmark, dict[str, Path]]:
    """The disclosure task on ``model``: base vs fine-tuned on a ``pilot_frac`` pilot, beside
    the resampling and fresh-sample references, on ``n`` holdout respondents and the
    items the decisions need (``decision_study``); writes the report and leaderboard.

    ``training`` overrides ``DEMO_TRAINING`` (any of finetune's keywords). When the
    adapter has to be trained, the base model scores the respondents beside the
    training, each on half of torch's threads (``simval.runtime.side_by_side``; one
    core each on a 2-core machine): training gains little from a second core.
    """
    from simval.simulators.hf import HFSimulator
    from simval.simulators.loading import load_causal_lm

    check_count("reps", reps)
    check_number("pilot_frac", pilot_frac, above=0, below=1)
    task = load_task("disclosure", seed=seed)
    study = decision_study(task.study)
    pilot_df, _ = pilot(task.human, frac=pilot_frac, seed=seed)
    human = evaluation_sample(task.human, exclude=pilot_df.index, n=n, seed=seed)
    out = Path(out_dir)
    settings = {**DEMO_TRAINING, **training}
    shared = {"study": study, "cache_dir": cache_dir, "progress": progress}
    made = {"model": model, "pilot_df": pilot_df, "study": study, "seed": seed}
    adapter = existing_adapter(
        **made, out_dir=out / "adapter", cache_dir=cache_dir, **settings
    )
    # converts the model once, before training reads it, and loads the base weights
    # once for both simulators; one worker beside training
    lm, tokenizer = load_causal_lm(model, dtype=DEMO_DTYPE, cache_dir=cache_dir)
    loaded = {"model": lm, "tokenizer": tokenizer, "name": model, **shared}
    base = HFSimulator.from_pretrained(workers=None if adapter else 1, **loaded)
    if adapter is None:
        adapter = side_by_side(
            adapter=partial(
                finetune, **made, out_dir=out / "adapter", progress=progress,
                cache_dir=cache_dir, **settings,
            ),
            base=partial(prescore, base, human, study),
        )["adapter"]  # fmt: skip
    simulators = {
        "base": base,
        "fine-tuned": HFSimulator.from_pretrained(adapter=adapter, **loaded),
    }
    result = bench(simulators, human, study, reps=reps, seed=seed, progress=progress)
    left_out = [name for name in task.study.item_names if name not in study.item_names]
    tuned = pilot_note(
        "fine-tuned", frac=pilot_frac, size=len(pilot_df), settings=settings, seed=seed
    )
    notes = (
        tuned,
        (
            f"Items: {', '.join(study.item_names)}, the ones the formulas and "
            f"belief–action pairs use; {', '.join(left_out)} are left out to keep the "
            "demo within minutes, so distributions and heterogeneity are measured on "
            "these items only (simval bench disclosure compares every item)."
        ),
    )
    with phase("writing the report and leaderboard", enabled=progress):
        paths = write_outputs(result, task=task, out_dir=out, notes=notes)
    return result, paths


def human_findings(result: Benchmark) -> int:
    """How many terms (intercepts aside) the humans' own models call significant."""
    rows = next(iter(result.validations.values())).coefficients
    rows = rows[(rows["subgroup"] == OVERALL) & rows["term"].map(is_finding)]
    return int((rows["human_class"].notna() & (rows["human_class"] != "null")).sum())


def pilot_note(
    name: str,
    *,
    frac: float,
    size: int,
    settings: Mapping[str, Any],
    seed: int,
    skipped: int = 0,
) -> str:
    """The report's note on a model fine-tuned on a pilot: how, how many of the pilot's
    answers were missing and so not trained on, and that the pilot is left out of the
    comparison."""
    trained = ", ".join(f"{key} {value}" for key, value in settings.items())
    answers = (
        "1 missing answer is" if skipped == 1 else f"{skipped} missing answers are"
    )
    skips = f" Its {answers} skipped in training." if skipped else ""
    return (
        f"{name}: LoRA on a random {frac:.0%} pilot ({size} respondents; {trained}; "
        f"seed {seed}); the pilot is not among the respondents compared.{skips}"
    )


def missing_answers(study: Study, df: pd.DataFrame) -> int:
    """How many of ``df``'s answers are missing (NaN or a declared missing code)."""
    items = [name for name in study.item_names if name in df.columns]
    return int(study.blank_missing(df)[items].isna().to_numpy().sum())


def task_pilot(task: Task, *, seed: int) -> pd.DataFrame:
    """A random ``PILOT_SHARE`` of the task's respondents, drawn with ``seed`` (the pilot
    ``demo`` draws); fine-tuning skips their missing answers."""
    drawn, _ = pilot(task.human, frac=PILOT_SHARE, seed=seed)
    return drawn


def bench_task(
    task: Task,
    models: Sequence[ModelSpec],
    *,
    out_dir: str | Path,
    n: int | None = None,
    reps: int = 20,
    seed: int = 0,
    mode: str = "score",
    api: str = "completions",
    api_key_env: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool | None = None,
    title: str | None = None,
    **training: Any,
) -> tuple[Benchmark, dict[str, Path]]:
    """Benchmark ``models`` on ``task``; write its report (titled ``title``, else by the
    task) and leaderboard in ``out_dir``.

    A spec asking for the pilot (``NAME=PATH:pilot``) is first LoRA-fine-tuned, as
    ``demo`` does, on a random ``PILOT_SHARE`` of the task's respondents drawn with
    ``seed`` (``task_pilot``; ``DEMO_TRAINING``, overridden by ``training``), its adapter in
    ``out_dir/adapter`` (reused when made the same way). Every respondent an adapter
    was trained on is left out before ``n`` are drawn to compare on.
    """
    check_specs(models)
    check_count("reps", reps)
    out = Path(out_dir)
    pilot_df, compared = task_samples(task, models, n=n, seed=seed)
    specs, notes = list(models), []
    tuned = next((spec for spec in models if spec.pilot), None)
    if tuned is not None:
        settings = {**DEMO_TRAINING, **training}
        made = {"model": tuned.model, "pilot_df": pilot_df, "study": task.study,
                "seed": seed, "out_dir": out / "adapter", "cache_dir": cache_dir}  # fmt: skip
        adapter = existing_adapter(**made, **settings) or finetune(
            **made, progress=progress, **settings
        )
        specs = [
            dataclasses.replace(s, adapter=str(adapter), pilot=False) if s.pilot else s
            for s in models
        ]
        note = pilot_note(
            tuned.name, frac=PILOT_SHARE, size=len(pilot_df), settings=settings,
            seed=seed, skipped=missing_answers(task.study, pilot_df),
        )  # fmt: skip
        notes.append(note)
    missing = task.study.missing_persona_note(compared)
    simulators = {
        spec.name: build_simulator(
            spec, study=task.study, mode=mode, api=api, api_key_env=api_key_env
        )
        for spec in specs
    }
    result = bench(
        simulators, compared, task.study, reps=reps, seed=seed, progress=progress
    )
    notes = (*notes, *([missing] if missing else []))
    paths = write_outputs(result, task=task, out_dir=out, notes=notes, title=title)
    return result, paths


def task_samples(
    task: Task, models: Sequence[ModelSpec], *, n: int | None, seed: int
) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """The pilot a ``:pilot`` spec trains on (None without one) and the respondents
    compared: every adapter's pilot left out, then ``n`` drawn; checked, as validate
    would check them (``check_sample``), before any model is loaded."""
    left_out = pilot_rows_of(list(models))
    pilot_df = task_pilot(task, seed=seed) if any(s.pilot for s in models) else None
    if pilot_df is not None:
        left_out |= set(pilot_df.index)
    compared = evaluation_sample(task.human, exclude=left_out, n=n, seed=seed)
    what = f"the {task.name} task" if task.name in TASKS else task.source
    check_sample(task.study, compared, what=what)
    return pilot_df, compared


def check_sample(study: Study, compared: pd.DataFrame, *, what: str) -> None:
    """Run every data check and fit the humans' own models on the respondents compared
    (``check_human_models``), before any simulator is built, so a study its data
    cannot estimate fails at once; the error names ``what`` and the sample's size."""
    from simval.comparison import check_human_models

    try:
        check_human_models(study, compared)
    except SimvalError as exc:
        raise type(exc)(
            f"{what}, on the {len(compared)} respondents compared: {exc}"
        ) from exc


def own_task(
    study: Study | str | Path,
    human: str | Path | pd.DataFrame,
    *,
    name: str | None = None,
    source: str | None = None,
) -> Task:
    """A researcher's own study (a ``Study`` or its YAML file) and respondents (a data
    file or a DataFrame, checked against the study) as a ``Task`` that ``bench_task``
    ranks models on exactly as on a built-in one. ``name`` (default: the study file's
    stem, else "study") names it in the report; ``source`` (default: the data file,
    else "a DataFrame") says where the respondents come from."""
    declared = study if isinstance(study, Study) else Study.from_yaml(study)
    if name is None:
        name = "study" if isinstance(study, Study) else Path(study).stem
    people = read_human(human)
    if source is None:
        source = "a DataFrame" if isinstance(human, pd.DataFrame) else str(human)
    declared.check_data(people, what=source)
    return Task(name=name, study=declared, human=people, source=source, simulated=False)


def bench_study(
    study: Study | str | Path,
    human: str | Path | pd.DataFrame,
    models: Sequence[ModelSpec | str],
    *,
    out_dir: str | Path,
    name: str | None = None,
    **options: Any,
) -> tuple[Benchmark, dict[str, Path]]:
    """Rank ``models`` (``ModelSpec``s or ``NAME=SPEC`` texts, as ``--model`` takes) on
    your own study and respondents, as ``bench_task`` ranks them on a built-in task:
    a ``NAME=PATH:pilot`` model is fine-tuned on a random ``PILOT_SHARE`` pilot, every
    adapter's pilot is left out, and every model is compared on the same remaining
    respondents (``n`` of them if given), paired. ``options``: ``bench_task``'s
    keywords. Returns the benchmark and the paths of its report and leaderboard."""
    specs = [m if isinstance(m, ModelSpec) else parse_model_spec(m) for m in models]
    check_specs(specs)
    task = own_task(study, human, name=name)
    return bench_task(task, specs, out_dir=out_dir, **options)


def task_names(names: Sequence[str]) -> tuple[str, ...]:
    """The tasks ``names`` stand for, suites (``TASK_SUITES``) expanded, each once, in
    order; an unknown name is an error that lists the tasks and suites."""
    if not names:
        raise OptionError("give at least one task")
    found: list[str] = []
    for name in names:
        check_option("task", name, (*TASKS, *TASK_SUITES))
        found.extend(TASK_SUITES.get(name, (name,)))
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class TaskBenchmarks:
    """A benchmark across tasks: ``benchmarks``, task -> its ``Benchmark``, and
    ``aggregate``, their validations summarised over the tasks (``simval.aggregate``;
    the resampling reference shown, never marked)."""

    benchmarks: dict[str, Benchmark]
    aggregate: Aggregate


def bench_tasks(
    tasks: Sequence[str],
    models: Sequence[ModelSpec],
    *,
    out_dir: str | Path,
    seed: int = 0,
    progress: bool | None = None,
    **options: Any,
) -> tuple[TaskBenchmarks, dict[str, Path]]:
    """Benchmark ``models`` on every task ``tasks`` name (suites expanded: ``task_names``),
    each with ``bench_task`` (``options``: its keywords, ``n`` per task) into
    ``out_dir/<task>``, then write the leaderboard across them in ``out_dir``.

    Every name, spec and task's data is checked before the first model loads. Returns
    the result and the paths (the aggregate leaderboard's, then each task's as
    ``<task>_<kind>``).
    """
    names = task_names(tasks)
    check_specs(models)
    loaded = {name: load_task(name, seed=seed) for name in names}
    for task in loaded.values():
        task_samples(task, models, n=options.get("n"), seed=seed)
    out = Path(out_dir)
    benchmarks, written = {}, {}
    for name, task in loaded.items():
        with phase(f"the {name} task", enabled=progress):
            benchmarks[name], paths = bench_task(
                task, models, out_dir=out / name, seed=seed, progress=progress,
                **options,
            )  # fmt: skip
        written |= {f"{name}_{kind}": path for kind, path in paths.items()}
    from simval.report import write_aggregate_leaderboard

    summary = aggregate(
        {name: b.validations for name, b in benchmarks.items()},
        references=(RESAMPLING,),
    )
    csv, md, html = write_aggregate_leaderboard(summary, out)
    top = {"leaderboard_csv": csv, "leaderboard_markdown": md, "leaderboard_html": html}
    return TaskBenchmarks(benchmarks=benchmarks, aggregate=summary), {**top, **written}
