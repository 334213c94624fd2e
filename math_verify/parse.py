"""Parsing: a tokenizer and recursive-descent parser from LaTeX/plain math to sympy.

Builds sympy objects directly with constructors (``Integer``, ``Rational`` from
Python ints, ``Add``, ``Mul``, ``Pow``, ``sin``...); no string ever reaches
sympy's string parser or Python's ``eval``. Every operation that can blow up is
bounded before it is built: input length, nesting depth, number of digits,
the bit size of integer powers, factorial and binomial arguments, matrix size.
Anything beyond a bound raises ``Refused`` (the pair then scores False).

Values produced (see ``compare.py`` for what is equal to what):
  sympy ``Expr``            a number or formula
  ``Bracketed(l, r, items)`` ``(a, b)``, ``[a, b)``: tuples, points and intervals
  ``FSet(items)``           ``\\{a, b\\}`` and ``a \\pm b``
  ``Seq(items)``            a bare comma list ``2, 3`` (roots, several answers)
  ``UnionV(parts)``         ``A \\cup B``
  ``Matrix(rows)``          ``\\begin{pmatrix}...\\end{pmatrix}``
  ``Rel(ops, terms)``       ``x = 3``, ``1 < x \\le 2`` (chains allowed)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import sympy
from sympy import Symbol

MAX_TOKENS = 400
MAX_DEPTH = 40
MAX_DIGITS = 1000
MAX_POW_BITS = 30_000
MAX_SYMBOLIC_EXP = 200
MAX_FACTORIAL = 1000
MAX_BINOM = 10_000
MAX_MATRIX_CELLS = 100


class Refused(Exception):
    """The answer cannot be read safely or is not mathematics we handle."""


@dataclass(frozen=True)
class Bracketed:
    left: str
    right: str
    items: tuple


@dataclass(frozen=True)
class FSet:
    items: tuple


@dataclass(frozen=True)
class Seq:
    items: tuple


@dataclass(frozen=True)
class UnionV:
    parts: tuple


@dataclass(frozen=True)
class Matrix:
    rows: tuple


@dataclass(frozen=True)
class Rel:
    ops: tuple
    terms: tuple


PM = sympy.Dummy("pm")  # stands for +1/-1 in ``a \pm b``; expanded into a set at the end

_FUNCS = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot, "sec": sympy.sec, "csc": sympy.csc,
    "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan, "sinh": sympy.sinh, "cosh": sympy.cosh,
    "tanh": sympy.tanh, "exp": sympy.exp, "ln": sympy.log, "log": sympy.log, "lg": None,
}
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
          "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi",
          "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega"}
_INVERSE = {"sin": sympy.asin, "cos": sympy.acos, "tan": sympy.atan}
_RELOPS = {"=": "=", "<": "<", ">": ">", "lt": "<", "gt": ">", "le": "<=", "leq": "<=", "leqslant": "<=",
           "ge": ">=", "geq": ">=", "geqslant": ">=", "ne": "!=", "neq": "!=", "in": "in", "approx": "~",
           "sim": "~", "simeq": "~", "equiv": "="}
_UNICODE = {"π": "\\pi ", "√": "\\sqrt ", "×": "\\times ", "·": "\\cdot ", "−": "-", "–": "-", "≤": "\\le ",
            "≥": "\\ge ", "≠": "\\ne ", "∞": "\\infty ", "∪": "\\cup ", "÷": "\\div ", "∈": "\\in "}
_WORDS = {"sqrt", "pi", "infty", "inf", "sin", "cos", "tan", "cot", "sec", "csc", "ln", "log", "exp",
          "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "or", "and", "gcd", "lcm", "max", "min"}
_INTEGER_FUNCS = {"gcd": sympy.gcd, "lcm": sympy.lcm}  # of integers only
_ORDER_FUNCS = {"max": sympy.Max, "min": sympy.Min}  # of real numbers only
_MAX_ARGS = 20
_TOKEN_RE = re.compile(r"!=|\\[A-Za-z]+|\\.|\d+(?:\.\d*)?(?:[eE][-+]?\d+(?![\d.]))?|\.\d+|[A-Za-z]+|\S")


def tokenize(s: str) -> list[tuple[str, str]]:
    for u, r in _UNICODE.items():
        s = s.replace(u, r)
    out: list[tuple[str, str]] = []
    for m in _TOKEN_RE.finditer(s):
        t = m.group(0)
        if t == "!=":
            out.append(("cmd", "ne"))
        elif t[0] == "\\" and len(t) > 1 and t[1].isalpha():
            out.append(("cmd", t[1:]))
        elif t[0] == "\\":
            out.append(("op", t))
        elif t[0].isdigit() or t[0] == ".":
            if t == ".":
                out.append(("op", t))
            else:
                out.append(("num", t))
        elif t[0].isalpha():
            if t in _WORDS:
                out.append(("cmd", t))
            else:
                out.extend(("id", c) for c in t)
        else:
            out.append(("op", t))
        if len(out) > MAX_TOKENS:
            raise Refused("too many tokens")
    return out


def _bits(r: sympy.Rational) -> int:
    return max(abs(int(r.p)).bit_length(), abs(int(r.q)).bit_length())


def safe_pow(base, exp):
    if not isinstance(base, sympy.Expr) or not isinstance(exp, sympy.Expr):
        raise Refused("power of a non-number")
    if base.is_Rational and abs(base) in (0, 1) and exp.is_number:
        if base == 0 and exp.is_number and (exp.is_negative or exp == 0):
            raise Refused("0 to a non-positive power")
        return sympy.Pow(base, exp)
    if exp.is_Rational:
        mag = abs(Fraction(int(exp.p), int(exp.q)))
        if base.is_Rational:
            if mag * max(_bits(base), 1) > MAX_POW_BITS:
                raise Refused("power too large")
        elif base.is_number:
            if mag > MAX_SYMBOLIC_EXP * 10:
                raise Refused("power too large")
        elif mag > MAX_SYMBOLIC_EXP:
            raise Refused("symbolic power too large")
    elif exp.is_number:
        if exp.has(sympy.oo, sympy.zoo, sympy.nan, -sympy.oo):
            raise Refused("infinite exponent")
        try:
            mag = abs(complex(exp.evalf(15)))
        except (TypeError, ValueError):
            raise Refused("exponent not evaluable")
        if mag > 10_000:
            raise Refused("power too large")
    elif base.is_number and base.is_Rational and _bits(base) > 64:
        raise Refused("big base to symbolic power")
    result = sympy.Pow(base, exp)
    if isinstance(result, sympy.Pow) and result.exp.is_Rational and result.base.free_symbols \
            and abs(result.exp) > MAX_SYMBOLIC_EXP:  # (x^{200})^{200} folds into x^{40000}
        raise Refused("symbolic power too large")
    return result


def safe_factorial(n):
    if not isinstance(n, sympy.Expr):
        raise Refused("factorial of a non-number")
    if n.is_number:
        if not n.is_Integer or n < 0 or n > MAX_FACTORIAL:
            raise Refused("factorial out of range")
        return sympy.factorial(n)
    return sympy.factorial(n)


def safe_binom(n, k):
    if not isinstance(n, sympy.Expr) or not isinstance(k, sympy.Expr):
        raise Refused("binomial of a non-number")
    for x in (n, k):
        if x.is_number and (not x.is_Integer or abs(x) > MAX_BINOM):
            raise Refused("binomial out of range")
    return sympy.binomial(n, k)


def _number(text: str) -> sympy.Rational:
    if len(text) > MAX_DIGITS:
        raise Refused("number too long")
    f = Fraction(text)
    return sympy.Rational(f.numerator, f.denominator)


def _matrix_sum(a, b, sign: int) -> "Matrix":
    """A + B or A - B of two matrices of one shape, entry by entry (a written sum of matrices)."""
    if not (isinstance(a, Matrix) and isinstance(b, Matrix)) or len(a.rows) != len(b.rows) or any(
            len(r) != len(q) for r, q in zip(a.rows, b.rows)):
        raise Refused("sum of a matrix and something else")
    return Matrix(tuple(tuple(_expr(x) + sign * _expr(y) for x, y in zip(r, q)) for r, q in zip(a.rows, b.rows)))


def _expr(v):
    if not isinstance(v, sympy.Expr):
        raise Refused("arithmetic on a non-number")
    return v


class Parser:
    def __init__(self, text: str):
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0
        self.percent = False

    # -- token helpers ------------------------------------------------------
    def peek(self, k: int = 0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("eof", "")

    def next(self):
        t = self.peek()
        self.i += 1
        return t

    def at(self, kind: str, val: str | None = None) -> bool:
        t = self.peek()
        return t[0] == kind and (val is None or t[1] == val)

    def accept(self, kind: str, val: str | None = None) -> bool:
        if self.at(kind, val):
            self.i += 1
            return True
        return False

    def expect(self, kind: str, val: str | None = None):
        if not self.accept(kind, val):
            raise Refused(f"expected {val or kind}, got {self.peek()[1]!r}")

    def enter(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Refused("nesting too deep")

    # -- grammar ----------------------------------------------------------------
    def parse(self):
        v = self.answer(stop=("eof",))
        if not self.at("eof"):
            raise Refused(f"trailing input at {self.peek()[1]!r}")
        return v

    def answer(self, stop):
        """Comma list of unions: ``a, b`` -> Seq."""
        self.enter()
        items = [self.union()]
        while self.at("op", ",") or self.at("op", ";"):
            self.next()
            if self.peek()[0] == "eof" or self.peek()[1] in stop:
                break
            items.append(self.union())
        self.depth -= 1
        return items[0] if len(items) == 1 else Seq(tuple(items))

    def union(self):
        parts = [self.relation()]
        while self.at("cmd", "setminus") or self.at("op", "\\\\setminus"):
            self.next()
            parts[0] = _set_minus(parts[0], self.relation())
        while self.at("cmd", "cup") or self.at("cmd", "or") or self.at("cmd", "and"):
            op = self.next()[1]
            parts.append(("or" if op == "or" else "cup", self.relation()))
        if len(parts) == 1:
            return parts[0]
        if any(p[0] == "or" for p in parts[1:]):
            # "x < 1 or x > 3" is a union of solution sets; "3 or 5" is a hedge.
            rels = [parts[0]] + [p[1] for p in parts[1:]]
            if all(isinstance(r, Rel) and r.ops[0] not in ("=", "!=") for r in rels):
                return UnionV(tuple(rels))
            if all(isinstance(r, Rel) and r.ops == ("=",) and isinstance(r.terms[0], Symbol) for r in rels) \
                    and len({r.terms[0] for r in rels}) == 1:
                return Seq(tuple(rels))  # "x = 2 or x = -3" lists the roots
            raise Refused("hedged answer")
        return UnionV(tuple([parts[0]] + [p[1] for p in parts[1:]]))

    def relation(self):
        terms = [self.expr()]
        ops = []
        while True:
            t = self.peek()
            op = None
            if t[0] == "op" and t[1] in ("=", "<", ">"):
                op = t[1]
                self.next()
                if op in "<>" and self.accept("op", "="):
                    op += "="
            elif t[0] == "cmd" and t[1] in _RELOPS:
                op = _RELOPS[t[1]]
                self.next()
            if op is None:
                break
            ops.append(op)
            terms.append(self.expr())
        return terms[0] if not ops else Rel(tuple(ops), tuple(terms))

    def expr(self):
        self.enter()
        left = self.term()
        while True:
            t = self.peek()
            if t in (("op", "+"), ("op", "-")):
                self.next()
                right = self.term()
                if isinstance(left, Matrix) or isinstance(right, Matrix):
                    left = _matrix_sum(left, right, 1 if t[1] == "+" else -1)
                else:
                    left = _expr(left) + _expr(right) if t[1] == "+" else _expr(left) - _expr(right)
            elif t in (("cmd", "pm"), ("cmd", "mp")):
                self.next()
                sign = PM if t[1] == "pm" else -PM
                left = _expr(left) + sign * _expr(self.term())
            else:
                break
        self.depth -= 1
        return left

    def _starts_primary(self) -> bool:
        kind, val = self.peek()
        if kind in ("num", "id"):
            return True
        if kind == "op":
            return val in ("(", "\\{")
        if kind == "cmd":
            return val in ("frac", "sqrt", "pi", "infty", "inf", "binom", "begin", "langle", "e", "lfloor", "lceil",
                           "mathbb") or val in _FUNCS or val in _GREEK or val in _INTEGER_FUNCS or val in _ORDER_FUNCS
        return False

    def term(self):
        left = self.unary()
        while True:
            t = self.peek()
            if t in (("op", "*"), ("cmd", "cdot"), ("cmd", "times"), ("op", "\\*")):
                self.next()
                right = self.unary()
                if isinstance(left, Matrix) or isinstance(right, Matrix):
                    raise Refused("matrix product")
                left = _expr(left) * _expr(right)
            elif t == ("cmd", "bmod"):  # a \bmod n, the remainder (normalize keeps \pmod{n} as a note)
                self.next()
                left = _integer_mod(left, self.unary())
            elif t in (("op", "/"), ("cmd", "div")):
                self.next()
                right = _expr(self.unary())
                if right == 0:
                    raise Refused("division by zero")
                left = _expr(left) / right
            elif self._starts_primary():
                right = self.power()
                if isinstance(left, (Bracketed, Seq)) or isinstance(right, (Bracketed, Seq)):
                    raise Refused("juxtaposed tuples")
                left = _expr(left) * _expr(right)
            else:
                return left

    def unary(self):
        if self.accept("op", "-"):
            self.enter()
            v = -_expr(self.unary())
            self.depth -= 1
            return v
        if self.accept("op", "+"):
            return self.unary()
        if self.at("cmd", "pm") or self.at("cmd", "mp"):
            self.next()
            return PM * _expr(self.unary())
        return self.power()

    def power(self):
        base = self.postfix()
        if self.accept("op", "^"):
            exp = self.exponent()
            base = safe_pow(base, exp)
            while self.at("op", "!"):
                self.next()
                base = safe_factorial(base)
        return base

    def exponent(self):
        self.enter()
        if self.at("op", "{"):
            v = self.group()
        elif self.accept("op", "-"):
            v = -_expr(self.exponent())
        elif self.at("num"):
            v = _number(self.next()[1])
        else:
            v = self.primary()
        if self.accept("op", "^"):  # plain-text tower 2^3^2 = 2^(3^2)
            v = safe_pow(v, self.exponent())
        self.depth -= 1
        return v

    def postfix(self):
        v = self.primary()
        while True:
            if self.accept("op", "!"):
                v = safe_factorial(v)
            elif self.accept("op", "%"):
                self.percent = True
                v = _expr(v) / 100
            elif self.accept("op", "'"):
                raise Refused("derivative mark")
            else:
                return v

    def group(self):
        """``{...}``."""
        self.expect("op", "{")
        v = self.answer(stop=("}",))
        self.expect("op", "}")
        return v

    def arg(self):
        """A LaTeX macro argument: ``{...}`` or a single token (``\\frac12``)."""
        t = self.peek()
        if t == ("op", "{"):
            return self.group()
        if t[0] == "num":
            self.next()
            if len(t[1]) > 1:  # \frac12: the argument is one digit, the rest stays
                self.toks.insert(self.i, ("num", t[1][1:]))
                return _number(t[1][0])
            return _number(t[1])
        if t[0] == "id":
            return self.primary()
        if t[0] == "cmd":
            return self.primary()
        raise Refused("missing argument")

    def bracket(self, open_: str):
        closers = {"(": (")", "]"), "[": ("]", ")"), "\\{": ("\\}",), "langle": ("rangle",)}[open_]
        self.enter()
        items = []
        if not any(self.at("op", c) or self.at("cmd", c) for c in closers):
            items.append(self.union())
            if open_ == "\\{" and (self.at("cmd", "mid") or self.at("op", "|") or self.at("op", ":")):
                return self.set_builder(items[0])
            while self.accept("op", ",") or self.accept("op", ";"):
                items.append(self.union())
        t = self.next()
        if t[1] not in closers:
            raise Refused("unbalanced bracket")
        self.depth -= 1
        if open_ == "\\{":
            return FSet(tuple(items))
        if open_ == "langle":
            return Bracketed("(", ")", tuple(items))
        if len(items) == 1 and {open_, t[1]} in ({"(", ")"}, {"[", "]"}) and not isinstance(items[0], Bracketed):
            return items[0]
        if len(items) == 1 and open_ == "(" and t[1] == ")":
            return items[0]
        if not items:
            raise Refused("empty brackets")
        return Bracketed(open_, t[1], tuple(items))

    def set_builder(self, head):
        """``\\{x \\mid x > 2\\}``, ``\\{x \\in \\mathbb{R} : -1 < x < 3\\}``: the condition on x, which
        compare reads as the interval or union it describes. Only real x is understood."""
        self.next()  # \mid, | or :
        var = head.terms[0] if isinstance(head, Rel) and head.ops == ("in",) else head
        if not isinstance(var, Symbol) or (isinstance(head, Rel) and head.terms[1] != _REALS):
            raise Refused("set-builder notation outside the reals")
        condition = self.union()
        if not self.accept("op", "\\}"):
            raise Refused("unbalanced set-builder braces")
        self.depth -= 1
        rels = condition.parts if isinstance(condition, UnionV) else (condition,)
        if not all(isinstance(r, Rel) and r.ops[0] not in ("=", "in") and set().union(
                *(t.free_symbols for t in r.terms if isinstance(t, sympy.Expr))) == {var} for r in rels):
            raise Refused("set-builder condition is not an inequality in its variable")
        return condition

    def matrix(self):
        self.expect("op", "{")
        env = ""
        while not self.at("op", "}") and not self.at("eof"):
            env += self.next()[1]
        self.expect("op", "}")
        if env not in ("pmatrix", "bmatrix", "matrix", "Bmatrix", "vmatrix", "array", "smallmatrix"):
            raise Refused("unknown environment")
        if env == "array" and self.at("op", "{"):
            while not self.accept("op", "}"):
                if self.at("eof"):
                    raise Refused("bad array")
                self.next()
        rows, row = [], []
        self.enter()
        while True:
            if self.accept("cmd", "end"):
                self.expect("op", "{")
                while not self.accept("op", "}"):
                    if self.at("eof"):
                        raise Refused("bad matrix end")
                    self.next()
                break
            if self.at("eof"):
                raise Refused("unterminated matrix")
            row.append(_expr(self.expr()))
            if self.accept("op", "&"):
                continue
            if self.accept("op", "\\\\") or self.accept("cmd", "cr"):
                rows.append(tuple(row))
                row = []
                if sum(len(r) for r in rows) > MAX_MATRIX_CELLS:
                    raise Refused("matrix too large")
        if row:
            rows.append(tuple(row))
        self.depth -= 1
        if not rows or len({len(r) for r in rows}) != 1:
            raise Refused("ragged matrix")
        if env == "vmatrix":
            if len(rows) > 4:
                raise Refused("determinant too large")
            return sympy.Matrix(rows).det()
        return Matrix(tuple(rows))

    def function(self, name: str):
        func = _FUNCS[name]
        power = None
        base = None
        if name == "log" and self.accept("op", "_"):
            base = _expr(self.arg())
        if self.accept("op", "^"):
            power = _expr(self.exponent())
            if name == "log" and self.accept("op", "_"):
                base = _expr(self.arg())
        if name in ("lg",):
            func, base = sympy.log, sympy.Integer(10)
        if self.at("op", "("):
            self.next()
            a = self.bracket("(")
        elif self.at("op", "{"):
            a = self.group()
        else:  # \sin 2x: the argument runs to the next operator or function
            a = self.power()
            while self._starts_primary() and not (self.peek()[0] == "cmd" and self.peek()[1] in _FUNCS):
                a = _expr(a) * _expr(self.power())
        a = _expr(a)
        if power is not None and power == -1 and name in _INVERSE:
            return _INVERSE[name](a)
        v = func(a) if base is None else sympy.log(a, base)
        return v if power is None else safe_pow(v, power)

    def _mixed_fraction_ahead(self) -> bool:
        """``\frac{1}{2}`` or ``\frac12`` with integer literals follows."""
        t = self.toks[self.i + 1 : self.i + 7]
        if t[:1] == [("op", "{")] and len(t) >= 6:
            return (t[1][0] == "num" and t[1][1].isdigit() and t[2:4] == [("op", "}"), ("op", "{")]
                    and t[4][0] == "num" and t[4][1].isdigit() and t[5] == ("op", "}"))
        return bool(t) and t[0][0] == "num" and t[0][1].isdigit() and len(t[0][1]) == 2

    def primary(self):
        self.enter()
        try:
            return self._primary()
        finally:
            self.depth -= 1

    def _primary(self):
        kind, val = self.next()
        if kind == "num":
            if self.at("op", "_"):  # 204_5: digits in base 5
                self.next()
                t = self.next()
                if t == ("op", "{"):
                    t = self.next()
                    self.expect("op", "}")
                if t[0] != "num" or not t[1].isdigit() or not 2 <= int(t[1]) <= 36 or not val.isdigit():
                    raise Refused("bad base subscript")
                try:
                    return sympy.Integer(int(val, int(t[1])))
                except ValueError:
                    raise Refused("digit out of range for base") from None
            v = _number(val)
            if val.isdigit() and self.at("cmd", "frac") and self._mixed_fraction_ahead():
                self.next()  # 2\frac{1}{2} is the mixed number 5/2, as written in answers
                return v + _expr(self.arg()) / _expr(self.arg())
            if self.at("cmd", "overline"):  # 0.\overline{3} = 1/3
                self.next()
                self.expect("op", "{")
                digits = ""
                while self.at("num"):
                    digits += self.next()[1]
                self.expect("op", "}")
                if not digits.isdigit() or len(digits) > 50:
                    raise Refused("bad repeating decimal")
                places = len(val.split(".")[1]) if "." in val else 0
                rep = sympy.Rational(int(digits), (10 ** len(digits) - 1) * 10 ** places)
                v = v + rep
            return v
        if kind == "id":
            name = val
            if self.at("op", "_"):
                self.next()
                t = self.next()
                if t == ("op", "{"):
                    sub = ""
                    while not self.accept("op", "}"):
                        if self.at("eof"):
                            raise Refused("bad subscript")
                        sub += self.next()[1]
                else:
                    sub = t[1]
                name = f"{val}_{sub}"
            if name == "e":
                return sympy.E
            if name == "i":
                return sympy.I
            return Symbol(name)
        if kind == "op":
            if val in ("(", "["):
                return self.bracket(val)
            if val == "\\{":
                return self.bracket("\\{")
            if val == "{":
                self.i -= 1
                return self.group()
            if val == "|":
                inner = _expr(self.expr())
                self.expect("op", "|")
                return sympy.Abs(inner)
            raise Refused(f"unexpected {val!r}")
        if kind == "cmd":
            if val in ("frac", "cfrac"):
                num = _expr(self.arg())
                den = _expr(self.arg())
                if den == 0:
                    raise Refused("division by zero")
                return num / den
            if val == "sqrt":
                index = None
                if self.accept("op", "["):
                    index = _expr(self.answer(stop=("]",)))
                    self.expect("op", "]")
                radicand = _expr(self.arg())
                if index is None:
                    return sympy.sqrt(radicand)
                if not index.is_Integer or not 1 <= index <= 100:
                    raise Refused("bad root index")
                return safe_pow(radicand, sympy.Rational(1, int(index)))
            if val in ("lfloor", "lceil"):
                inner = _expr(self.expr())
                self.expect("cmd", "rfloor" if val == "lfloor" else "rceil")
                if not inner.is_number:
                    raise Refused("floor of a formula")
                return (sympy.floor if val == "lfloor" else sympy.ceiling)(inner)
            if val in _INTEGER_FUNCS or val in _ORDER_FUNCS:
                opener = "\\{" if self.accept("op", "\\{") else "("  # \max\{3, 5\} or \max(3, 5)
                if opener == "(":
                    self.expect("op", "(")
                args = self.bracket(opener)
                args = args.items if isinstance(args, (Bracketed, FSet)) else (args,)
                if len(args) > _MAX_ARGS or not all(isinstance(a, sympy.Expr) and a.is_number for a in args):
                    raise Refused(f"{val} of formulas")
                if val in _INTEGER_FUNCS:
                    if not all(a.is_Integer for a in args):
                        raise Refused(f"{val} of non-integers")
                    out = args[0]
                    for a in args[1:]:
                        out = _INTEGER_FUNCS[val](out, a)
                    return out
                if not all(a.is_real for a in args):
                    raise Refused(f"{val} of non-real numbers")
                return _ORDER_FUNCS[val](*args)
            if val == "mathbb":
                self.expect("op", "{")
                letter = self.next()[1]
                self.expect("op", "}")
                return _REALS if letter == "R" else Symbol(f"mathbb_{letter}")  # Z, N, Q, C: by name only
            if val == "binom":
                n = self.arg()
                k = self.arg()
                return safe_binom(n, k)
            if val == "pi":
                return sympy.pi
            if val in ("infty", "inf"):
                return sympy.oo
            if val in ("lbrace",):
                return self.bracket("\\{")
            if val == "langle":
                return self.bracket("langle")
            if val in ("lvert", "vert"):
                inner = _expr(self.expr())
                if not (self.accept("cmd", "rvert") or self.accept("cmd", "vert")):
                    raise Refused("bad abs")
                return sympy.Abs(inner)
            if val == "begin":
                return self.matrix()
            if val in _FUNCS:
                return self.function(val)
            if val == "e":
                return sympy.E
            if val in ("emptyset", "varnothing"):
                return FSet(())
            if val in _GREEK:
                return Symbol(val)
        raise Refused(f"unsupported {val!r}")


_REALS = Bracketed("(", ")", (-sympy.oo, sympy.oo))  # \mathbb{R}


def _integer_mod(a, n):
    a, n = _expr(a), _expr(n)
    if not (a.is_Integer and n.is_Integer) or n == 0:
        raise Refused("mod of non-integers")
    return a % n


def _set_minus(a, b):
    """An interval minus finite points (``\\mathbb{R} \\setminus \\{0\\}``), as the union of what is left."""
    points = b.items if isinstance(b, FSet) else None
    if not (isinstance(a, Bracketed) and len(a.items) == 2 and a.left in "([" and a.right in ")]") or points is None \
            or len(points) > _MAX_ARGS or not all(isinstance(p, sympy.Expr) and p.is_real for p in points):
        raise Refused("set difference other than an interval minus points")
    parts, left, low = [], a.left, a.items[0]
    for p in sorted(set(points), key=lambda x: float(x)):
        if not (a.items[0] < p < a.items[1]):
            continue  # an end point or a point outside: the ends would change, not handled
        parts.append(Bracketed(left, ")", (low, p)))
        left, low = "(", p
    parts.append(Bracketed(left, a.right, (low, a.items[1])))
    return parts[0] if len(parts) == 1 else UnionV(tuple(parts))


def parse(text: str):
    """Parse a normalised answer to a value (see module docstring); raises Refused."""
    p = Parser(text)
    v = p.parse()
    return expand_pm(v), p.percent


def expand_pm(v):
    """Replace the placeholder of ``a \\pm b`` by the set {a + b, a - b}."""
    if isinstance(v, sympy.Expr) and v.has(PM):
        return FSet((v.subs(PM, 1), v.subs(PM, -1)))
    if isinstance(v, (Seq, FSet)):
        items = []
        for x in v.items:
            x = expand_pm(x)
            items.extend(x.items if isinstance(x, FSet) else [x])
        return type(v)(tuple(items))
    if isinstance(v, Rel):
        terms = [expand_pm(t) for t in v.terms]
        if any(isinstance(t, FSet) for t in terms) and len(terms) == 2 and v.ops == ("=",):
            rhs = terms[1]
            if isinstance(rhs, FSet):
                return Seq(tuple(Rel(("=",), (terms[0], r)) for r in rhs.items))
        return Rel(v.ops, tuple(terms))
    return v
