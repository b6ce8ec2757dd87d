"""The ``simval`` command: validate, finetune, bench and demo.

Exit status 0 on success, 2 on bad input with one line on stderr naming the
culprit (checked before any model is loaded where possible), 1 on anything else.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from simval.errors import OptionError, SimvalError
from simval.finetune import STRATEGIES
from simval.results import Validation
from simval.study import Study

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Can LLM-simulated respondents stand in for your humans? Measure it.",
)

Reps = Annotated[
    int, typer.Option(min=1, help="Replicate synthetic samples per simulator.")
]
Seed = Annotated[int, typer.Option(help="Seed of every random step.")]
Count = Annotated[
    int | None,
    typer.Option(
        "--n", min=10, help="Compare on this many respondents, drawn at random."
    ),
]
Human = Annotated[
    Path,
    typer.Option(
        help="CSV of the human respondents: persona, treatment and item columns."
    ),
]
Model = Annotated[
    str,
    typer.Option(help='A model folder, a cached hub id, or "default" (SmolLM2-135M).'),
]


@app.command("validate")
def validate_command(
    study: Annotated[Path, typer.Argument(help="The study declaration (YAML).")],
    human: Human,
    model: Model,
    out: Annotated[
        Path, typer.Option(help="Report to write (.html; a .md twin goes beside it).")
    ],
    adapter: Annotated[Path | None, typer.Option(help="A LoRA adapter folder.")] = None,
    reps: Reps = 20,
    seed: Seed = 0,
    n: Count = None,
) -> None:
    """Compare one model's simulated respondents with the humans; write a report."""
    from simval.bench import (
        RESAMPLING,
        ModelSpec,
        bench,
        evaluation_sample,
        pilot_rows_of,
    )
    from simval.report import write_report
    from simval.simulators.hf import HFSimulator

    _check_suffix(out, ".html")
    declared, people = _study_and_human(study, human)
    pilot = pilot_rows_of(
        [ModelSpec("model", model, str(adapter) if adapter else None)]
    )
    compared = evaluation_sample(people, exclude=pilot, n=n, seed=seed)
    simulator = HFSimulator(model, study=declared, adapter=adapter)
    result = bench({"model": simulator}, compared, declared, reps=reps, seed=seed)
    notes = [f"Respondents: {len(compared)} from {human}."]
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


@app.command("finetune")
def finetune_command(
    study: Annotated[Path, typer.Argument(help="The study declaration (YAML).")],
    human: Human,
    model: Model,
    out: Annotated[Path, typer.Option(help="Folder the LoRA adapter is written to.")],
    pilot_frac: Annotated[
        float | None, typer.Option(help="Share of the respondents to train on.")
    ] = None,
    pilot_n: Annotated[
        int | None, typer.Option(help="Number of respondents to train on.")
    ] = None,
    strategy: Annotated[
        str, typer.Option(help=f"Pilot design: {', '.join(STRATEGIES)}.")
    ] = "random",
    by: Annotated[
        list[str] | None,
        typer.Option(
            help="Column(s) a balanced or per-arm pilot is drawn by (default: the arms)."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    seed: Seed = 0,
) -> None:
    """Fine-tune a LoRA adapter on a pilot drawn from the human respondents."""
    from simval.finetune import finetune, pilot

    if (pilot_frac is None) == (pilot_n is None):
        raise OptionError("give exactly one of --pilot-frac and --pilot-n")
    declared, people = _study_and_human(study, human)
    columns = by or list(declared.treatment) or None
    if strategy != "random" and not columns:
        raise OptionError(
            f"--strategy {strategy} needs --by (the study has no treatment)"
        )
    pilot_df, holdout = pilot(
        people, frac=pilot_frac, n=pilot_n, strategy=strategy, seed=seed,
        by=None if strategy == "random" else columns,
    )  # fmt: skip
    folder = finetune(model, pilot_df, declared, out, epochs=epochs, seed=seed)
    typer.echo(
        f"adapter: {folder} (trained on {len(pilot_df)} respondents; "
        f"{len(holdout)} held out for validation)"
    )


@app.command("bench")
def bench_command(
    task: Annotated[
        str, typer.Argument(help="A built-in task: disclosure or example.")
    ],
    model: Annotated[
        list[str],
        typer.Option(
            help="NAME=PATH[:ADAPTER], once per model to rank (PATH may be default)."
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Folder for the leaderboard and the report.")
    ],
    human: Annotated[
        Path | None,
        typer.Option(
            help="Your own respondents (CSV) instead of the simulated population."
        ),
    ] = None,
    reps: Reps = 20,
    seed: Seed = 0,
    n: Count = None,
) -> None:
    """Rank language models on a built-in task: a leaderboard (CSV, Markdown, HTML) and a report."""
    from simval.bench import (
        RESAMPLING,
        bench,
        evaluation_sample,
        parse_model_spec,
        pilot_rows_of,
        write_outputs,
    )  # fmt: skip
    from simval.simulators.hf import HFSimulator
    from simval.tasks import load_task

    specs = [parse_model_spec(text) for text in model]
    names = [spec.name for spec in specs]
    if len(set(names)) < len(names):
        raise OptionError(f"--model names must differ; got {', '.join(names)}")
    loaded = load_task(task, seed=seed, human=human)
    compared = evaluation_sample(
        loaded.human, exclude=pilot_rows_of(specs), n=n, seed=seed
    )
    simulators = {
        spec.name: HFSimulator(spec.model, study=loaded.study, adapter=spec.adapter)
        for spec in specs
    }
    result = bench(simulators, compared, loaded.study, reps=reps, seed=seed)
    paths = write_outputs(result, task=loaded, out_dir=out)
    _print_table(result.validations, references=(RESAMPLING,))
    typer.echo("\n".join(f"{kind}: {path}" for kind, path in paths.items()))


@app.command("demo")
def demo_command(
    out: Annotated[
        Path, typer.Option(help="Folder for the report, leaderboard and adapter.")
    ] = Path("simval-demo"),
    n: Annotated[
        int, typer.Option("--n", min=10, help="Holdout respondents to compare on.")
    ] = 60,
    reps: Reps = 10,
    seed: Seed = 0,
) -> None:
    """The disclosure task on the default model: base vs fine-tuned (10% pilot), with references."""
    from simval.bench import RESAMPLING, demo, human_findings

    typer.echo(
        "simval demo: the disclosure task (a SIMULATED reference population of 929, "
        "not human data) on SmolLM2-135M-Instruct"
    )
    result, paths = demo(out_dir=out, n=n, reps=reps, seed=seed)
    _print_table(result.validations, references=(RESAMPLING,))
    typer.echo(
        f"On {len(result.human)} respondents the humans' own models find "
        f"{human_findings(result)} significant term(s): too few to judge coefficient "
        "recovery (sign-F1, false positives, coverage), which needs the study's full "
        "sample (simval bench disclosure)."
    )
    typer.echo("\n".join(f"{kind}: {path}" for kind, path in paths.items()))


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


def _check_suffix(path: Path, suffix: str) -> None:
    if path.suffix.lower() != suffix:
        raise OptionError(f"--out {str(path)!r} must end in {suffix}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; bad input ends with one line on stderr and exit status 2."""
    try:
        code = app(args=argv, prog_name="simval", standalone_mode=False)
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
