"""The in-process fast path: answers that are provably cheap to compare.

Integers, decimals, simple fractions, percentages, choice letters and plain
text are compared here with ``fractions.Fraction`` and string keys, without
sympy and without leaving the calling process. Every operation is bounded by
the length of the (already length-capped) strings, so no deadline is needed.
``decide`` returns None when the pair needs the full parser (``parse.py``),
which only ever runs inside a supervised worker process.
"""
from __future__ import annotations

import re
from fractions import Fraction

from .normalize import choice_letter, gold_list, is_choice_gold, normalize, text_key

_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,3})?"
_SIMPLE_RE = re.compile(
    r"^(?P<sign>[-+]?)\s*(?:"
    r"(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,3})?)"
    r"|\\frac\s*\{\s*(?P<fn>" + _NUM + r")\s*\}\s*\{\s*(?P<fd>" + _NUM + r")\s*\}"
    r"|\\frac\s*(?P<sn>\d)\s*(?P<sd>\d)"
    r"|(?P<an>" + _NUM + r")\s*/\s*(?P<ad>" + _NUM + r")"
    r")\s*(?P<pct>%?)$"
)
MAX_CHARS = 1000


def simple_value(s: str) -> tuple[Fraction, bool] | None:
    """(value, is_percent) of an integer, decimal, fraction or percentage string."""
    if len(s) > MAX_CHARS:
        return None
    m = _SIMPLE_RE.match(s)
    if m is None:
        return None
    g = m.groupdict()
    try:
        if g["num"] is not None:
            v = Fraction(g["num"])
        else:
            num, den = (g["fn"], g["fd"]) if g["fn"] is not None else (
                (g["sn"], g["sd"]) if g["sn"] is not None else (g["an"], g["ad"]))
            v = Fraction(num) / Fraction(den)
    except (ValueError, ZeroDivisionError):
        return None
    if g["sign"] == "-":
        v = -v
    return v, bool(g["pct"])


def _values(v: tuple[Fraction, bool]) -> set[Fraction]:
    # "20%" stands for 0.2, and a bare 20 answering a percentage question is accepted.
    return {v[0], v[0] / 100} if v[1] else {v[0]}


def is_hedge(math: str) -> bool:
    """Normalisation turns ``\\text{ or }`` into ``\\or``."""
    return "\\or" in math


def decide(pred: str, gold: str) -> bool | None:
    """True/False when the pair is decidable cheaply, None when it needs sympy."""
    if is_choice_gold(gold):
        letter = choice_letter(pred)
        return letter is not None and letter == choice_letter(gold)
    p_math, p_text = normalize(pred)
    g_math, g_text = normalize(gold)
    if g_text is not None or p_text is not None:
        # Prose on one side at least: compare as words ("\text{A, C}" and "A, C" alike).
        p_key = p_text if p_text is not None else text_key(p_math)
        g_key = g_text if g_text is not None else text_key(g_math)
        if p_key == g_key and g_key:
            return True
        return None if (p_math and g_text is not None and re.search(r"\d", p_math)) else False
    if not g_math or (not p_math and p_text is None):
        return False
    if p_math.replace(" ", "") == g_math.replace(" ", ""):  # the same text ("1 hour and 31 minutes" both sides)
        return True
    g_math = gold_list(g_math)
    if p_math.replace(" ", "") == g_math.replace(" ", ""):
        return True
    if is_hedge(p_math) and not is_hedge(g_math):
        same = [simple_value(part.strip()) for part in p_math.split("\\or")]
        if all(same) and len({v[0] / 100 if v[1] else v[0] for v in same}) == 1:  # "1/4 or 0.25": one value
            return decide(p_math.split("\\or")[0].strip(), gold)
        # "x < 1 or x > 3" is a union of intervals (for the parser); "3 or 5" is a hedge.
        return None if re.search(r"[<>=]|\\[lg]e", p_math) else False
    gv = simple_value(g_math)
    pv = simple_value(p_math)
    if gv is not None and pv is not None:
        if gv[1] != pv[1]:
            return bool(_values(gv) & _values(pv))
        if gv[0] != pv[0] and _float_rendering(g_math) and _float_rendering(p_math):
            # 1.333333333333333 vs 1.3333333333333333: two printed floats of one value, not two values
            return abs(gv[0] - pv[0]) <= abs(gv[0]) * Fraction(1, 10**12)
        return gv[0] == pv[0]
    return None


def _float_rendering(s: str) -> bool:
    """A decimal with 15 or more significant digits: how a program prints a float (0.3333333333333333), an
    approximation on both sides, so such a pair is compared to 12 digits; shorter decimals stay exact."""
    digits = re.sub(r"\D", "", s.split("e")[0].split("E")[0]).lstrip("0")
    return "." in s and len(digits) >= 15
