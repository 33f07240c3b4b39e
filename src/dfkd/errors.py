"""User-facing errors.

Every problem a user can cause (a bad file, a wrong option, a missing checkpoint) is raised as a
:class:`DfkdError` whose message names the thing and the problem. The CLI prints the message and
exits non-zero without a traceback; programming errors still raise ordinary exceptions.
"""


class DfkdError(Exception):
    """An error caused by the user's input, with a message meant to be read by that user."""


class TrainingStopped(Exception):
    """A run stopped at its wall-clock ``deadline`` after saving ``last.pt``: not finished, and not
    an error (the same call resumes it). Raised by the trainer, caught by the grid."""
