"""The World Values Survey (four countries): real respondents (see respondents.py)."""

ORDER = 4
"""Where this task stands in ``simval.tasks.TASKS`` (the tasks sorted by it)."""
