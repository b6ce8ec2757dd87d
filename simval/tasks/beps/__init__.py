"""The British Election Panel Study 2001: real respondents (see respondents.py)."""
