"""Simulators: the protocol, and the reference simulators every LLM is read against."""

from simval.simulators.base import Seed, Simulator, check_output
from simval.simulators.reference import (
    BootstrapSimulator,
    FunctionSimulator,
    MarginalSimulator,
)

__all__ = [
    "BootstrapSimulator",
    "FunctionSimulator",
    "MarginalSimulator",
    "Seed",
    "Simulator",
    "check_output",
]
