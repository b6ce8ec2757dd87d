"""The Pew question-order experiment on the 2010 health care law: real respondents."""
