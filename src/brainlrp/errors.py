"""The one exception type that means "the user's input is wrong".

The CLI turns a :class:`BrainLRPError` into one line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BrainLRPError(Exception):
    """A problem with the user's input: what is wrong, where, and how to fix it.

    Parameters
    ----------
    message : str
        What is wrong, naming the file or row.
    fix : str, optional
        How to fix it; appended after ``" - "``.
    """

    def __init__(self, message: str, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(message if not fix else f"{message} - {fix}")

    def one_line(self) -> str:
        """The message as a single line, safe to print."""
        return " ".join(str(self).split())
