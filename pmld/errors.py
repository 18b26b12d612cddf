"""Errors that pmld reports to a user in one line, without a traceback.

Every expected failure (a bad file, a wrong option, input that cannot be analysed)
raises :class:`PmldError` or a subclass. The command line prints ``pmld: <message>``
and exits with the class's ``exit_code``; anything else is a bug and keeps its traceback.

Exit codes
----------
0    success
1    unexpected internal error (a bug: please report it with the traceback)
2    the input or the command line is not usable: a missing, corrupt, truncated or
     unsupported file, invalid data, or an invalid option or parameter value
130  interrupted (Ctrl-C)
"""

from __future__ import annotations


class PmldError(Exception):
    """An expected failure, reported to the user as one line."""

    exit_code = 2

    def __init__(self, message: str, *, path: object | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputError(PmldError):
    """The input file or data is missing, corrupt, truncated or not usable."""

    exit_code = 2


class FormatError(InputError):
    """A file is not of the expected format or schema version."""


class UsageError(PmldError):
    """An option or parameter is invalid."""

    exit_code = 2
