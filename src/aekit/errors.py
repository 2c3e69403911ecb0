"""User-facing errors.

Every problem a user can cause (bad flag, missing file, corrupt data, a checkpoint that does not fit its
config) raises :class:`AekitError` with a one-line message that names the problem *and* the fix.  The CLI
prints that line and exits with status 2, without a traceback.
"""

from __future__ import annotations


class AekitError(Exception):
    """A problem with the user's input; the message says what is wrong and how to fix it."""

    exit_code = 2


class DataError(AekitError):
    """Missing, corrupt or malformed data."""


class ConfigError(AekitError):
    """Unknown option, wrong type, or a value out of range."""


class RunError(AekitError):
    """A run directory that is missing, incomplete or does not fit its config."""


class TrainingDiverged(AekitError):
    """The loss became NaN or infinite."""
