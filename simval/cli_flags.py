"""The flags of the ``simval`` command: each one's type, name, metavar, help and range,
and how the text of those typer cannot parse becomes a value.

Declared once here and used by the commands in ``simval.cli``; typer checks types and
ranges, the parsers here the rest of a single flag's value (as ``refuse`` words it),
the commands how flags go together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

# the flags' names and defaults only: pandas, scipy and torch load with the commands
from simval.defaults import (
    DEMO_TRAINING,
    PILOT_SHARE,
    TASK_SUITES,
    TASKS,
    Api,
    Mode,
    Strategy,
)
from simval.errors import OptionError, refuse

if TYPE_CHECKING:
    from simval.simulators.base import Simulator
    from simval.simulators.specs import ModelSpec
    from simval.study import Study


def option(metavar: str, help: str, *flags: str, **kw: Any) -> Any:
    """A flag: what it takes (``metavar``), its help, its names (default: the
    parameter's) and typer's other settings (``min``)."""
    return typer.Option(*flags, metavar=metavar, help=help, **kw)


SUITES = "; ".join(f"{name}: {' '.join(tasks)}" for name, tasks in TASK_SUITES.items())
"""The task suites ``simval bench --task`` takes, with the tasks each stands for."""
DEMO_FLAGS = " ".join(
    f"--{key.replace('_', '-')} {value}" for key, value in DEMO_TRAINING.items()
)
"""The finetune flags that train as ``simval demo`` does (``simval.bench.DEMO_TRAINING``)."""

Reps = Annotated[int, option("N", "Replicate synthetic samples per simulator.", min=1)]
Seed = Annotated[int, option("SEED", "Seed of every random step.", min=0)]
Count = Annotated[
    int | None,
    option("N", "Compare on this many respondents, drawn at random (default: all).",
           "--n", min=10),
]  # fmt: skip
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
    option("FILE", "The human respondents: persona, treatment and item columns, in a "
           "CSV (any separator), Stata .dta, SPSS .sav or Parquet file."),
]  # fmt: skip
Model = Annotated[
    str,
    option("MODEL", 'A model folder, a cached hub id, or "default" (SmolLM2-135M).'),
]
ModelOrServed = Annotated[
    str,
    option("MODEL", 'A model folder, a cached hub id, "default" (SmolLM2-135M), or '
           "SERVED_MODEL@URL for a model on an OpenAI-compatible server (vLLM, SGLang; "
           "URL like http://host:8000/v1; replicas: URL1,URL2).", "--model"),
]  # fmt: skip
ApiKeyEnv = Annotated[
    str | None,
    option("VARIABLE", "Environment variable holding the API key of served models "
           "(never stored or shown)."),
]  # fmt: skip
AnswerMode = Annotated[
    Mode,
    option("MODE", "score: read each option's probability; generate: sample an answer "
           "and parse it.", "--mode"),
]  # fmt: skip
ServedApi = Annotated[
    Api,
    option("API", "How served models are asked: completions (exact option scoring, "
           "vLLM and SGLang) or chat (chat-only APIs; scoring reads one-word options "
           "from the first token's top log-probabilities).", "--api"),
]  # fmt: skip
Adapter = Annotated[
    Path | None,
    option("FOLDER", "A LoRA adapter folder (from simval finetune); the respondents it "
           "was trained on are left out."),
]  # fmt: skip
Epochs = Annotated[int, option("N", "Passes over the pilot's examples.", min=1)]
LearningRate = Annotated[
    float, option("RATE", "Learning rate of the LoRA weights (AdamW), above 0.")
]
Layers = Annotated[
    int | None,
    option("N", "Put LoRA on the last N transformer blocks only; the blocks below run "
           "forward only, which is cheaper (simval finetune without it: every block).",
           min=1),
]  # fmt: skip
BatchSize = Annotated[
    int,
    option("N", "Examples per training step (those of one item and arm together).",
           min=1),
]  # fmt: skip
HtmlReport = Annotated[
    Path, option("REPORT.html", "Report to write (.html; a .md twin goes beside it).")
]
Title = Annotated[
    str | None,
    option("TEXT", "The report's title (default: simval's, naming the study or task)."),
]
Labeled = Annotated[
    float | None,
    option("FRAC", "Use this share of the humans (drawn at random) as the labeled "
           "ones, strictly between 0 and 1; the other humans' personas become "
           "simulated-only respondents, and every human's own estimates are shown "
           "beside.", "--labeled-frac"),
]  # fmt: skip
LabeledN = Annotated[
    int | None,
    option("N", "As --labeled-frac, with this number of humans.", "--labeled-n", min=2),
]
Unlabeled = Annotated[
    int | None,
    option("N", "Simulated-only respondents: N of the humans' personas re-drawn with "
           "the treatment re-randomised (a study with a treatment; without one, "
           "give --personas or --labeled-frac).", "--unlabeled", min=1),
]  # fmt: skip
Personas = Annotated[
    Path | None,
    option("FILE.csv", "Simulated-only respondents: a CSV of personas drawn from the "
           "population the humans come from (arms drawn where it has no treatment "
           "column).", "--personas"),
]  # fmt: skip
Lam = Annotated[
    str,
    option("LAMBDA", "tuned (a λ per term), tuned_overall (one λ per formula), or a "
           "number in [0, 1] (0: humans only).", "--lam"),
]  # fmt: skip
Alpha = Annotated[float, option("ALPHA", "1 − the confidence level of the intervals.")]

HtmlReportTable = Annotated[
    Path,
    option("REPORT.html", "Report to write (.html; a .md twin and a .csv of the table "
           "beside)."),
]  # fmt: skip
TaskFolder = Annotated[
    Path,
    option("FOLDER", "Folder for study.yaml and data.csv (made if missing; existing "
           "files are never overwritten)."),
]  # fmt: skip
SurveyFile = Annotated[
    Path,
    typer.Argument(
        metavar="DATA",
        help="The survey's respondents: .csv (any delimiter), .dta, .sav or .parquet, "
        "with value labels where the file has them.",
    ),
]
DraftFolder = Annotated[
    Path,
    option("FOLDER", "Folder for the drafted study.yaml (made if missing; an existing "
           "study.yaml is never overwritten)."),
]  # fmt: skip
PopulationSeed = Annotated[
    int, option("SEED", "Seed of the simulated population.", min=0)
]
AdapterFolder = Annotated[
    Path, option("FOLDER", "Folder the LoRA adapter is written to.")
]
PilotFrac = Annotated[
    float | None,
    option("FRAC", "Share of the respondents to train on, strictly between 0 and 1; "
           "give this or --pilot-n."),
]  # fmt: skip
PilotN = Annotated[
    int | None,
    option("N", "Number of respondents to train on (per arm with per_arm); give this "
           "or --pilot-frac.", min=1),
]  # fmt: skip
PilotStrategy = Annotated[
    Strategy,
    option("STRATEGY", "Pilot design: random (a simple random sample), balanced (the "
           "same number from each level of --by) or per_arm (the share or number from "
           "each arm)."),
]  # fmt: skip
By = Annotated[
    list[str] | None,
    option("COLUMN", "Column a balanced or per-arm pilot is drawn by, repeated for "
           "several (default: the study's treatment columns)."),
]  # fmt: skip
CostHuman = Annotated[float, option("COST", "Cost of one human respondent.")]
CostSimulated = Annotated[
    float, option("COST", "Cost of one simulated respondent (above 0).")
]
PlanOut = Annotated[Path, option("PLAN.csv", "The plan's table (CSV).")]
EffectiveN = Annotated[float | None, option("N", "Target: the precision of N humans.")]
HalfWidth = Annotated[
    float | None,
    option("WIDTH", "Target: this CI half-width on every term (in its own units)."),
]
Budget = Annotated[
    float | None, option("COST", "Target: the most precise mix for this.")
]
Fractions = Annotated[
    str | None,
    option("F,F,...", "Also ask whether to spend the humans given on fine-tuning: for "
           "each share (e.g. 0,0.25,0.5) fine-tune LoRA on that share of them, as "
           f"simval demo trains ({DEMO_FLAGS}), and rectify with the rest; writes "
           "PLAN_finetune.csv and a figure per formula."),
]  # fmt: skip
PlanLayers = Annotated[
    int,
    option("N", "With --fractions: LoRA on the last N transformer blocks.", min=1),
]
ModelSpecs = Annotated[
    list[str],
    option("NAME=PATH[:ADAPTER]", "Once per model to rank: its name, model (PATH may "
           "be default) and optional LoRA adapter folder, or :pilot to LoRA-fine-tune "
           f"the model on a random {PILOT_SHARE:.0%} pilot of each task (or your "
           "study's respondents) first (as "
           "simval demo does; the pilot left out of that task's comparison; the "
           "adapter in the task's folder); or NAME=SERVED_MODEL@URL for a model on an "
           "OpenAI-compatible server (vLLM, SGLang: URL like http://host:8000/v1; "
           "replicas of one server: URL1,URL2)."),
]  # fmt: skip
BenchOut = Annotated[
    Path,
    option("FOLDER", "Folder for the leaderboard and the report (with --task: each "
           "task's in FOLDER/TASK, the leaderboard across the tasks in FOLDER)."),
]  # fmt: skip
OneTask = Annotated[
    str | None,
    typer.Argument(
        metavar="TASK",
        help=f"One built-in task: {' or '.join(TASKS)} (or give --task); or your own "
        "study's YAML file (STUDY.yaml, with --human).",
    ),
]
Tasks = Annotated[
    list[str] | None,
    option("TASK", "A task to benchmark across, once per task: a built-in task or a "
           f"suite ({SUITES}).", "--task"),
]  # fmt: skip
OwnHuman = Annotated[
    Path | None,
    option("FILE", "Your own respondents (CSV, .dta, .sav or Parquet) instead of the "
           "task's own (simulated or real); one TASK only; required with a STUDY.yaml."),
]  # fmt: skip
DemoOut = Annotated[
    Path, option("FOLDER", "Folder for the report, leaderboard and adapter.")
]
DemoCount = Annotated[
    int, option("N", "Holdout respondents to compare on.", "--n", min=10)
]
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Check every flag and file, then print what the "
                 "run would ask of the model (prompts not yet in the result store; "
                 "requests and tokens for a served model) and its estimated time from "
                 "a short measured warm-up (which loads the model), and stop."),
]  # fmt: skip
Price = Annotated[
    str | None,
    option("IN[,OUT]", "With --dry-run: the price per million prompt tokens and per "
           "million completion tokens (one number prices both), to forecast the cost "
           "of a served model's tokens.", "--price"),
]  # fmt: skip


def study_path(task: str) -> Path | None:
    """bench's TASK as a study file: a path that exists or ends in .yaml/.yml and is not
    a built-in task's name (a folder named like a task, as ``simval task`` writes,
    still means the task); None for a task name."""
    path = Path(task)
    if task in TASKS or not (path.exists() or path.suffix.lower() in (".yaml", ".yml")):
        return None
    return path


DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
"""What the model ``default`` is, as reports and leaderboards name it."""


def simulator_name(spec: ModelSpec) -> str:
    """A simulator's name in leaderboards and reports: the served model's name
    (nothing of its URL, so never a credential), or the local model's name (the last
    part of its folder or hub id; ``default`` is SmolLM2-135M-Instruct) and its
    adapter folder's name: "SmolLM2-135M-Instruct + pilot10". No machine path."""
    if spec.server:
        return spec.model
    model = DEFAULT_MODEL_NAME if spec.model == "default" else _last_part(spec.model)
    return model + (f" + {_last_part(spec.adapter)}" if spec.adapter else "")


def _last_part(path: str) -> str:
    """A folder's or hub id's last part (of the resolved folder: "." is the current
    folder's name)."""
    return Path(path).expanduser().resolve().name or path


def fractions(text: str | None) -> list[float]:
    """--fractions: comma-separated shares in [0, 1)."""
    if text is None:
        return []
    try:
        shares = [float(part) for part in text.split(",")]
    except ValueError:
        shares = [float("nan")]
    if not all(0 <= share < 1 for share in shares):
        raise refuse(
            "--fractions", text, "comma-separated numbers in [0, 1), e.g. 0,0.25,0.5"
        )
    return shares


def price(text: str | None) -> tuple[float, float] | None:
    """--price: IN or IN,OUT, numbers of at least 0 per million tokens."""
    if text is None:
        return None
    try:
        parts = [float(part) for part in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or not all(0 <= part < float("inf") for part in parts):
        raise refuse(
            "--price", text, "IN or IN,OUT: the price per million prompt tokens and "
            "per million completion tokens, numbers of at least 0, e.g. 2.5,10",
        )  # fmt: skip
    return parts[0], parts[-1]


def lam(text: str) -> float | str:
    """--lam: 'tuned', 'tuned_overall' or a number in [0, 1]."""
    if text in ("tuned", "tuned_overall"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise refuse("--lam", text, "tuned, tuned_overall or a number in [0, 1]")
    return value


@dataclass(frozen=True)
class ModelFlags:
    """The one model a command runs: --model, --adapter, --mode, --api and
    --api-key-env."""

    model: str
    adapter: Path | None = None
    mode: str = "score"
    api: str = "completions"
    api_key_env: str | None = None

    def spec(self) -> ModelSpec:
        """--model as a spec named by its model and adapter (``simulator_name``): a
        served SERVED_MODEL@URL, else a local model with the --adapter folder."""
        from simval.simulators.specs import ModelSpec, parse_model_spec

        try:
            spec = parse_model_spec(f"model={self.model}")
        except OptionError as exc:  # name the flag as typed, not the spec made of it
            raise OptionError(
                str(exc).replace("--model model=", "--model ").replace("model=", "")
            ) from exc
        if not spec.server:
            adapter = str(self.adapter) if self.adapter else None
            spec = ModelSpec("model", self.model, adapter)
        return dataclasses.replace(spec, name=simulator_name(spec))

    def simulator(self, study: Study) -> Simulator:
        """The simulator of ``spec()`` for ``study``; loads the model."""
        from simval.simulators.specs import build_simulator

        return build_simulator(
            self.spec(), study=study, mode=self.mode, api=self.api,
            api_key_env=self.api_key_env,
        )  # fmt: skip
