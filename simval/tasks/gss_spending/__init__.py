"""The General Social Survey 2018 spending items: real respondents (see respondents.py)."""

ORDER = 6
"""Where this task stands in ``simval.tasks.TASKS`` (the tasks sorted by it)."""
