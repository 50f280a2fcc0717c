"""Safe arithmetic for verifiers: parse and compute what a rationale writes, exactly, never with eval.

``value("(300 + 200) + (40 + 80)")`` -> ``Fraction(620)``; anything it cannot read returns None (never raises).
Grammar: numbers (``1,080``, ``12.5``, ``$3``, ``.5``), ``+ - * / × x ÷``, unary minus, parentheses. Sizes are
bounded (expression length, digits per number, digits of any intermediate result), so a model cannot make a
verifier spend unbounded time or memory.
"""

from __future__ import annotations

import re
from fractions import Fraction

MAX_CHARS = 400
MAX_DIGITS = 60  # digits of any number written or computed

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\$?\s?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\$?\s?\.\d+)|(?P<op>[-+*/×x÷()\u2212]))"
)
_OPS = {"×": "*", "x": "*", "÷": "/", "\u2212": "-"}
_OPERATORS = ("+", "-", "*", "/")
_SYMBOLS = (*_OPERATORS, "(", ")")  # every non-number token _tokens() yields


class _Unreadable(Exception):
    pass


def _tokens(text: str) -> list[str]:
    out, pos, text = [], 0, text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise _Unreadable
        if m.group("num") is not None:
            out.append(m.group("num").replace("$", "").replace(",", "").strip())
        else:
            out.append(_OPS.get(m.group("op"), m.group("op")))
        pos = m.end()
    return out


def _number(token: str) -> Fraction:
    if len(token.replace(".", "")) > MAX_DIGITS:
        raise _Unreadable
    whole, _, frac = token.partition(".")
    value = Fraction(int(whole or "0"))
    if frac:
        value += Fraction(int(frac), 10 ** len(frac))
    return value


def _bounded(value: Fraction) -> Fraction:
    if max(abs(value.numerator), value.denominator).bit_length() > MAX_DIGITS * 3.33:
        raise _Unreadable
    return value


class _Parser:
    """expr := term (('+'|'-') term)* ; term := unary (('*'|'/') unary)* ; unary := '-' unary | atom"""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        if self.i >= len(self.tokens):
            raise _Unreadable
        self.i += 1
        return self.tokens[self.i - 1]

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = _bounded(value + self.term() if self.take() == "+" else value - self.term())
        return value

    def term(self) -> Fraction:
        value = self.unary()
        while self.peek() in ("*", "/"):
            if self.take() == "*":
                value = _bounded(value * self.unary())
            else:
                divisor = self.unary()
                if divisor == 0:
                    raise _Unreadable
                value = _bounded(value / divisor)
        return value

    def unary(self) -> Fraction:
        if self.peek() == "-":
            self.take()
            return -self.unary()
        token = self.take()
        if token == "(":
            value = self.expr()
            if self.take() != ")":
                raise _Unreadable
            return value
        if token in _SYMBOLS:  # "(" was handled above
            raise _Unreadable
        return _number(token)


def value(text: str) -> Fraction | None:
    """The exact value of an arithmetic expression, or None when it is not one (or too large)."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_CHARS:
        return None
    try:
        parser = _Parser(_tokens(text))
        result = parser.expr()
        return result if parser.peek() is None else None
    except (_Unreadable, ValueError, ZeroDivisionError, RecursionError):
        return None


def numbers(text: str) -> list[str] | None:
    """The numbers written in an expression, as written (without '$' and commas), or None if unreadable."""
    try:
        return [t for t in _tokens(text) if t not in _SYMBOLS]
    except _Unreadable:
        return None


def has_operator(text: str) -> bool:
    try:
        return any(t in _OPERATORS for t in _tokens(text))
    except _Unreadable:
        return False


def matches_written(computed: Fraction, written: str) -> bool:
    """Whether ``written`` (a number as a person writes it: '3.33', '1,080') is ``computed``, allowing the
    rounding its number of decimals implies ('10 / 3 = 3.33' holds, '10 / 3 = 3.4' does not)."""
    tokens = numbers(written)
    if tokens is None or len(tokens) != 1 or has_operator(written.lstrip().lstrip("-\u2212")):
        return False
    shown = value(written)
    if shown is None:
        return False
    decimals = len(tokens[0].partition(".")[2])
    return abs(computed - shown) <= Fraction(1, 2 * 10**decimals) if decimals else computed == shown


# An arithmetic chain as written in prose: "12 - 5 = 7", "$3 x 24 = $72", "(40 + 80) + (7 + 5) = 132".
_EXPR = r"[-\u2212(\$]?\s?[\d.(][\d\s.,$+\-*/×x÷()\u2212]*?"
CHAIN = re.compile(rf"(?<![\w.,]){_EXPR}(?:\s*=\s*{_EXPR})+(?=\s*(?:$|[^\d\s.,$+\-*/×x÷()=\u2212]|[.,](?:\s|$)))")


def chains(text: str) -> list[list[str]]:
    """Every 'a = b = c' chain in ``text``, as its segments (stripped)."""
    return [[seg.strip() for seg in m.group(0).split("=")] for m in CHAIN.finditer(text)]
