"""The Canadian Election Study 2011: real respondents with survey weights (see respondents.py)."""
