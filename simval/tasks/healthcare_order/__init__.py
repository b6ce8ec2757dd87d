"""The Pew question-order experiment on the 2010 health care law: real respondents."""

ORDER = 7
"""Where this task stands in ``simval.tasks.TASKS`` (the tasks sorted by it)."""
