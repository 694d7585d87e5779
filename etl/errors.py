"""The one base of the errors a user can fix: :class:`UserError`.

It lives in the lowest layer so that every layer (etl, kg, encoders, k3m) can raise it.
The ``k3m`` command (k3m/cli.py) prints a UserError as one line, ``k3m CMD: error: MESSAGE``,
and exits 2: bad arguments, a bad file, a bad config, state the user can change. Anything
the command does not know as a user error or a runtime failure is a bug and says so.

A class keeps its older base as a second one (``class MappingError(UserError, ValueError)``)
where Python callers may catch it by that base.
"""
from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; the message says what and, where it can, how."""

    exit_code = 2


class InvalidValue(UserError, ValueError):
    """A value the user gave (an option, a setting, a parameter; a build or checkpoint that does not fit what
    was asked of it) that cannot be used. A ValueError too, for callers that catch those."""


class NotFound(UserError, KeyError):
    """Something the user named (an item, a property, a task) is not there. A KeyError (so a
    LookupError too) for callers that catch those."""

    def __str__(self) -> str:  # KeyError would show the repr of its message
        return str(self.args[0]) if self.args else ""
