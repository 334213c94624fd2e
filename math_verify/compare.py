"""Comparison: is a parsed prediction the same mathematics as the parsed gold?

What is equal to what:
  * numbers: exactly. Integers and fractions compare as rationals (``2^{64}-1``
    is not ``2^{64}``); a written decimal is the exact rational it denotes
    (``0.375`` = ``3/8``) so an approximation of an irrational gold is wrong
    (``3.14`` vs ``\\pi``). Irrational constants are equal when their difference
    evaluates to zero at a working precision of 60 significant digits above
    their magnitude.
  * formulas with variables: equal at several random points (relative
    difference below 1e-12 at every point).
  * ``x = 3`` equals ``3``; two equations are equal when both sides match or
    ``lhs - rhs`` of one is a non-zero constant multiple of the other's.
  * sets (``\\{..\\}``, ``\\pm``, bare lists ``2, 3``) are unordered; tuples,
    points and intervals are ordered and their brackets must agree (except at
    an infinite end); unions are unordered lists of intervals; an inequality in
    one variable equals the interval or union it describes.
  * matrices: same shape and entries; a one-column matrix equals a tuple.
"""
from __future__ import annotations

import math
import random

import sympy

from .parse import Bracketed, FSet, Matrix, Refused, Rel, Seq, UnionV

_TOL_DIGITS = 40
_SAMPLES = 4


def _is_infinite(x) -> bool:
    return isinstance(x, sympy.Expr) and x.has(sympy.oo, -sympy.oo, sympy.zoo)


def expr_equal(a: sympy.Expr, b: sympy.Expr) -> bool:
    if a == b:
        return True
    if a.is_Rational and b.is_Rational:
        return False
    if _is_infinite(a) or _is_infinite(b):
        return False
    if a.has(sympy.nan) or b.has(sympy.nan):
        return False
    fa, fb = a.free_symbols, b.free_symbols
    if not fa and not fb:
        return _const_zero(a - b, a)
    return _equal_at_points(a, b, sorted(fa | fb, key=str))


def _magnitude_digits(x: sympy.Expr) -> int:
    try:
        v = abs(complex(x.evalf(15)))
    except (TypeError, ValueError, OverflowError):
        return 0
    if v == 0 or v != v or v == float("inf"):
        return 0
    return max(0, int(math.log10(v)) + 1)


def _const_zero(d: sympy.Expr, scale: sympy.Expr) -> bool:
    prec = _TOL_DIGITS + 20 + _magnitude_digits(scale)
    try:
        v = d.evalf(prec)
        if not v.is_number:
            return False
        mag = abs(complex(v))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError):
        return False
    return mag < 10.0 ** (-_TOL_DIGITS)


def _random_point(rng: random.Random, syms) -> dict:
    """Floats in [0.3, 2.3]: evaluated numerically (``evalf(subs=...)``), never expanded exactly,
    and small enough that towers such as ``x^{x^{x}}`` stay representable."""
    return {s: sympy.Float(0.3 + 2 * rng.random(), 30) for s in syms}


def _numeric_form(x: sympy.Expr) -> sympy.Expr:
    """Binomials and factorials of symbols as gamma functions, so they evaluate at any point."""
    if x.has(sympy.binomial, sympy.factorial):
        return x.rewrite(sympy.gamma)
    return x


def _evaluations(f: sympy.Expr, g: sympy.Expr, syms, seed: int):
    """(f, g) as complex numbers at up to 2 * _SAMPLES seeded random points, skipping points where
    either fails to evaluate."""
    rng = random.Random(seed)
    for _ in range(_SAMPLES * 2):
        point = _random_point(rng, syms)
        try:
            yield complex(f.evalf(30, subs=point)), complex(g.evalf(30, subs=point))
        except (TypeError, ValueError, OverflowError, ZeroDivisionError):
            continue


def _equal_at_points(a, b, syms) -> bool:
    good = 0
    for va, vb in _evaluations(_numeric_form(a), _numeric_form(b), syms, 1234):
        if any(z != z or abs(z) == float("inf") for z in (va, vb)):
            continue
        if abs(va - vb) > 1e-12 * max(1.0, abs(va), abs(vb)):
            return False
        good += 1
        if good >= _SAMPLES:
            return True
    return False


def _proportional(f: sympy.Expr, g: sympy.Expr) -> bool:
    """f = c * g for a non-zero constant c (the same solution set)."""
    syms = sorted(f.free_symbols | g.free_symbols, key=str)
    if f.free_symbols != g.free_symbols or not syms:
        return False
    ratio = None
    good = 0
    for vf, vg in _evaluations(f, g, syms, 99):
        if abs(vg) < 1e-12 or vf != vf or vg != vg:
            continue
        r = vf / vg
        if abs(r) < 1e-12:
            return False
        if ratio is None:
            ratio = r
        elif abs(r - ratio) > 1e-9 * max(1.0, abs(ratio)):
            return False
        good += 1
        if good >= _SAMPLES:
            return True
    return False


def _unwrap_assignment(v, predicted=True):
    """``x = 3`` -> 3, ``(p, q) = (3, 2)`` -> (3, 2), ``x \\in [1, 2]`` -> [1, 2]; and in a prediction only,
    ``2+3 = 5`` -> 5. A gold ``a + 3z = 0`` (a plane) stays an equation: its right side alone is not it."""
    if isinstance(v, Rel) and "~" in v.ops:  # x = 1/3 \approx 0.33: keep the exact part
        k = v.ops.index("~")
        lhs, rhs = v.terms[0], v.terms[1]
        if k == 0 and len(v.ops) == 1 and (isinstance(lhs, sympy.Symbol) or _is_function_name(lhs) or (
                predicted and isinstance(lhs, sympy.Expr) and lhs.free_symbols and isinstance(rhs, sympy.Expr)
                and not rhs.free_symbols)):
            return v.terms[1]  # y \approx 5 states y's value (compared exactly: 0.33 is still not 1/3)
        v = v.terms[0] if k == 0 else Rel(v.ops[:k], v.terms[: k + 1])
        if not isinstance(v, Rel):
            return v
    if isinstance(v, Rel) and len(v.ops) == 1 and v.ops[0] in ("=", "in"):
        lhs, rhs = v.terms
        if isinstance(lhs, sympy.Symbol) or _is_function_name(lhs) or _names_tuple(lhs):
            return rhs
        if v.ops[0] == "=" and isinstance(lhs, sympy.Expr) and isinstance(rhs, sympy.Expr) and not rhs.free_symbols \
                and (predicted or _stated_quantity(lhs, rhs)):
            return rhs  # "2 + 3 = 5", and "m + n = 7" answering "find m + n"
    if predicted and isinstance(v, Rel) and all(op == "=" for op in v.ops) and len(v.ops) > 1:
        return v.terms[-1]
    return v


def _stated_quantity(lhs, rhs) -> bool:
    """A gold ``m + n = 7`` states the value of the quantity asked for ("find m + n"); a gold
    ``a + 3z = 0`` or ``2x + 3y = 6`` is an equation (a plane, a line) and is not its right side.
    The first: a sum or product of letters other than the coordinates x, y, z, each with
    coefficient 1, equal to a non-zero number."""
    if rhs == 0 or not lhs.free_symbols or lhs.free_symbols & {sympy.Symbol(c) for c in "xyz"}:
        return False
    terms = lhs.args if isinstance(lhs, sympy.Add) else (lhs,)
    return all(isinstance(t, sympy.Symbol) or (isinstance(t, sympy.Mul) and all(
        isinstance(f, sympy.Symbol) for f in t.args)) for t in terms)


def _names_tuple(x) -> bool:
    """``(p, q)`` on the left of ``(p, q) = (3, 2)``."""
    return isinstance(x, Bracketed) and x.left == "(" and len(x.items) > 1 and all(
        isinstance(a, sympy.Symbol) for a in x.items)


def _named_values(v):
    """{name: [values]} when v assigns values to named variables (``a = 3, b = 5``, ``(a, b) = (3, 5)``,
    ``x = 1, x = -3``), else None."""
    items = v.items if isinstance(v, Seq) else (v,)
    named = {}
    for r in items:
        if not (isinstance(r, Rel) and r.ops == ("=",)):
            return None
        lhs, rhs = r.terms
        if isinstance(lhs, sympy.Symbol):
            named.setdefault(str(lhs), []).append(rhs)
        elif _names_tuple(lhs) and isinstance(rhs, Bracketed) and len(rhs.items) == len(lhs.items):
            for name, value in zip(lhs.items, rhs.items):
                named.setdefault(str(name), []).append(value)
        else:
            return None
    return named


def _is_function_name(x) -> bool:
    """``f(x)`` or ``f^{-1}(x)`` as parsed (the product f*x, x/f) on the left of ``f(x) = ...``."""
    if not isinstance(x, sympy.Mul) or len(x.args) != 2:
        return False
    names = [a.base if isinstance(a, sympy.Pow) and a.exp == -1 else a for a in x.args]
    if not all(isinstance(a, sympy.Symbol) for a in names):
        return False
    return any(str(a) in ("f", "g", "h", "p", "q", "P", "Q") for a in names)


def _inequality_interval(r: Rel):
    """The interval an inequality chain in one symbol describes, or None."""
    if not all(op in ("<", "<=", ">", ">=") for op in r.ops):
        return None
    terms = list(r.terms)
    ops = list(r.ops)
    if ops[0] in (">", ">="):  # read chains right to left
        terms.reverse()
        ops = [{">": "<", ">=": "<="}[o] for o in reversed(ops)]
    if any(o not in ("<", "<=") for o in ops):
        return None
    if len(terms) == 2:
        terms = _isolate_linear(terms)
    var = [k for k, t in enumerate(terms) if isinstance(t, sympy.Symbol)]
    if len(var) != 1 or any(not isinstance(t, sympy.Expr) or t.free_symbols for k, t in enumerate(terms) if k != var[0]):
        return None
    k = var[0]
    if len(terms) == 2:
        if k == 0:
            return Bracketed("(", ")" if ops[0] == "<" else "]", (-sympy.oo, terms[1]))
        return Bracketed("(" if ops[0] == "<" else "[", ")", (terms[0], sympy.oo))
    if len(terms) == 3 and k == 1:
        return Bracketed("(" if ops[0] == "<" else "[", ")" if ops[1] == "<" else "]", (terms[0], terms[2]))
    return None


def _isolate_linear(terms):
    """``-x > -1`` (read as ``-1 < -x``) -> ``[x, 1]`` with the inequality flipped, for linear forms.

    ``terms`` is [low, high] of ``low < high``; returns the same shape with the
    variable alone, or the input unchanged when it is not linear in one symbol.
    """
    low, high = terms
    if not (isinstance(low, sympy.Expr) and isinstance(high, sympy.Expr)):
        return terms
    syms = low.free_symbols | high.free_symbols
    if len(syms) != 1 or isinstance(low, sympy.Symbol) or isinstance(high, sympy.Symbol):
        return terms
    (x,) = syms
    if any(p.exp.is_Integer and abs(p.exp) > 10 for p in (high - low).atoms(sympy.Pow)):
        return terms  # not linear anyway, and expanding it could be expensive
    f = sympy.expand(high - low)  # low < high  <=>  f > 0
    c = f.coeff(x, 1)
    rest = sympy.expand(f - c * x)
    if not c.is_number or c == 0 or rest.has(x) or not c.is_real:
        return terms
    bound = -rest / c
    return [bound, x] if c > 0 else [x, bound]


def _by_variable(items):
    """``y = 2, x = 1`` in the order of the variable names (x, y), as a point (1, 2) is written."""
    names = [str(r.terms[0]) if isinstance(r, Rel) and r.ops == ("=",) and isinstance(r.terms[0], sympy.Symbol)
             else None for r in items]
    if None in names or len(set(names)) != len(names):
        return items
    return tuple(r for _, r in sorted(zip(names, items), key=lambda t: t[0]))


def _abs_inequality(r: Rel):
    """``|z| < a`` is (-a, a), ``|z| > a`` is (-oo, -a) U (a, oo) (a a positive number), or None."""
    if len(r.ops) != 1 or r.ops[0] not in ("<", "<=", ">", ">="):
        return None
    lhs, rhs = r.terms
    op = r.ops[0]
    if isinstance(rhs, sympy.Abs) and not isinstance(lhs, sympy.Abs):
        lhs, rhs, op = rhs, lhs, {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
    if not (isinstance(lhs, sympy.Abs) and isinstance(lhs.args[0], sympy.Symbol) and isinstance(rhs, sympy.Expr)
            and rhs.is_number and rhs.is_positive):
        return None
    if op in ("<", "<="):
        close = "[" if op == "<=" else "("
        return Bracketed(close, "]" if op == "<=" else ")", (-rhs, rhs))
    return UnionV((Bracketed("(", "]" if op == ">=" else ")", (-sympy.oo, -rhs)),
                   Bracketed("[" if op == ">=" else "(", ")", (rhs, sympy.oo))))


def _as_set_like(v):
    if isinstance(v, Rel):
        iv = _inequality_interval(v)
        if iv is not None:
            return iv
    if isinstance(v, UnionV):
        parts = tuple(_as_set_like(p) for p in v.parts)
        if all(isinstance(p, FSet) for p in parts):  # {1, 2} \cup {3} = {1, 2, 3}
            return FSet(tuple(x for p in parts for x in p.items))
        return UnionV(parts)
    return v


MAX_ITEMS = 50
"""Longer lists, sets and tuples are not compared (pairwise matching is quadratic)."""


def _ordered_equal(xs, ys) -> bool:
    if len(xs) > MAX_ITEMS or len(ys) > MAX_ITEMS:
        return False
    return len(xs) == len(ys) and all(equal(x, y) for x, y in zip(xs, ys))


def _unordered_equal(xs, ys) -> bool:
    xs, ys = list(xs), list(ys)
    if len(xs) > MAX_ITEMS or len(ys) > MAX_ITEMS:
        return False
    used = [False] * len(ys)
    for x in xs:
        for j, y in enumerate(ys):
            if equal(x, y):
                used[j] = True
                break
        else:
            return False
    # every y must be matched by some x (sets: duplicates collapse)
    for j, y in enumerate(ys):
        if not used[j] and not any(equal(x, y) for x in xs):
            return False
    return True


def _brackets_equal(a: Bracketed, b: Bracketed) -> bool:
    if len(a.items) != len(b.items) or not _ordered_equal(a.items, b.items):
        return False
    left_ok = a.left == b.left or _is_infinite(a.items[0])
    right_ok = a.right == b.right or _is_infinite(a.items[-1])
    return left_ok and right_ok


def equal(p, g) -> bool:
    """Structural mathematical equality of a parsed prediction p and a parsed gold g (see module docstring)."""
    named_p, named_g = _named_values(p), _named_values(g)
    if named_p and named_g and (len(named_p) > 1 or len(named_g) > 1):
        # Both name their variables: each name must get the same values (swapping them is wrong).
        return named_p.keys() == named_g.keys() and all(_unordered_equal(named_p[k], named_g[k]) for k in named_p)
    if isinstance(p, Rel) and isinstance(g, Rel) and p.ops == g.ops == ("=",):
        return _relations_equal(p, g)
    p, g = _as_set_like(_unwrap_assignment(p)), _as_set_like(_unwrap_assignment(g, predicted=False))
    if isinstance(g, Rel) and not isinstance(p, Rel):  # a gold |z| > 2 answered by its intervals
        g = _abs_inequality(g) or g
    if isinstance(p, Seq):
        p = Seq(tuple(_as_set_like(_unwrap_assignment(x)) for x in _by_variable(p.items)))
    if isinstance(g, Seq):
        g = Seq(tuple(_as_set_like(_unwrap_assignment(x, predicted=False)) for x in _by_variable(g.items)))
    if isinstance(p, sympy.Expr) and isinstance(g, sympy.Expr):
        return expr_equal(p, g)
    if isinstance(p, (FSet, Seq)) and isinstance(g, (FSet, Seq)):
        return _unordered_equal(p.items, g.items)
    if isinstance(p, FSet) and len(p.items) == 1 and not isinstance(g, (FSet, Seq)):
        return equal(p.items[0], g)
    if isinstance(g, FSet) and len(g.items) == 1 and not isinstance(p, (FSet, Seq)):
        return equal(p, g.items[0])
    if isinstance(p, Bracketed) and isinstance(g, Bracketed):
        return _brackets_equal(p, g)
    if isinstance(p, Seq) and isinstance(g, Bracketed) and g.left == "(" and g.right == ")":
        return _ordered_equal(p.items, g.items)
    if named_g and isinstance(p, Bracketed) and p.left == "(" and p.right == ")" and isinstance(g, Seq):
        return _ordered_equal(p.items, g.items)  # (2, 3) answers p = 2, q = 3 (names in alphabetical order)
    if isinstance(p, UnionV) and isinstance(g, UnionV):
        return len(p.parts) == len(g.parts) and _unordered_equal(p.parts, g.parts)
    if isinstance(p, Matrix) and isinstance(g, Matrix):
        return len(p.rows) == len(g.rows) and all(_ordered_equal(r, s) for r, s in zip(p.rows, g.rows))
    if isinstance(p, Matrix) != isinstance(g, Matrix):
        m, other = (p, g) if isinstance(p, Matrix) else (g, p)
        flat = [x for row in m.rows for x in row]
        if (len(m.rows) == 1 or all(len(r) == 1 for r in m.rows)) and isinstance(other, Bracketed) \
                and other.left == "(" and other.right == ")":
            return _ordered_equal(flat, other.items)
        return False
    if isinstance(p, Rel) and isinstance(g, Rel):
        return _relations_equal(p, g)
    return False


def _relations_equal(p: Rel, g: Rel) -> bool:
    if p.ops != g.ops and not (len(p.ops) == len(g.ops) == 1 and {p.ops[0], g.ops[0]} <= {"=", "!="}):
        if len(p.ops) == len(g.ops) == 1 and all(isinstance(t, sympy.Expr) for t in p.terms + g.terms):
            flip = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
            if flip.get(p.ops[0]) == g.ops[0]:
                return _relations_equal(Rel(g.ops, (p.terms[1], p.terms[0])), g)
        return False
    if p.ops != g.ops:
        return False
    if _ordered_equal(p.terms, g.terms):
        return True
    if len(p.ops) == 1 and p.ops[0] in ("=", "!=") and all(isinstance(t, sympy.Expr) for t in p.terms + g.terms):
        if _ordered_equal(p.terms[::-1], g.terms):
            return True
        return _proportional(p.terms[0] - p.terms[1], g.terms[0] - g.terms[1])
    return False


# ---------------------------------------------------------------- closed forms too large to expand
_RESIDUE_PRIMES = 3
_MAX_RESIDUE_BITS = 10**10  # an upper bound on the size of any value met (2^{50000}: 50,000 bits)
_MAX_DEGREE = 10**4  # of a polynomial in the answer's letters (x+1)^{2016}


class _NotClosedForm(Exception):
    pass


def _is_prime(n: int) -> bool:
    """Miller-Rabin with the first 12 prime bases: exact for n < 3.3e24."""
    if n < 2:
        return False
    small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    for q in small:
        if n % q == 0:
            return n == q
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in small:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


class _Residues:
    """Integer arithmetic with powers (``+ - * / ^``, ``\\frac``, ``\\cdot``, ``\\times``, brackets, letters as
    unknowns) modulo a prime ``p``, never building the numbers themselves; with ``p=None``, exactly (for
    exponents: no letters, no division, at most 40 bits). Each value is (v, bits, degree): ``bits`` bounds
    the size of the rational it stands for, ``degree`` its degree in the letters. Anything else raises."""

    def __init__(self, tokens, p: int | None, letters: dict, k: int = 0):
        self.t, self.k, self.p, self.letters = tokens, k, p, letters

    def peek(self):
        return self.t[self.k] if self.k < len(self.t) else ("end", "")

    def take(self, text=None):
        tok = self.peek()
        if text is not None and tok[1] != text:
            raise _NotClosedForm(text)
        self.k += 1
        return tok

    def value(self):
        v = self.sum()
        if self.k != len(self.t):
            raise _NotClosedForm("trailing tokens")
        return v

    def _make(self, v, bits, degree):
        if bits > (_MAX_RESIDUE_BITS if self.p else 40) or degree > _MAX_DEGREE:
            raise _NotClosedForm("too large")
        return (v % self.p if self.p else v, bits, degree)

    def sum(self):
        v = self.product()
        while self.peek() in (("op", "+"), ("op", "-")):
            sign = 1 if self.take()[1] == "+" else -1
            w = self.product()
            v = self._make(v[0] + sign * w[0], max(v[1], w[1]) + 1 if not self.p else v[1] + w[1] + 1, max(v[2], w[2]))
        return v

    def product(self):
        v = self.unary()
        while True:
            tok = self.peek()
            if tok in (("cmd", "cdot"), ("cmd", "times"), ("op", "*")):
                self.take()
                w = self.unary()
            elif tok == ("op", "/"):
                self.take()
                w = self._inverse(self.unary())
            elif tok[0] in ("num", "id") or tok in (("op", "("), ("op", "{"), ("cmd", "frac")):  # 2(x+1), 3x
                w = self.power()
            else:
                return v
            v = self._make(v[0] * w[0], v[1] + w[1], v[2] + w[2])

    def unary(self):
        if self.peek() in (("op", "-"), ("op", "+")):
            sign = -1 if self.take()[1] == "-" else 1
            v = self.unary()
            return self._make(sign * v[0], v[1], v[2])
        return self.power()

    def power(self):
        v = self.atom()
        if self.peek() != ("op", "^"):
            return v
        self.take()
        exponent = _Residues(self.t, None, self.letters, self.k)  # the exponent, exactly
        e = exponent.unary()[0] if exponent.peek() == ("op", "-") else exponent.atom()[0]
        self.k = exponent.k
        if e < 0:
            v, e = self._inverse(v), -e
        if self.p is None:
            return self._make(v[0] ** e if v[1] * e <= 40 else 2**41, v[1] * e, 0)
        return self._make(pow(v[0], e, self.p), v[1] * e, v[2] * e)

    def atom(self):
        kind, text = self.take()
        if kind == "num" and text.isdigit() and len(text) <= 1000:
            n = int(text)
            return self._make(n, n.bit_length(), 0)
        if kind == "id" and text not in ("e", "i") and self.p:
            return (self.letters.setdefault((text, self.p), random.randrange(self.p)), 64, 1)
        if (kind, text) in (("op", "("), ("op", "{")):
            v = self.sum()
            self.take(")" if text == "(" else "}")
            return v
        if (kind, text) == ("cmd", "frac"):
            self.take("{")
            num = self.sum()
            self.take("}")
            self.take("{")
            den = self._inverse(self.sum())
            self.take("}")
            return self._make(num[0] * den[0], num[1] + den[1], num[2] + den[2])
        raise _NotClosedForm(text)

    def _inverse(self, v):
        if not self.p or v[0] == 0 or v[2]:
            raise _NotClosedForm("division exactly, by zero mod p, or by a polynomial")
        return (pow(v[0], -1, self.p), v[1], v[2])


def _closed_forms_equal(p_math: str, g_math: str) -> bool | None:
    """Are two closed forms with powers too large to expand (``2^{50000}-1``, ``(x+1)^{2016}``) equal? Both are
    evaluated modulo 3 random 61-bit primes, with the same random values for their letters: different values
    agree on all three with probability below 1e-18 (their difference has too few prime factors of that size).
    None when either side is not such a closed form."""
    from .parse import tokenize

    try:
        pt, gt = tokenize(p_math), tokenize(g_math)
        rng = random.Random()
        letters: dict = {}
        for _ in range(_RESIDUE_PRIMES):
            p = rng.getrandbits(61) | (1 << 60) | 1
            while not _is_prime(p):
                p += 2
            if _Residues(pt, p, letters).value()[0] != _Residues(gt, p, letters).value()[0]:
                return False
        return True
    except (_NotClosedForm, ValueError, RecursionError):
        return None


def answers_equal(pred: str, gold: str) -> bool:
    """Full check of two extracted answer strings: normalise, parse, compare.

    Runs sympy, so it is only ever called inside a supervised worker (or by
    tests); ``runner`` enforces the deadline around it. Never raises.
    """
    from .normalize import gold_list, normalize
    try:
        p_math, p_text = normalize(pred)
        g_math, g_text = normalize(gold)
        if p_text is not None or g_text is not None:
            return p_text is not None and p_text == g_text
        if not p_math or not g_math:
            return False
        g_math = gold_list(g_math)
        try:
            pv = _candidates(p_math)
            gv = _candidates(g_math)
        except Refused:  # a power too large to expand (2^{50000}, (x+1)^{2016}): compared modulo primes
            return bool(_closed_forms_equal(p_math, g_math))
        if pv[0][1] and gv[0][1]:  # both are percentages: compare as written
            return equal(pv[0][0], gv[0][0])
        return any(equal(a, b) for a, _ in pv for b, _ in gv)
    except Exception:  # Refused, RecursionError, MemoryError, any sympy error: not equal
        return False


def _candidates(math: str):
    """The parsed value, plus the value without its % sign ("20%" may be read as 20)."""
    from .parse import parse

    v, pct = parse(math)
    out = [(v, pct)]
    if pct:
        out.append((parse(math.replace("%", " "))[0], False))
    return out
