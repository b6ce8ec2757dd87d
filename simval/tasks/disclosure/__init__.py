"""The information-disclosure vignette experiment: a simulated reference population
(see population.py)."""

ORDER = 1
"""Where this task stands in ``simval.tasks.TASKS`` (the tasks sorted by it)."""
