"""simval: can LLM-simulated survey respondents stand in for humans in your study?

Declare the study, simulate respondents, and compare them with the humans on
heterogeneity, distributional and subgroup alignment, belief–action coherence and
coefficient recovery. Importing simval loads nothing heavy (no statsmodels, torch or
transformers): each name is imported from its module when first used.
"""

import pkgutil
import sys
import types
from importlib import import_module

__version__ = "0.1.0"

_HOMES = {
    "simval.errors": (
        "DataError", "EstimationError", "FormulaError", "MissingDependencyError",
        "ModelError", "OptionError", "SimulatorError", "SimvalError", "StudyError",
    ),
    "simval.finetune": ("finetune", "pilot"),
    "simval.metrics": (
        "Heterogeneity", "Recovery", "coefficient_recovery", "heterogeneity",
        "incoherence_rate", "jsd", "variance_ratio",
    ),
    "simval.plan": ("Plan", "Tradeoff", "finetune_or_rectify", "plan"),
    "simval.rectify": ("Rectified", "rectify"),
    "simval.regression": ("Fit", "fit"),
    "simval.simulators": (
        "BootstrapSimulator", "FunctionSimulator",
        "HFSimulator", "MarginalSimulator", "PromptTemplate", "ServedSimulator",
        "Simulator",
    ),
    "simval.study": ("Coherence", "Item", "Model", "Number", "Study"),
    "simval.validate": ("Validation", "compare", "validate"),
}  # fmt: skip
"""The public names, by the module that defines them."""

_HOME = {name: module for module, names in _HOMES.items() for name in names}

__all__ = list(_HOME)


class _Package(types.ModuleType):
    """simval itself. Importing a submodule sets its name on the package; where a
    public function shares the submodule's name (``validate``, ``finetune``), the
    function takes the name, as it did when the package imported everything."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and _HOME.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def _submodules() -> set[str]:
    """The public submodules and subpackages (``metrics``, ``report``, ...), listed
    from the package's folder without importing them."""
    return {
        m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")
    }


def __getattr__(name: str) -> object:
    """Import a public name, or a public submodule, on first use (PEP 562): after
    ``import simval``, ``simval.metrics.jsd`` works as ``scipy.stats`` does."""
    if name in _HOME:
        value = getattr(import_module(_HOME[name]), name)
    elif name in _submodules():
        value = import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module 'simval' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_submodules()})
