"""Simulators: the contract, the language-model backends, and the reference simulators
every LLM is read against."""

from simval.simulators.base import (
    LLMSimulator,
    ModalSimulator,
    ParsingSimulator,
    ScoringSimulator,
    Seed,
    Simulator,
    StudySimulator,
    TrainedSimulator,
    answers_by_scoring,
    check_output,
)
from simval.simulators.hf import HFSimulator
from simval.simulators.prompts import PromptTemplate
from simval.simulators.reference import (
    BootstrapSimulator,
    FunctionSimulator,
    MarginalSimulator,
)
from simval.simulators.served import ServedSimulator

__all__ = [
    "BootstrapSimulator",
    "FunctionSimulator",
    "HFSimulator",
    "LLMSimulator",
    "MarginalSimulator",
    "ModalSimulator",
    "ParsingSimulator",
    "PromptTemplate",
    "ScoringSimulator",
    "Seed",
    "ServedSimulator",
    "Simulator",
    "StudySimulator",
    "TrainedSimulator",
    "answers_by_scoring",
    "check_output",
]
