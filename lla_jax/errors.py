"""The error type of bad user input (a file or value the user supplied), so that entry points can tell it
from a bug: main.py prints its message as ``error: ...`` and exits with status 1, without a stack trace."""


class BadInputError(ValueError):
  """A user-supplied file or value is malformed; the message names the file, line or field and the form
  that was expected."""
