"""Safe arithmetic for verifiers: parse and compute what a rationale writes, exactly, never with eval.

``value("(300 + 200) + (40 + 80)")`` -> ``Fraction(620)``; anything it cannot read returns None (never raises).
Grammar: numbers (``1,080``, ``12.5``, ``$3``, ``.5``), ``+ - * / × x ÷``, unary minus, parentheses. Sizes are
bounded (expression length, digits per number, digits of any intermediate result), so a model cannot make a
verifier spend unbounded time or memory.

Also the text helpers the built-in extractors and verifiers share, each linear in the length of the text (no regex
here backtracks): ``normalize_digits`` (Unicode digits -> ASCII), ``is_power`` ('1e999999', '9^9^9'),
``is_fragment`` (the '3' of '3.9'), ``power_in_calculation`` ('2^10 = ...'), ``chains`` / ``iter_chains`` (the
'a = b = c' calculations written in prose), ``last_match`` and ``canonical_integer`` (an extracted integer answer,
'1,080' -> '1080').
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from collections import deque
from fractions import Fraction
from functools import cache
from typing import Iterator

MAX_CHARS = 1200  # characters of one expression (the widest star-kit writes, a 30-digit place-value split: 1,169)
MAX_DIGITS = 60  # digits of any number written or computed

_NUM = r"\$?\s?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\$?\s?\.\d+"
_OP = r"[-+*/×x÷()\u2212]"
_TOKEN = re.compile(rf"\s*(?:(?P<num>{_NUM})|(?P<op>{_OP}))")
_OPS = {"×": "*", "x": "*", "÷": "/", "\u2212": "-"}
_OPERATORS = ("+", "-", "*", "/")
_SYMBOLS = (*_OPERATORS, "(", ")")  # every non-number token _tokens() yields


@cache
def _ascii_table() -> dict[int, int]:
    """Every non-ASCII Unicode decimal digit (category Nd, any script) -> its ASCII digit; the fullwidth forms of
    ASCII (U+FF01-FF5E: '７２', '，', '＄', 'ａｎｓｗｅｒ') -> ASCII; U+2212 (minus sign) -> '-'. Built once (some
    tens of ms), on the first non-ASCII text."""
    every = array("I", range(0x80, 0x110000)).tobytes().decode("utf-32-le", "surrogatepass")  # all of Unicode
    table = {ord(c): ord(str(unicodedata.decimal(c))) for c in re.findall(r"\d", every)}
    table.update({cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)})
    table[0x2212] = ord("-")
    return table


def normalize_digits(text: str) -> str:
    """``text`` with Unicode decimal digits of every script made ASCII ('７２' and '٧٢' -> '72'), fullwidth ASCII
    forms made ASCII and the minus sign U+2212 made '-'. One character for one, so positions do not move.
    Deliberately not NFKC: that would also turn a superscript into a digit ('3²' -> '32')."""
    return text if text.isascii() else text.translate(_ascii_table())


# Exponent or power notation touching a number ('1e999999', '2.5E-3', '9^9^9', '10²'); '**' is left out, since
# models write Markdown bold ('The answer is **72**').
_POWER_AFTER = re.compile(r"(?:\.\d*+)?[eE][-+\u2212]?\d|\s*+\^|[\u2070\u00b9\u00b2\u00b3\u2074-\u2079]")
_POWER_BEFORE = re.compile(r"\^\s*\(?\s*$|\d\.?[eE][-+\u2212]?$")


def is_power(text: str, start: int, end: int) -> bool:
    """Whether the number written at ``text[start:end]`` is part of a power rather than a number on its own:
    an exponent or power sign right after it ('1e999999', '9^9', '10²'; also after a decimal part: the '2' of
    '2.5e3') or right before it (the '999999' of '1e999999', the last '9' of '9^9'). Looks at a few characters
    around it only (and the digits of a decimal part)."""
    return (_POWER_AFTER.match(text, end) is not None
            or _POWER_BEFORE.search(text, max(0, start - 8), start) is not None)


# A power written into a calculation ('2^10 =', '5² =', '1e400 + 1 ='): the power sign, then the run of arithmetic
# characters up to an '='. The finder skips power signs inside a run it has read, so it is linear in the text.
_SUPERSCRIPTS = "\u2070\u00b9\u00b2\u00b3\u2074-\u2079"
_POWER_SIGN = re.compile(rf"\d\s*+\^|\d[{_SUPERSCRIPTS}]|\d\.?[eE][-+\u2212]?\d")
_POWER_RUN = re.compile(rf"[\d\s.,$+\-*/×x÷()\u2212^eE{_SUPERSCRIPTS}]*+")


def power_in_calculation(text: str) -> str | None:
    """The first power written on the left of an '=' ('2^10', '5²', '1e400 + 1'), as written, or None. The
    calculations a verifier computes hold no powers, so a rationale that writes one cannot be checked."""
    read_to = 0
    for sign in _POWER_SIGN.finditer(text):
        if sign.start() < read_to:
            continue
        read_to = _POWER_RUN.match(text, sign.end()).end()
        if read_to < len(text) and text[read_to] == "=":
            return text[sign.start():read_to].strip()
    return None


# What makes the digits before it part of another number: a decimal or fraction part ('3.9', '1/2'), a comma that
# is not a thousands separator ('1,2' after a number read whole), a hexadecimal prefix ('0x1F').
_CONTINUED = re.compile(r"[./,]\d|(?<=\b0)[xX][0-9a-fA-F]")


def is_fragment(text: str, start: int, end: int) -> bool:
    """Whether the number read at ``text[start:end]`` is only part of another one, and so no answer: a power
    (:func:`is_power`), the first digits of a decimal, a fraction or a hexadecimal number ('3' of '3.9', '1' of
    '1/2', '0' of '0x1F'), or the end of one ('2' of '1/2', '.2' of '1.5.2', '3' of '1,2,3'). Looks at a few
    characters around it only."""
    if is_power(text, start, end) or _CONTINUED.match(text, end) is not None:
        return True
    if start >= 1 and text[start] == "." and text[start - 1].isdigit():
        return True
    return start >= 2 and text[start - 1] in "/.," and text[start - 2].isdigit()


def last_match(pattern: re.Pattern, text: str, pos: int = 0, endpos: int | None = None) -> re.Match | None:
    """The last of ``pattern.finditer(text, pos, endpos)`` (non-overlapping, left to right), consumed in C."""
    tail = deque(pattern.finditer(text, pos, len(text) if endpos is None else endpos), maxlen=1)
    return tail[0] if tail else None


def canonical_integer(sign: str, digits: str) -> str:
    """The canonical form of an integer answer an extractor matched as (sign, digits with commas):
    ('', '0,1,080') -> '1080', ('-', '0') -> '0'; never calls int() (no size limit, nothing evaluated)."""
    digits = digits.replace(",", "").lstrip("0") or "0"
    return ("-" + digits) if sign == "-" and digits != "0" else digits


class _Unreadable(Exception):
    pass


class _Uncheckable(_Unreadable):
    """Arithmetic that reads but cannot be computed within the bounds: division by zero, a number too large."""


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
        raise _Uncheckable(f"a number of more than {MAX_DIGITS} digits")
    whole, _, frac = token.partition(".")
    value = Fraction(int(whole or "0"))
    if frac:
        value += Fraction(int(frac), 10 ** len(frac))
    return value


def _bounded(value: Fraction) -> Fraction:
    if max(abs(value.numerator), value.denominator).bit_length() > MAX_DIGITS * 3.33:
        raise _Uncheckable(f"a result of more than {MAX_DIGITS} digits")
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
                    raise _Uncheckable("division by zero")
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
    return evaluate(text)[0]


def evaluate(text: str) -> tuple[Fraction | None, str | None]:
    """(the exact value, None) of an arithmetic expression; (None, why) for one that reads but cannot be computed
    within the bounds ("division by zero", "a number of more than 60 digits", ...); (None, None) for a text that
    is not arithmetic."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_CHARS:
        return None, None
    try:
        parser = _Parser(_tokens(text))
        result = parser.expr()
        return (result, None) if parser.peek() is None else (None, None)
    except _Uncheckable as exc:
        return None, str(exc)
    except (_Unreadable, ValueError, ZeroDivisionError, RecursionError):
        return None, None


# Whether a whole text tokenizes: the possessive loop reads the same tokens as _tokens(), left to right, in C.
# (No capturing group inside it: CPython 3.11's re fails on one inside a possessive repeat.)
_TOKENIZES = re.compile(rf"(?:\s*(?:{_NUM}|{_OP}))*+")
_OPERATOR_CHAR = re.compile(r"[-+*/×x÷\u2212]")


def short(text: str, limit: int = 60) -> str:
    """A step as a verifier's rejection reason quotes it (kept in samples.jsonl and shown by the report): a
    hostile rationale's step is cut to ``limit`` characters."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def tokens(text: str) -> list[str] | None:
    """An expression's tokens (numbers without '$' and commas; operators and parentheses as ASCII), or None if
    unreadable. Linear time."""
    try:
        return _tokens(text)
    except _Unreadable:
        return None


def numbers(text: str) -> list[str] | None:
    """The numbers written in an expression, as written (without '$' and commas), or None if unreadable."""
    found = tokens(text)
    return None if found is None else [t for t in found if t not in _SYMBOLS]


def has_operator(text: str) -> bool:
    """Whether ``text`` reads as tokens and one of them is an operator (+ - * / × x ÷ −). Number tokens hold no
    operator character, so this is "it tokenizes and holds an operator character": two scans in C, linear."""
    stripped = text.rstrip()
    return _TOKENIZES.fullmatch(stripped) is not None and _OPERATOR_CHAR.search(stripped) is not None


def matches_written(computed: Fraction, written: str) -> bool:
    """Whether ``written`` (a number as a person writes it: '3.33', '1,080') is ``computed``, allowing the
    rounding its number of decimals implies ('10 / 3 = 3.33' holds, '10 / 3 = 3.4' does not)."""
    if len(written) > MAX_CHARS:
        return False  # value() refuses it anyway; this only saves tokenizing a long text
    tokens = numbers(written)
    if tokens is None or len(tokens) != 1 or has_operator(written.lstrip().lstrip("-\u2212")):
        return False
    shown = value(written)
    if shown is None:
        return False
    decimals = len(tokens[0].partition(".")[2])
    return abs(computed - shown) <= Fraction(1, 2 * 10**decimals) if decimals else computed == shown


# An arithmetic chain as written in prose: "12 - 5 = 7", "$3 x 24 = $72", "(40 + 80) + (7 + 5) = 132".
# An expression starts with [-−($]? \s? [digit . (] and goes on over the characters of arithmetic (_C); the last
# one ends where what follows (after spaces) is neither arithmetic nor '=', or is a '.'/',' ending a sentence.
# The finder is a scanner made of regexes without ambiguous repetition (atomic groups, possessive quantifiers),
# not one backtracking regex (that one, with nested lazy repetition, backtracked exponentially on
# "1 = 1 = 1 = ..."). For the next '=', it finds where the run of arithmetic before it starts (on the reversed
# text), the first place in that run where an expression may start (_FIRST), then reads the rest of the chain
# (_REST). When a chain fails (an '=' not followed by an expression) it goes on after that '=', since any start
# before it reads the same chain and fails the same way. Every character is read a bounded number of times:
# linear in the text, plus one step in Python per '=' at most. It finds exactly what the former regex found
# (tests/test_reliability_redos.py compares the two).
_C = r"\d\s.,$+\-*/×x÷()\u2212"  # characters an expression is made of
_HEAD = r"[-\u2212(\$]?\s?[\d.(]"
_START = re.compile(rf"(?<![\w.,]){_HEAD}")
_RUN = re.compile(rf"[{_C}]*+")  # on the reversed text: the run of arithmetic that ends at an '='
_FIRST = re.compile(rf"(?>[{_C}]*?(?<![\w.,]){_HEAD})[{_C}]*+=")  # the first start in a run ending at '='
# '= expression' repeated; an expression stops before a '.'/',' that ends a sentence.
_REST = re.compile(rf"(?:\s*+=\s*+{_HEAD}(?:\s*+(?:[\d$+\-*/×x÷()\u2212]|[.,](?=\S)))*+)*+")
_SPACES = re.compile(r"\s*+")
# A head '(.' / '( .' before a space: the former regex read it as '(' + '.' first and, when the chain then failed,
# as '(' alone, which ends the chain right after the '('.
_OPEN_DOT = re.compile(r"=\s*+\(\s?\.(?!\S)")


def iter_chains(text: str) -> Iterator[list[str]]:
    """Every 'a = b = c' chain in ``text``, as its segments (stripped), lazily; linear time in ``text``."""
    pos, n, reverse = 0, len(text), None
    while True:
        eq = text.find("=", pos)
        if eq < 0:
            return
        if reverse is None:
            reverse = text[::-1]
        run = _RUN.match(reverse, n - eq)
        first = _FIRST.match(text, max(pos, eq - (run.end() - run.start())))
        if first is None:
            pos = eq + 1  # nothing in the run before this '=' starts an expression
            continue
        start = _START.search(text, first.start(), eq)  # where the atomic group found it
        end = _REST.match(text, eq).end()
        after = _SPACES.match(text, end).end()
        if after < n and text[after] == "=":  # '= <not an expression>': the chain fails at that '='
            fallback = last_match(_OPEN_DOT, text, eq, end + 1)
            if fallback is None:
                pos = after + 1
                continue
            end = text.index("(", fallback.start()) + 1
        yield [seg.strip() for seg in text[start.start():end].split("=")]
        pos = end


def chains(text: str) -> list[list[str]]:
    """Every 'a = b = c' chain in ``text``, as its segments (stripped)."""
    return list(iter_chains(text))
