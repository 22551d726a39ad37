"""Text normalisation: keyword text -> lowercase words, with numbers and symbols spelled out.

"Turn on 3 lights!" -> ["turn", "on", "three", "lights"]. Numbers are read the way people
say them in a command: times ("7:05" -> seven oh five), years ("1999" -> nineteen ninety nine),
money, percentages, ordinals, decimals, and letter-digit codes ("R2D2" -> r two d two).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import inflect

_DIGITS = "zero one two three four five six seven eight nine".split()
# symbol -> (unit, units, subunit, subunits)
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
}
_SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus ", "@": " at ", "#": " number "}
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_DASHES = re.compile(r"[\u2010-\u2015\u2212]")  # typographic dashes and the minus sign

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_MONEY = re.compile(r"([$£€])\s?(\d+)(?:\.(\d\d?))?(?![\d.])")
_TIME = re.compile(r"(?<![\d:])(\d{1,2}):(\d\d)(?![\d:])")
_ORDINAL = re.compile(r"(?<![a-z\d.])(\d+)(st|nd|rd|th)(?![a-z\d])")
_DECIMAL = re.compile(r"(?<![\d.])(\d*)\.(\d+)(?![\d.])")
_NEGATIVE = re.compile(r"(?<![\w.])-(?=\d)")
_LETTER_DIGIT = re.compile(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])")
_INTEGER = re.compile(r"\d+")
_NOT_WORD = re.compile(r"[^a-z']+")


def normalize(text: str) -> list[str]:
    """Lowercase words of ``text`` (apostrophes kept inside words); [] if there are none."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))  # strip accents
    text = _DASHES.sub("-", text.translate(_APOSTROPHES)).lower()

    # Most specific numeric forms first, so later rules never see their digits.
    text = _THOUSANDS.sub("", text)
    text = _MONEY.sub(_money, text)
    text = _TIME.sub(_time, text)
    text = _ORDINAL.sub(lambda m: f" {_words(m.group(0))} ", text)
    text = _DECIMAL.sub(_decimal, text)
    text = _NEGATIVE.sub(" minus ", text)
    text = _LETTER_DIGIT.sub(" ", text)
    text = _INTEGER.sub(lambda m: f" {_integer(m.group(0))} ", text)
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)

    words = (w.strip("'") for w in _NOT_WORD.sub(" ", text).split())
    return [w for w in words if w]


def _words(number: str) -> str:
    """inflect's spelling without "and", commas or hyphens: "123" one hundred twenty three,
    "2nd" second."""
    spelled = _inflect().number_to_words(number, andword="")
    return spelled.replace(",", "").replace("-", " ")


@functools.cache
def _inflect() -> inflect.engine:  # imported on first use: importing inflect takes over a second
    import inflect

    return inflect.engine()


def _integer(digits: str) -> str:
    if len(digits) > 1 and digits[0] == "0":  # "007", "0800": read digit by digit
        return " ".join(_DIGITS[int(d)] for d in digits)
    n = int(digits)
    if len(digits) == 4 and (1100 <= n <= 1999 or 2010 <= n <= 2099):
        return _year(n)
    return _words(digits)


def _pair(high: int, low: int, zero: str) -> str:
    """Two numbers read as a pair: "nineteen ninety nine", "seven oh five", "seven <zero>"."""
    if low == 0:
        return f"{_words(str(high))} {zero}"
    if low < 10:
        return f"{_words(str(high))} oh {_DIGITS[low]}"
    return f"{_words(str(high))} {_words(str(low))}"


def _year(n: int) -> str:
    """A year read in pairs: nineteen ninety nine, nineteen oh five, nineteen hundred."""
    return _pair(*divmod(n, 100), "hundred")


def _time(m: re.Match) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    if hours > 23 or minutes > 59:  # not a clock time (a score, a ratio): read both numbers
        return f" {_integer(m.group(1))} {_integer(m.group(2))} "
    return " " + _pair(hours, minutes, "o'clock") + " "


def _money(m: re.Match) -> str:
    unit, units, subunit, subunits = _CURRENCIES[m.group(1)]
    whole = int(m.group(2))
    cents = int(m.group(3).ljust(2, "0")) if m.group(3) else 0  # ".5" is fifty cents
    parts = []
    if whole or not cents:
        parts.append(f"{_words(str(whole))} {unit if whole == 1 else units}")
    if cents:
        parts.append(f"{_words(str(cents))} {subunit if cents == 1 else subunits}")
    return f" {' '.join(parts)} "


def _decimal(m: re.Match) -> str:
    whole = _integer(m.group(1)) if m.group(1) else ""
    return f" {whole} point {' '.join(_DIGITS[int(d)] for d in m.group(2))} "
