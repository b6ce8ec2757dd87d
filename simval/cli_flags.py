"""The flags of the ``simval`` command: each one's type, name, metavar, help and range,
and how the text of those typer cannot parse becomes a value.

Declared once here and used by the commands in ``simval.cli``; typer checks types and
ranges, the parsers here the rest of a single flag's value (as ``refuse`` words it),
the commands how flags go together.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from simval.bench import DEMO_TRAINING, PILOT_SHARE, TASK_SUITES
from simval.errors import refuse
from simval.finetune import Strategy, finetune
from simval.simulators.hf import Mode
from simval.simulators.served import Api
from simval.simulators.specs import ModelSpec, build_simulator, parse_model_spec
from simval.tasks import TASKS

if TYPE_CHECKING:
    from simval.simulators.base import Simulator
    from simval.study import Study


def option(metavar: str, help: str, *flags: str, **kw: Any) -> Any:
    """A flag: what it takes (``metavar``), its help, its names (default: the
    parameter's) and typer's other settings (``min``)."""
    return typer.Option(*flags, metavar=metavar, help=help, **kw)


SUITES = "; ".join(f"{name}: {' '.join(tasks)}" for name, tasks in TASK_SUITES.items())
"""The task suites ``simval bench --task`` takes, with the tasks each stands for."""
TRAINING = inspect.signature(finetune).parameters
"""``simval.finetune.finetune``'s keywords: the finetune command's defaults are its own."""
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
    option("FILE.csv", "CSV of the human respondents: persona, treatment and item "
           "columns."),
]  # fmt: skip
Model = Annotated[
    str,
    option("MODEL", 'A model folder, a cached hub id, or "default" (SmolLM2-135M).'),
]
ModelOrServed = Annotated[
    str,
    option("MODEL", 'A model folder, a cached hub id, "default" (SmolLM2-135M), or '
           "SERVED_MODEL@URL for a model on an OpenAI-compatible server (vLLM, SGLang; "
           "URL like http://host:8000/v1).", "--model"),
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
           "the treatment re-randomised.", "--unlabeled", min=1),
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
           f"the model on a random {PILOT_SHARE:.0%} pilot of each task first (as "
           "simval demo does; the pilot left out of that task's comparison; the "
           "adapter in the task's folder); or NAME=SERVED_MODEL@URL for a model on an "
           "OpenAI-compatible server (vLLM, SGLang: URL like http://host:8000/v1)."),
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
        help=f"One built-in task: {' or '.join(TASKS)} (or give --task).",
    ),
]
Tasks = Annotated[
    list[str] | None,
    option("TASK", "A task to benchmark across, once per task: a built-in task or a "
           f"suite ({SUITES}).", "--task"),
]  # fmt: skip
OwnHuman = Annotated[
    Path | None,
    option("FILE.csv", "Your own respondents (CSV) instead of the task's own "
           "(simulated or real); one TASK only."),
]  # fmt: skip
DemoOut = Annotated[
    Path, option("FOLDER", "Folder for the report, leaderboard and adapter.")
]
DemoCount = Annotated[
    int, option("N", "Holdout respondents to compare on.", "--n", min=10)
]


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
        """--model as a spec named "model": a served SERVED_MODEL@URL, else a local
        model with the --adapter folder."""
        spec = parse_model_spec(f"model={self.model}")
        if spec.server:
            return spec
        adapter = str(self.adapter) if self.adapter else None
        return ModelSpec("model", self.model, adapter)

    def simulator(self, study: Study) -> Simulator:
        """The simulator of ``spec()`` for ``study``; loads the model."""
        return build_simulator(
            self.spec(), study=study, mode=self.mode, api=self.api,
            api_key_env=self.api_key_env,
        )  # fmt: skip
