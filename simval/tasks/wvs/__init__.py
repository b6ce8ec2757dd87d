"""The World Values Survey (four countries): real respondents (see respondents.py)."""
