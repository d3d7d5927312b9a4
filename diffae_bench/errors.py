"""Errors the CLI turns into one clear line on stderr and a non-zero exit.

Anything raised as a BenchError is a user-facing problem (bad name, missing
file, mismatched checkpoint); anything else is a bug and keeps its traceback.
"""


class BenchError(Exception):
    """A problem with the user's input or environment, reported in one line."""

    exit_code = 2


class UnknownNameError(BenchError, KeyError):
    """A registry lookup for a name that does not exist."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DataError(BenchError):
    """A data set is missing, corrupt, or lacks what a task needs."""


class CheckpointError(BenchError):
    """A checkpoint is missing, corrupt, or does not match its config."""


class TrainingDiverged(BenchError):
    """The loss became NaN/inf; the last good checkpoint is kept."""

    exit_code = 3
