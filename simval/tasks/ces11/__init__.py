"""The Canadian Election Study 2011: real respondents with survey weights (see respondents.py)."""

ORDER = 5
"""Where this task stands in ``simval.tasks.TASKS`` (the tasks sorted by it)."""
