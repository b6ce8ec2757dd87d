"""simval: can LLM-simulated survey respondents stand in for humans in your study?

Declare the study, simulate respondents, and compare them with the humans on
heterogeneity, distributional and subgroup alignment, belief–action coherence and
coefficient recovery. Importing simval never imports torch or transformers.
"""

from simval.errors import (
    DataError,
    EstimationError,
    FormulaError,
    OptionError,
    SimulatorError,
    SimvalError,
    StudyError,
)
from simval.finetune import finetune, pilot
from simval.metrics import (
    Heterogeneity,
    Recovery,
    coefficient_recovery,
    heterogeneity,
    incoherence_rate,
    jsd,
    variance_ratio,
)
from simval.regression import Fit, fit
from simval.simulators import (
    BootstrapSimulator,
    FreshSampleSimulator,
    FunctionSimulator,
    HFSimulator,
    MarginalSimulator,
    PromptTemplate,
    ServedSimulator,
    Simulator,
)
from simval.study import Coherence, Item, Model, Study
from simval.validate import Validation, compare, validate

__version__ = "0.1.0"

__all__ = [
    "BootstrapSimulator",
    "Coherence",
    "DataError",
    "EstimationError",
    "Fit",
    "FormulaError",
    "FreshSampleSimulator",
    "FunctionSimulator",
    "HFSimulator",
    "Heterogeneity",
    "Item",
    "MarginalSimulator",
    "Model",
    "OptionError",
    "PromptTemplate",
    "Recovery",
    "ServedSimulator",
    "Simulator",
    "SimulatorError",
    "SimvalError",
    "Study",
    "StudyError",
    "Validation",
    "coefficient_recovery",
    "compare",
    "finetune",
    "fit",
    "heterogeneity",
    "incoherence_rate",
    "jsd",
    "pilot",
    "validate",
    "variance_ratio",
]
