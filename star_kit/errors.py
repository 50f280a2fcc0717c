"""Errors that the CLI turns into one clear line and an exit code."""

from __future__ import annotations

import difflib
import sys
from typing import Any, Hashable

#: the keys :func:`warn_once` has warned about in this process
WARNED: set = set()


def one_line(exc: BaseException, whole: bool = False, limit: int = 600, typed: bool = True) -> str:
    """An exception as one line: its type and the first line of its message; ``whole``: all its lines, joined
    with '; ' (a YAML or transformers error whose reason is on its second line), cut at ``limit`` characters;
    ``typed=False``: the message alone (its type when it has none)."""
    text = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not text:
        return type(exc).__name__
    message = "; ".join(text) if whole else text[0]
    message = f"{message[:limit]}{'...' if len(message) > limit else ''}"
    return f"{type(exc).__name__}: {message}" if typed else message


def warn_once(key: Hashable, message: str, seen: set | None = None) -> bool:
    """Print ``warning: MESSAGE`` to stderr the first time ``key`` is met in ``seen`` (default: this process's
    :data:`WARNED`); True when it printed. A plugin's failure that repeats (a logger that cannot write, an extractor
    that raises on every text) is shown once, not once per event."""
    seen = WARNED if seen is None else seen
    if key in seen:
        return False
    seen.add(key)
    print(f"warning: {message}", file=sys.stderr)
    return True


class StarKitError(Exception):
    """A user-facing error: the message is printed as one line, the process exits with ``exit_code``."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ArgumentError(StarKitError, TypeError):
    """A wrong argument to :func:`star_kit.run` or :func:`star_kit.bench` (a keyword they do not take, a config of
    another type): a StarKitError (``exit_code`` 2) like every other bad input, and a TypeError, as Python raises
    for an unexpected keyword."""

    exit_code = 2


def did_you_mean(value: str, choices, n: int = 1, quote: bool = True) -> str:
    """' (did you mean 'x'?)' for the nearest of ``choices`` to a mistyped ``value``, else '': the same name in
    another case ('GSM8K' -> 'gsm8k'), then the names it begins (three letters at least: 'adamw' -> 'adamw_torch'),
    then the most similar (difflib: '--itrations' -> '--iterations'); up to ``n`` of them. The one suggestion rule
    of every "unknown name" error."""
    value, choices = str(value), [str(c) for c in choices]
    lower = value.lower()
    picked = [c for c in choices if c.lower() == lower]  # the same in another case: that one only
    if not picked:
        begun = [c for c in choices if len(value) >= 3 and c.lower().startswith(lower)]
        by_lower = {c.lower(): c for c in choices}
        similar = [by_lower[c] for c in difflib.get_close_matches(lower, list(by_lower), n=n)]
        picked = begun + similar
    picked = list(dict.fromkeys(picked))[:n]
    if not picked:
        return ""
    return f" (did you mean {' or '.join(repr(c) if quote else c for c in picked)}?)"


class UnknownNameError(StarKitError):
    """A task, extractor, sampler, trainer or model name that nothing provides (exit code 2)."""

    exit_code = 2

    def __init__(self, kind: str, name: str, available: list[str] | None = None, hint: str = ""):
        self.kind, self.name, self.available = kind, name, list(available or ())
        known = ", ".join(sorted(available)) if available else "none"
        message = f"unknown {kind} {name!r}{did_you_mean(name, available or ())}; available: {known}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class PluginError(StarKitError):
    """A plugin failed to import, registered something twice, or raised while running."""

    exit_code = 1


class DataError(StarKitError):
    """Bad input data: the message names the file and line."""

    exit_code = 2


def shown_value(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters for a warning; never raises (a repr can: an int of more than
    4300 digits, a plugin's own ``__repr__``)."""
    try:
        text = repr(value)
        return text if len(text) <= limit else text[:limit - 3] + "..."
    except Exception:
        return "an unprintable value"
