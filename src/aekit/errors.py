"""User-facing errors.

Every problem a user can cause (bad flag, missing file, corrupt data, a checkpoint that does not fit its
config) raises :class:`AekitError` with a one-line message that names the problem *and* the fix.  The CLI
prints that line and exits with status 2, without a traceback.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from pathlib import PurePath


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


# how a message names the options that fix it: command-line flags inside the CLI, keyword arguments in Python
_COMMAND_LINE: contextvars.ContextVar[bool] = contextvars.ContextVar("aekit_command_line", default=False)


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Within this block (the CLI runs every command in it) messages name options as flags (``--overwrite``);
    outside it, as the Python API's keyword arguments (``overwrite=True``)."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def option(name: str, value: object = True) -> str:
    """How a user sets option ``name`` to ``value``: ``--name-with-dashes VALUE`` (just the flag for True) on the
    command line, ``name=value`` in Python (paths and strings quoted)."""
    if _COMMAND_LINE.get():
        flag = "--" + name.replace("_", "-")
        return flag if value is True else f"{flag} {value}"
    return f"{name}={str(value)!r}" if isinstance(value, (str, PurePath)) else f"{name}={value!r}"


def option_name(name: str) -> str:
    """The option ``name`` as the user spells it: ``--name-with-dashes`` on the command line, ``name`` in Python."""
    return "--" + name.replace("_", "-") if _COMMAND_LINE.get() else name
