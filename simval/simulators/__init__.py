"""Simulators: the protocol, and the reference simulators every LLM is read against."""

from simval.simulators.base import Seed, Simulator, check_output
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
    "MarginalSimulator",
    "PromptTemplate",
    "Seed",
    "ServedSimulator",
    "Simulator",
    "check_output",
]
