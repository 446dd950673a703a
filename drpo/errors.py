"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class UserInputError(Exception):
    """Bad input: the message says what is wrong, where, and how to fix it."""
