"""The two kinds of error a user can see: bad input (exit 2) and a failure (exit 1).

Anything raised as one of these reaches the user as one line on stderr, never a traceback.
"""


class TessonError(Exception):
    """Something went wrong while doing what was asked: exit 1."""

    exit_code = 1


class UsageError(TessonError):
    """What was asked makes no sense: exit 2."""

    exit_code = 2
