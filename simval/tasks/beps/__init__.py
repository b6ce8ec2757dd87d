"""The British Election Panel Study 2001: real respondents (see respondents.py)."""

ORDER = 3
"""Where this task stands in ``simval.tasks.TASKS`` (the tasks sorted by it)."""
