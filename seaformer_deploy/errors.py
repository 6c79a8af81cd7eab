"""Errors a user can act on: the CLI prints the message alone and exits non-zero."""


class UserError(Exception):
    """Bad input or environment: the message says what was wrong, what was expected, what to do."""

    exit_code = 2
