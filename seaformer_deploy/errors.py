"""Errors a user can act on: the CLI prints the message alone and exits non-zero.

A message names the option it is about through ``option(field)``, never as a spelled-out flag:
the library prints the field (``formats``, the keyword argument a Python caller passed), the
command line prints its flag (``--formats``). The field is marked with NUL characters, which no
path, argument or typed text can hold, so user text in a message is never taken for a field.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_MARK = "\x00"
_FIELD = re.compile(f"{_MARK}([A-Za-z_][A-Za-z0-9_]*){_MARK}")


def option(field: str) -> str:
    """``field`` as a message names it: rendered by ``UserError.render``."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field):
        raise ValueError(f"an option field is an identifier, got {field!r}")
    return f"{_MARK}{field}{_MARK}"


class UserError(Exception):
    """Bad input or environment: the message says what was wrong, what was expected, what to do.

    ``field``: the option the error is about (default: the first one the message names), for
    callers that point at it, such as a form or the command line."""

    exit_code = 2

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field or next(iter(self.fields()), None)

    def fields(self) -> list[str]:
        """Every option the message names, in order."""
        return list(dict.fromkeys(_FIELD.findall(self._template())))

    def render(self, name: Callable[[str], str] = str) -> str:
        """The message with each named option spelled by ``name`` (default: the field itself)."""
        return _FIELD.sub(lambda m: name(m.group(1)), self._template())

    def __str__(self) -> str:
        return self.render()

    def _template(self) -> str:
        return str(self.args[0]) if self.args else ""


class OptionError(UserError):
    """An option's value, or a combination of options, that cannot work."""
