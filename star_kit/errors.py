"""Errors that the CLI turns into one clear line and an exit code."""

from __future__ import annotations

import difflib


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class StarKitError(Exception):
    """A user-facing error: the message is printed as one line, the process exits with ``exit_code``."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UnknownNameError(StarKitError):
    """A task, extractor, sampler, trainer or model name that nothing provides (exit code 2)."""

    exit_code = 2

    def __init__(self, kind: str, name: str, available: list[str] | None = None, hint: str = ""):
        known = ", ".join(sorted(available)) if available else "none"
        message = f"unknown {kind} {name!r}"
        close = [a for a in available or () if a.lower() == str(name).lower()] or \
            difflib.get_close_matches(str(name), list(available or ()), n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
        message += f"; available: {known}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class PluginError(StarKitError):
    """A plugin failed to import, registered something twice, or raised while running."""

    exit_code = 1


class DataError(StarKitError):
    """Bad input data: the message names the file and line."""

    exit_code = 2
