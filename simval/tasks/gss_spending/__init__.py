"""The General Social Survey 2018 spending items: real respondents (see respondents.py)."""
