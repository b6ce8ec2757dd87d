"""The small bundled example, a two-arm sharing experiment: a simulated reference
population (see population.py)."""

ORDER = 2
"""Where this task stands in ``simval.tasks.TASKS`` (the tasks sorted by it)."""
