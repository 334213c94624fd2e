"""Normalisation: rewrite an answer string into a canonical LaTeX-ish form.

String to string, pure Python, linear-time. Removes what never changes the
value (sizing commands, spacing, ``$``, currency, degree signs, units in
``\\text{}``, thousands separators) and recognises multiple-choice letters and
plain-text answers. Parsing to mathematics happens later, in ``parse.py``.
"""
from __future__ import annotations

import re

MAX_ANSWER_CHARS = 1000
"""Longer answers are refused (scored False): no real final answer is this long."""

_UNIT_WORDS = {
    "cm", "mm", "km", "m", "meter", "meters", "metre", "metres", "centimeter", "centimeters", "inch", "inches",
    "in", "ft", "feet", "foot", "yard", "yards", "mile", "miles", "mph", "kg", "g", "gram", "grams", "lb", "lbs",
    "pound", "pounds", "ounce", "ounces", "oz", "s", "sec", "second", "seconds", "min", "minute", "minutes",
    "hour", "hours", "hr", "hrs", "h", "day", "days", "week", "weeks", "month", "months", "year", "years",
    "dollar", "dollars", "cent", "cents", "usd", "degree", "degrees", "units", "unit", "square", "sq", "cubic",
    "liter", "liters", "litre", "l", "ml", "gallon", "gallons", "people", "students", "apples", "marbles",
    "times", "ways", "points", "percent", "mathrm", "per", "page", "pages", "books", "cookies", "eggs", "boxes",
}
_UNIT_LETTERS = set("msgMKJNWVALhCTFH")
_FUNCTION_WORDS = {"gcd", "lcm", "max", "min", "sin", "cos", "tan", "log", "ln"}
_KNOWN_WORDS = {"sqrt", "pi", "sin", "cos", "tan", "cot", "sec", "csc", "ln", "log", "exp", "infty", "inf",
                "arcsin", "arccos", "arctan", "and", "or", "i", "e", "x", "y", "z"}

_SPACING_RE = re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|left|right|bigl|bigr|Bigl|Bigr|big|Big|biggl|biggr|"
                         r"bigg|Bigg|middle|limits|nolimits)(?![A-Za-z])")
_TEXT_CMD_RE = re.compile(r"\\(text|textbf|textit|textrm|texttt|textup|mbox|mathrm|mathbf|mathit|mathsf|mathtt|boxed|"
                          r"operatorname|emph|hbox|textnormal|bf|rm)\s*\{")
_DEGREE_RE = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree(?![A-Za-z])|\^\s*\{\s*\\text\{\s*o\s*\}\s*\}")
_MOD_RE = re.compile(r"\(?\s*\\(?:pmod|bmod|mod)\s*\{[^{}]{0,40}\}\s*\)?|\\(?:pmod|bmod|mod)\s*\d+|"
                     r"\(\s*\\(?:text|mathrm|operatorname)\s*\{\s*mod\s*\}\s*\d+\s*\)")
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:(?:,\d{3})+|(?: \d{3})+)(?:\.\d+)?$")
_CHOICE_RE = re.compile(r"^(?:option|choice|answer)?\s*[:\s]*\(?\s*([A-J])\s*\)?(?:\s*[.:)]|\s|$)")


def _unwrap_text_commands(s: str) -> tuple[str, list[str]]:
    """Replace ``\\text{...}``-like groups by placeholders; return the pieces.

    ``\\mathrm{e}`` and friends keep their single math letter; everything else
    becomes a placeholder so the caller can decide between "unit" and "text".
    """
    out: list[str] = []
    pieces: list[str] = []
    pos = 0
    for _ in range(200):
        m = _TEXT_CMD_RE.search(s, pos)
        if m is None:
            break
        depth, k = 0, m.end() - 1
        while k < len(s):
            if s[k] == "{" and s[k - 1] != "\\":
                depth += 1
            elif s[k] == "}" and s[k - 1] != "\\":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        if k >= len(s):
            break
        content = s[m.end() : k]
        out.append(s[pos : m.start()])
        cmd = m.group(1)
        letter = content.strip()
        math_letter = len(letter) <= 1 and (letter in ("e", "i") or (
            content[:1] not in (" ", "~") and letter not in _UNIT_LETTERS))  # \mathrm{~m}, \mathrm{M}: units
        if letter in _FUNCTION_WORDS and re.match(r"\s*\(", s[k + 1 :]):  # \operatorname{lcm}(4, 6), \text{gcd}(a, b)
            out.append(" \\" + letter + " ")
        elif cmd in ("mathrm", "mathbf", "mathit", "operatorname", "boxed") and (
                math_letter or cmd == "boxed" or letter in ("sin", "cos", "tan", "log", "ln")):
            out.append(" " + (content if cmd == "boxed" else content.strip() if len(content.strip()) == 1
                              else "\\" + content.strip()) + " ")
        else:
            out.append("\x00%d\x00" % len(pieces))
            pieces.append(content)
        pos = k + 1
    out.append(s[pos:])
    return "".join(out), pieces


def _drop_spacing(s: str) -> str:
    s = s.replace("\\\\", " \\cr ")  # a matrix row break, before "\\ " is read as a space
    s = s.replace("{,}", "")
    s = re.sub(r",\\!\s*", ",", s).replace("\\!", "")  # 10,\! 000
    s = re.sub(r"(?<=\d)\\[,;: ](?=\d{3}(?!\d))", "", s)  # 1\,234 is one thousand two hundred ...
    s = re.sub(r"\\(?:,|;|:|quad|qquad|enspace|thinspace| )", " ", s)
    s = s.replace("~", " ")
    s = _SPACING_RE.sub("", s)
    s = re.sub(r"\\lbrace(?![A-Za-z])", r"\\{", s)
    s = re.sub(r"\\rbrace(?![A-Za-z])", r"\\}", s)
    return s


def strip_math_delimiters(s: str) -> str:
    s = s.strip()
    for _ in range(3):
        before = s
        if s.startswith("$$") and s.endswith("$$") and len(s) >= 4:
            s = s[2:-2].strip()
        if s.startswith("$") and s.endswith("$") and len(s) >= 2:
            s = s[1:-1].strip()
        for a, b in (("\\(", "\\)"), ("\\[", "\\]")):
            if s.startswith(a) and s.endswith(b):
                s = s[2:-2].strip()
        if s == before:
            break
    return s


def choice_letter(s: str) -> str | None:
    """The multiple-choice letter an answer names: ``(C)``, ``\\text{(B)}``, ``\\textbf{(A) }12``, ``D.``."""
    if not s or len(s) > MAX_ANSWER_CHARS:
        return None
    s = strip_math_delimiters(s)
    s, pieces = _unwrap_text_commands(s)
    s = re.sub("\x00(\\d+)\x00", lambda m: pieces[int(m.group(1))], s)
    s = s.replace("$", "").replace("\\", " ").strip().lstrip("*").strip()
    m = _CHOICE_RE.match(s)
    if m is None:
        return None
    rest = s[m.end() :]
    if re.search(r"(?<![A-Za-z])[A-J](?![A-Za-z])|\bor\b", rest):
        return None  # "A or C", "A and C": more than one option named
    return m.group(1)


_OPTION_RE = re.compile(r"\s*(?:\(\s*([A-J])\s*\)|([A-J])\s*[.:)])\s*(.*)", re.S)


def split_option(s: str) -> tuple[str, str] | None:
    """(letter, option text) of ``(B) 12 apples``, ``B. 12``, ``\\textbf{(C) }x = 3``; the text may be empty
    (``(B)``). None for anything else, and for algebra that starts with a capital (``A) = 5`` is not read)."""
    if not s or len(s) > MAX_ANSWER_CHARS:
        return None
    s = strip_math_delimiters(s)
    s, pieces = _unwrap_text_commands(s)
    s = re.sub("\x00(\\d+)\x00", lambda m: pieces[int(m.group(1))], s).strip().strip("*").strip()
    m = _OPTION_RE.fullmatch(s)
    if m is None:
        return (s, "") if re.fullmatch(r"[A-J]", s) else None
    rest = m.group(3).strip().rstrip(".").strip()
    if re.match(r"[-+*/^=<>]", rest):
        return None
    return m.group(1) or m.group(2), rest


def is_choice_gold(gold: str) -> bool:
    """Gold is a lone letter such as ``C``, ``(C)`` or ``\\text{(C)}``."""
    g = strip_math_delimiters(gold)
    g, pieces = _unwrap_text_commands(g)
    g = re.sub("\x00(\\d+)\x00", lambda m: pieces[int(m.group(1))], g)
    return re.fullmatch(r"\s*\(?\s*[A-J]\s*\)?\s*\.?\s*", g) is not None


def text_key(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


_ALL_REALS = {"all real numbers", "all reals", "all real values", "all real x", "real numbers", "the real numbers",
              "the set of all real numbers", "all real values of x", "any real number"}


_NUMBER_WORDS = {w: str(n) for n, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_NUMBER_WORDS.update({"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
                      "ninety": "90", "hundred": "100", "one hundred": "100", "a hundred": "100"})


_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}
_TENS = {w: int(v) for w, v in _NUMBER_WORDS.items() if w in
         ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")}
_UNITS = {w: int(v) for w, v in _NUMBER_WORDS.items() if " " not in w and int(v) < 20}


def _below_thousand(words: list[str], i: int) -> tuple[int, int] | None:
    """(value, next index) of "three hundred and six", "forty two", "a hundred", "seventeen"."""
    value, start = 0, i
    if i + 1 < len(words) and words[i + 1] == "hundred" and (words[i] == "a" or 1 <= _UNITS.get(words[i], 0) <= 9):
        value, i = 100 * (1 if words[i] == "a" else _UNITS[words[i]]), i + 2
        if i < len(words) and words[i] == "and" and i + 1 < len(words) and (
                words[i + 1] in _TENS or words[i + 1] in _UNITS):
            i += 1
    if i < len(words) and words[i] in _TENS:
        value, i = value + _TENS[words[i]], i + 1
        if i < len(words) and 1 <= _UNITS.get(words[i], 0) <= 9:
            value, i = value + _UNITS[words[i]], i + 1
    elif i < len(words) and words[i] in _UNITS and (words[i] != "zero" or i == start):
        value, i = value + _UNITS[words[i]], i + 1
    return (value, i) if i > start else None


_ORDINALS = {"half": 2, "halves": 2, "third": 3, "quarter": 4, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
             "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "twentieth": 20, "hundredth": 100,
             "thousandth": 1000}


def _denominator(word: str) -> int | None:
    """3 for "third" or "thirds", 100 for "hundredths": the denominators of fractions in words."""
    return _ORDINALS.get(word) or (_ORDINALS.get(word[:-1]) if word.endswith("s") else None)


def words_number(key: str) -> str | None:
    """The number an answer spells out in words, or None: "forty two" -> "42", "three hundred six"
    -> "306", "one thousand two hundred" -> "1200", "seven point two five" -> "7.25", "negative
    five" -> "-5", "three tenths" -> "3/10". Only when the words are nothing but a well-formed number (trailing unit words
    allowed): "one of them" and "two three" are no number."""
    words = key.split()
    while words and words[-1] in _UNIT_WORDS and len(words) > 1:
        words.pop()
    if not words or len(words) > 20:
        return None
    sign = ""
    if words[0] in ("negative", "minus"):
        sign, words = "-", words[1:]
    total, i, last_scale = 0, 0, None
    while i < len(words):
        group = _below_thousand(words, i)
        if group is None:
            break
        value, i = group
        if i < len(words) and words[i] in _SCALES:
            scale = _SCALES[words[i]]
            if last_scale is not None and scale >= last_scale:
                return None
            total, last_scale, i = total + value * scale, scale, i + 1
            continue
        total += value
        if last_scale is None or last_scale > 1:
            last_scale = 1
        break
    if i == 0 and words[0] == "a" and len(words) == 2 and words[1] in _ORDINALS:  # "a half", "a third"
        return sign + "1/" + str(_ORDINALS[words[1]])
    if i == 0:
        return None
    if i == len(words) - 1 and _denominator(words[i]):  # "three tenths", "two thirds"
        return sign + str(total) + "/" + str(_denominator(words[i]))
    digits = ""
    if i < len(words) and words[i] == "point":
        i += 1
        spoken = i < len(words) and (words[i] in _TENS or 10 <= _UNITS.get(words[i], 0) <= 19)
        if spoken:  # "point eighty seven", as people say 0.87
            group = _below_thousand(words, i)
            digits, i = str(group[0]), group[1]
        while not spoken and i < len(words) and words[i] in _UNITS and _UNITS[words[i]] <= 9:
            digits, i = digits + str(_UNITS[words[i]]), i + 1
        if not digits:
            return None
    if i != len(words):
        return None
    return sign + str(total) + ("." + digits if digits else "")


def _text_answer(key: str) -> tuple[str, str | None]:
    """A prose answer; "all real numbers" is the interval (-oo, oo), "forty two" the number 42."""
    if key in _ALL_REALS:
        return "(-\\infty,\\infty)", None
    number = words_number(key)
    return (number, None) if number is not None else ("", key)


def normalize(answer: str) -> tuple[str, str | None]:
    """Canonical math string and, when the answer is prose, its text key.

    Returns ``(math, text)``: ``text`` is set when the answer holds no
    mathematics at all (``\\text{Monday}``, ``yes``); ``math`` is then "".
    """
    s = strip_math_delimiters(answer)
    if len(s) > MAX_ANSWER_CHARS:
        return "", None
    s = _drop_spacing(s)
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\[dt]binom(?![A-Za-z])", r"\\binom", s)
    if re.search(r"\\(?:sin|cos|tan|cot|sec|csc)(?![A-Za-z])", s):  # \cos 60^\circ: degrees inside trig are pi/180
        s = re.sub(r"(\d+(?:\.\d+)?)\s*(?:" + _DEGREE_RE.pattern + ")", r"(\1\\pi/180)", s)
    s = _DEGREE_RE.sub(" ", s)
    # \angle B = 30, m\angle ABC = 30: the angle named is the quantity asked for; its value answers.
    s = re.sub(r"^\s*(?:m\s*)?\\(?:angle|measuredangle)\s*\{?[A-Z]{1,3}\}?\s*=", "", s)
    s = re.sub(r"(?<=[\d)}])\s*\\bmod(?![A-Za-z])\s*(?=[\d{(])", " \x02 ", s)  # 17 \bmod 5: an operation
    s = _MOD_RE.sub(" ", s)  # (\bmod 7), \pmod{7}: a note on a residue
    s = s.replace("\x02", "\\bmod")
    s = re.sub(r"\\\$|\\textdollar|€|£|\bUSD\b|\\euro", " ", s)
    s = s.replace("$", " ")
    s = s.replace("\\%", "%").replace("\\percent", "%")
    s, pieces = _unwrap_text_commands(s)
    rest = re.sub("\x00\\d+\x00", " ", s).strip()
    if not rest.strip(" ,.;:()[]{}^_"):
        text = " ".join(pieces)
        if re.search(r"\d|\\", text) and len(pieces) == 1:
            return normalize(text)
        return _text_answer(text_key(text))

    def piece(m: re.Match) -> str:
        content = pieces[int(m.group(1))].strip()
        if re.fullmatch(r"(?i)or", content):
            return r" \or "
        if re.fullmatch(r"(?i)and|,", content):
            return ","
        return " \x01 "  # a unit or a remark: dropped below

    s = re.sub("\x00(\\d+)\x00", piece, s)
    s = re.sub(r"\x01\s*(?:\^\s*\{?\s*[23]\s*\}?)?", "\x01", s)
    s = re.sub(r"\x01\s*/\s*\x01", "\x01", s)  # \mathrm{~km} / \mathrm{s}
    # A dropped remark at either end vanishes; one between two values becomes a comma, so
    # "2 \text{ apples and } 3" is the list 2, 3 and never the product 6.
    s = re.sub(r"^[\s\x01]+|[\s\x01]+$", "", s)
    s = re.sub(r"\s*\x01[\s\x01]*(?=[\s=<>)\]}.,;^]|\\[lg]e|\\cdot|\\times)", " ", s)
    s = re.sub(r"\s*\x01[\s\x01]*", ", ", s)
    s = re.sub(r"^\s*(?:[=:]|\\approx(?![A-Za-z]))\s*", "", s)  # "= 5", "\approx 5"
    # Trailing unit words in plain text: "12 cm^2", "5 dollars", "30 degrees".
    for _ in range(4):
        m = re.search(r"(?<=[\d}.)\s])\s*([A-Za-z]{2,})(?:\s*\^\s*\{?\s*[23]\s*\}?|/[A-Za-z]{1,5})?\s*\.?\s*$", s)
        word = m.group(1).lower() if m else ""
        if m is None or word in _KNOWN_WORDS or word in _NUMBER_WORDS or word in _SCALES or _denominator(word) or not (
                word in _UNIT_WORDS or (len(word) >= 4 and re.search(r"[aeiou]", word))):
            break
        s = s[: m.start()]
    s = re.sub(r"\s+", " ", s).strip()
    s = s.rstrip(".").strip()
    words = re.findall(r"[A-Za-z]+", s)
    if re.fullmatch(r"[A-Za-z][A-Za-z\s'.,!-]*", s) and any(len(w) > 2 and w.lower() not in _KNOWN_WORDS for w in words):
        return _text_answer(text_key(s))
    ratio = re.fullmatch(r"(\d+)\s*:\s*(\d+)", s)
    if ratio:  # a ratio 1:2 is the fraction 1/2
        s = f"\\frac{{{ratio.group(1)}}}{{{ratio.group(2)}}}"
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "").replace(" ", "")
    return s, None


def gold_list(math: str) -> str:
    """A gold's "2 or 3", "2 and 3", "2; 3" lists its values: "2, 3" (a set). A prediction's "or" stays
    a hedge; a gold inequality joined by "or" stays a union."""
    if re.search(r"[<>]|\\[lg]eq?(?![A-Za-z])|\\[lg]eqslant", math):
        return math
    math = re.sub(r"\s*(?:\\or(?![A-Za-z])|\bor\b|\band\b|;)\s*", ", ", math)
    return re.sub(r"(?:\s*,){2,}\s*", ", ", math)  # "1, 2, and 3"
