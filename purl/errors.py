"""The base of every error a user can fix (bad input, a missing file, a wrong
option): entry scripts print its message after the script's name and exit 1,
without a traceback. Anything else is a bug and keeps its traceback."""


class PurlError(Exception):
    """An error whose message tells the user what is wrong and how to fix it."""


class UsageError(PurlError, ValueError):
    """A command line or input file the command cannot use."""
