"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""

from schemas.errors import ProjectError


class UserInputError(ProjectError):
    """Bad input: the message says what is wrong, where, and how to fix it."""

    exit_code = 2
