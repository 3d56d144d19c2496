"""The one exception type for problems the user causes and can fix.

train.py and the scripts print a `UserError` as one line (no traceback) and exit non-zero; any
other exception is a bug and keeps its traceback. The message names what was wrong, where (file,
row, key) and what to do about it.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input, a bad configuration or a machine problem the user can fix (disk full, run busy)."""
