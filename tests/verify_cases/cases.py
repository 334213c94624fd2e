r"""Verifier cases: (completion, gold, expected), one list per category.

Completions are written the way Qwen / DeepSeek-R1 / Llama chain-of-thought
outputs look (long reasoning, intermediate boxes, ``<think>`` blocks,
``**Final Answer**``); golds are in the dataset forms (MATH LaTeX, DAPO and
GSM8K integers, multiple-choice letters). Near misses are False cases.
Grow these tables from every real failure.
"""

COT = (
    "<think>\nOkay, let me work through this carefully. First I set up the equation and "
    "simplify both sides. Wait, let me double check the arithmetic: 12 + 30 = 42, and "
    "dividing by 6 gives 7. Hmm, that was only an intermediate step, so \\boxed{7} is not "
    "the answer yet. Let me continue with the substitution and verify the result.\n</think>\n\n"
    "We start by rewriting the problem. After simplifying, we obtain the expression below.\n\n"
)


def cot(final: str) -> str:
    return COT + "Therefore, the final answer is:\n\n**Final Answer**\n\\[\n\\boxed{" + final + "}\n\\]"


BOXED = [
    (cot("42"), "42", True),
    (cot("41"), "42", False),
    (COT + "So the answer is $\\boxed{\\dfrac{3}{4}}$.", "\\frac{3}{4}", True),
    (COT + "So the answer is $\\boxed{\\dfrac{4}{3}}$.", "\\frac{3}{4}", False),
    ("The value is \\boxed 5.", "5", True),
    ("\\fbox{12}", "12", True),
    ("First \\boxed{3}. Then after more work on the second part of the problem we find \\boxed{8}.", "8", True),
    ("First \\boxed{3}. Then after more work on the second part of the problem we find \\boxed{8}.", "3", False),
    ("<think>the answer might be \\boxed{10}</think>\nActually, recomputing: the answer is \\boxed{12}.", "12", True),
    ("<think>the answer might be \\boxed{10}</think>\nActually, recomputing: the answer is \\boxed{12}.", "10", False),
    ("<think>long thought... \\boxed{10}</think>\nThe final answer is \\(\\boxed{10}\\).", "10", True),
    ("<think>I think it is 9. So \\boxed{9}", "9", True),
    ("The answer is $\\boxed{\\boxed{6}}$", "6", True),
    ("Thus $x = \\boxed{-\\frac{1}{2}}$.", "-\\frac12", True),
    ("Thus $x = \\boxed{-\\frac{1}{2}}$.", "\\frac12", False),
    ("**Final Answer**\n\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", True),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt2}{2}", False),
    ("no box and no answer here, just musings about numbers like 5", "5", False),
    ("", "5", False),
    ("\\boxed{}", "5", False),
    ("The answer is \\boxed{5", "5", False),
    ("\\boxed{x=2}", "2", True),
    ("\\boxed{x = -2}", "2", False),
    ("$\\boxed{\\text{(B)}}$", "\\text{(B)}", True),
    ("\\boxed{\\textbf{(C)}}", "C", True),
    (cot("\\frac{1}{3}"), "\\frac13", True),
    (cot("2\\sqrt{3}"), "2\\sqrt3", True),
    (cot("3\\sqrt{2}"), "2\\sqrt3", False),
]

ANSWER_LINES = [
    ("Let me compute. 17 + 17 = 34.\nAnswer: 34", "34", True),
    ("Let me compute. 17 + 17 = 34.\nAnswer: 35", "34", False),
    ("Reasoning...\nAnswer: $2^{100}$", "1267650600228229401496703205376", True),
    ("Reasoning...\nAnswer: $2^{100}$", "2", False),
    ("Reasoning...\nAnswer: 2^{100}", "1267650600228229401496703205376", True),
    ("Reasoning...\nAnswer: $2\\sqrt{3}$", "2\\sqrt{3}", True),
    ("Reasoning...\nAnswer: $2\\sqrt{3}$", "2", False),
    ("Reasoning...\nAnswer: $10\\%$", "10", True),
    ("Reasoning...\nAnswer: 10%", "0.1", True),
    ("**Answer:** 120", "120", True),
    ("Final answer: 7.", "7", True),
    ("Final Answer: The final answer is $\\frac{5}{2}$. I hope it is correct.", "\\frac52", True),
    ("Final Answer: The final answer is $\\frac{5}{2}$. I hope it is correct.", "\\frac25", False),
    ("Final Answer: The final answer is 18. I hope it is correct.", "18", True),
    ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72", "72", True),
    ("He earns 1,000 + 234 = 1,234 dollars.\n#### 1,234", "1234", True),
    ("He earns 1,000 + 234 = 1,234 dollars.\n#### 1,234", "234", False),
    ("So she has 5 apples left. The answer is 5.", "5", True),
    ("So she has 5 apples left. The answer is 6.", "5", False),
    ("The answer is $\\frac{7}{8}$.", "0.875", True),
    ("Answer: $x = 4$", "4", True),
    ("Answer: -3", "3", False),
    ("Answer: \\$18.90", "18.9", True),
]

INTEGERS = [
    ("\\boxed{2^{64}-1}", "18446744073709551615", True),
    ("\\boxed{2^{64}-1}", "18446744073709551616", False),
    ("\\boxed{18446744073709551616}", "2^{64}", True),
    ("\\boxed{10^{100}+1}", "10^{100}", False),
    ("\\boxed{1000000007}", "1000000007", True),
    ("\\boxed{1000000007}", "1000000008", False),
    ("\\boxed{-17}", "-17", True),
    ("\\boxed{017}", "17", True),
    ("\\boxed{3 \\cdot 5}", "15", True),
    ("\\boxed{3 \\times 5 + 1}", "16", True),
    ("\\boxed{2^{10}}", "1024", True),
    ("\\boxed{2^10}", "1024", True),
    ("\\boxed{7}", "7.0", True),
    ("\\boxed{6.9999}", "7", False),
]

DECIMALS_FRACTIONS = [
    ("\\boxed{0.375}", "\\frac{3}{8}", True),
    ("\\boxed{0.38}", "\\frac{3}{8}", False),
    ("\\boxed{\\frac13}", "\\frac{1}{3}", True),
    ("\\boxed{0.333}", "\\frac{1}{3}", False),
    ("\\boxed{0.\\overline{3}}", "\\frac{1}{3}", True),
    ("\\boxed{\\tfrac{6}{8}}", "\\frac34", True),
    ("\\boxed{6/8}", "\\frac{3}{4}", True),
    ("\\boxed{-6/8}", "\\frac{3}{4}", False),
    ("\\boxed{\\frac{1}{2}}", "0.5", True),
    ("\\boxed{.5}", "\\frac12", True),
    ("\\boxed{\\frac{10}{4}}", "2.5", True),
    ("\\boxed{2\\frac{1}{2}}", "\\frac{5}{2}", False),
    ("\\boxed{\\frac{a}{b}}", "\\frac{a}{b}", True),
    ("\\boxed{1.50}", "\\frac32", True),
    ("\\boxed{\\dfrac{-3}{4}}", "-\\frac{3}{4}", True),
    ("\\boxed{\\frac{3}{-4}}", "-0.75", True),
    ("\\boxed{3.14}", "\\pi", False),
    ("\\boxed{1.4142}", "\\sqrt{2}", False),
    ("\\boxed{2.5 \\times 10^{-3}}", "0.0025", True),
    ("\\boxed{1.3 \\times 10^{4}}", "13000", True),
]

ROOTS_CONSTANTS = [
    ("\\boxed{\\sqrt{12}}", "2\\sqrt{3}", True),
    ("\\boxed{\\sqrt{8}}", "2\\sqrt{3}", False),
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{\\sqrt{2}}{2}", True),
    ("\\boxed{\\sqrt[3]{8}}", "2", True),
    ("\\boxed{\\sqrt[3]{16}}", "2\\sqrt[3]{2}", True),
    ("\\boxed{4\\pi}", "4\\pi", True),
    ("\\boxed{4\\pi}", "2\\pi", False),
    ("\\boxed{\\frac{\\pi}{2}}", "\\frac{\\pi}2", True),
    ("\\boxed{1-\\frac{1}{\\mathrm{e}}}", "1 - e^{-1}", True),
    ("\\boxed{1-\\frac{1}{e}}", "1-\\frac{1}{\\mathrm{e}}", True),
    ("\\boxed{1}", "1-\\frac{1}{\\mathrm{e}}", False),
    ("\\boxed{e^2}", "e^{2}", True),
    ("\\boxed{\\ln 8}", "3\\ln 2", True),
    ("\\boxed{\\log_2 8}", "3", True),
    ("\\boxed{\\log_{3} 81}", "4", True),
    ("\\boxed{\\sin\\frac{\\pi}{6}}", "\\frac12", True),
    ("\\boxed{\\cos(\\pi/3)}", "0.5", True),
    ("\\boxed{\\tan \\frac{\\pi}{4}}", "1", True),
    ("\\boxed{\\sqrt{2}+\\sqrt{3}}", "\\sqrt{5+2\\sqrt{6}}", True),
    ("\\boxed{\\sqrt{2}+\\sqrt{3}}", "\\sqrt{5}", False),
    ("\\boxed{2+\\sqrt{3}}", "\\frac{1}{2-\\sqrt{3}}", True),
    ("\\boxed{\\pi r^2}", "\\pi r^{2}", True),
    ("\\boxed{\\frac{\\sqrt{6}-\\sqrt{2}}{4}}", "\\frac{\\sqrt6 - \\sqrt2}{4}", True),
]

FACTORIAL_BINOMIAL = [
    ("\\boxed{3!}", "6", True),
    ("\\boxed{5!}", "120", True),
    ("\\boxed{5!}", "24", False),
    ("\\boxed{\\binom{5}{2}}", "10", True),
    ("\\boxed{\\binom52}", "10", True),
    ("\\boxed{\\dbinom{10}{3}}", "120", True),
    ("\\boxed{\\binom{10}{3}}", "\\binom{10}{7}", True),
    ("\\boxed{\\frac{10!}{3!7!}}", "120", True),
    ("\\boxed{\\binom{10}{3}}", "100", False),
]

COMPLEX = [
    ("\\boxed{(1+i)^2}", "2i", True),
    ("\\boxed{2i}", "(1+i)^2", True),
    ("\\boxed{-2i}", "2i", False),
    ("\\boxed{3-4i}", "3 - 4i", True),
    ("\\boxed{3+4i}", "3 - 4i", False),
    ("\\boxed{\\frac{1}{i}}", "-i", True),
    ("\\boxed{i^2}", "-1", True),
    ("\\boxed{1+i\\sqrt{3}}", "1+\\sqrt{3}i", True),
]

INTERVALS = [
    ("\\boxed{[-2,5)}", "[-2,5)", True),
    ("\\boxed{[-2,5]}", "[-2,5)", False),
    ("\\boxed{(-2,5)}", "[-2,5)", False),
    ("\\boxed{(-\\infty, 1] \\cup [3, \\infty)}", "(-\\infty,1]\\cup[3,\\infty)", True),
    ("\\boxed{[3, \\infty) \\cup (-\\infty, 1]}", "(-\\infty,1]\\cup[3,\\infty)", True),
    ("\\boxed{(-\\infty, 1) \\cup [3, \\infty)}", "(-\\infty,1]\\cup[3,\\infty)", False),
    ("\\boxed{(-\\infty, 1]}", "(-\\infty,1]\\cup[3,\\infty)", False),
    ("\\boxed{\\left[ \\frac{1}{2}, 3 \\right)}", "[0.5, 3)", True),
    ("\\boxed{x \\in [1, 2]}", "[1,2]", True),
    ("\\boxed{(0, \\infty)}", "(0,\\infty)", True),
    ("\\boxed{(1, \\infty)}", "(0,\\infty)", False),
]

INEQUALITIES = [
    ("\\boxed{x < 3}", "(-\\infty, 3)", True),
    ("\\boxed{x \\le 3}", "(-\\infty, 3)", False),
    ("\\boxed{x \\geq 2}", "[2, \\infty)", True),
    ("\\boxed{1 < x \\le 4}", "(1, 4]", True),
    ("\\boxed{1 \\le x \\le 4}", "(1, 4]", False),
    ("\\boxed{x \\le 1 \\text{ or } x \\ge 3}", "(-\\infty,1]\\cup[3,\\infty)", True),
    ("\\boxed{3 > x}", "(-\\infty, 3)", True),
    ("\\boxed{x > -1}", "x > -1", True),
    ("\\boxed{x > 1}", "x > -1", False),
]

SETS = [
    ("\\boxed{2, 3}", "3, 2", True),
    ("\\boxed{2, 3}", "2", False),
    ("\\boxed{2}", "2, 3", False),
    ("\\boxed{\\{1,2\\}}", "1, 2", True),
    ("\\boxed{\\{1, 2, 3\\}}", "\\{3,2,1\\}", True),
    ("\\boxed{\\{1, 2\\}}", "\\{1,2,3\\}", False),
    ("\\boxed{1\\pm\\sqrt{2}}", "1+\\sqrt{2}, 1-\\sqrt{2}", True),
    ("\\boxed{1\\pm\\sqrt{2}}", "1+\\sqrt{2}", False),
    ("\\boxed{\\pm 3}", "3, -3", True),
    ("\\boxed{x = 2, x = 3}", "2, 3", True),
    ("\\boxed{x = 2 \\text{ and } x = 3}", "2,3", True),
    ("The solutions are $\\boxed{2}$ and $\\boxed{3}$.", "2, 3", True),
    ("\\boxed{-1, 4}", "4, -1", True),
    ("\\boxed{-1, 4}", "1, -4", False),
    ("\\boxed{x=\\frac{-1\\pm\\sqrt{5}}{2}}", "\\frac{-1+\\sqrt5}{2}, \\frac{-1-\\sqrt5}{2}", True),
]

TUPLES = [
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3, \\frac{\\pi}{2})", True),
    ("\\boxed{(\\frac{\\pi}{2}, 3)}", "(3, \\frac{\\pi}{2})", False),
    ("\\boxed{(1, 2, 3)}", "(1,2,3)", True),
    ("\\boxed{(1, 3, 2)}", "(1,2,3)", False),
    ("\\boxed{(2,-1)}", "(2,-1)", True),
    ("\\boxed{(-1,2)}", "(2,-1)", False),
    ("\\boxed{(6, 2\\sqrt{3})}", "(6,\\sqrt{12})", True),
    ("\\boxed{\\langle 1, 2 \\rangle}", "(1,2)", True),
]

MATRICES = [
    ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", True),
    ("\\boxed{\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", False),
    ("\\boxed{\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
    ("\\boxed{\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
    ("\\boxed{\\begin{pmatrix} 1 & 3 \\\\ 2 & 4 \\end{pmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", False),
    ("\\boxed{\\begin{pmatrix} \\frac12 \\\\ -1 \\end{pmatrix}}", "\\begin{pmatrix} 1/2 \\\\ -1 \\end{pmatrix}", True),
    ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "(1, 2)", True),
]

EQUATIONS = [
    ("\\boxed{x^2+y^2=1}", "y^2 + x^2 = 1", True),
    ("\\boxed{x^2+y^2=2}", "y^2 + x^2 = 1", False),
    ("\\boxed{2x+4y=6}", "x + 2y = 3", True),
    ("\\boxed{2x+4y=6}", "x + 2y = 6", False),
    ("\\boxed{y = 2x + 3}", "y=2x+3", True),
    ("\\boxed{2x - y + 3 = 0}", "y = 2x + 3", True),
    ("\\boxed{y = -2x + 3}", "y = 2x + 3", False),
    ("\\boxed{3 = x}", "x = 3", True),
    ("\\boxed{x = 3}", "3", True),
    ("\\boxed{3}", "x=3", True),
    ("\\boxed{y = \\frac{1}{2}x - 1}", "y=\\frac{x}{2}-1", True),
]

PERCENT = [
    ("\\boxed{20\\%}", "0.2", True),
    ("\\boxed{20}", "20\\%", True),
    ("\\boxed{0.2}", "20\\%", True),
    ("\\boxed{20\\%}", "20\\%", True),
    ("\\boxed{2000\\%}", "20\\%", False),
    ("\\boxed{25\\%}", "20\\%", False),
    ("\\boxed{12.5\\%}", "\\frac18", True),
]

UNITS_FORMATS = [
    ("\\boxed{12\\text{ cm}^2}", "12", True),
    ("\\boxed{12 \\text{ cm}^2}", "12\\text{ cm}^2", True),
    ("\\boxed{13\\text{ cm}^2}", "12", False),
    ("\\boxed{30^\\circ}", "30", True),
    ("\\boxed{30^{\\circ}}", "30^\\circ", True),
    ("\\boxed{60^\\circ}", "30", False),
    ("\\boxed{\\$18.90}", "18.90", True),
    ("\\boxed{\\$18.90}", "18.9", True),
    ("\\boxed{\\$18.09}", "18.9", False),
    ("\\boxed{1{,}000}", "1000", True),
    ("\\boxed{1,000}", "1000", True),
    ("\\boxed{10,\\!000}", "10000", True),
    ("\\boxed{1\\,234}", "1234", True),
    ("\\boxed{1,234,567}", "1234567", True),
    ("\\boxed{5 \\text{ dollars}}", "5", True),
    ("\\boxed{5\\mbox{ meters}}", "5", True),
    ("\\boxed{45 \\text{ minutes}}", "45", True),
    ("\\boxed{12 cm^2}", "12", True),
    ("\\boxed{\\text{18 apples}}", "18", True),
    ("\\boxed{\\displaystyle \\frac{3}{4}}", "\\frac34", True),
]

CHOICES = [
    ("\\boxed{C}", "C", True),
    ("\\boxed{(C)}", "\\text{(C)}", True),
    ("\\boxed{\\text{(B)}}", "\\text{(C)}", False),
    ("\\boxed{\\textbf{(A) }12}", "A", True),
    ("\\boxed{\\textbf{(A) }12}", "B", False),
    ("Answer: B", "B", True),
    ("Answer: (B)", "\\text{(B)}", True),
    ("Answer: D", "B", False),
    ("After comparing all options, the answer is (D).", "D", True),
    ("After comparing all options, the answer is (D).", "A", False),
    ("\\boxed{D. 24}", "D", True),
    ("\\boxed{E}", "\\mathrm{(E)}", True),
    ("\\boxed{12}", "A", False),
]

TEXT = [
    ("\\boxed{\\text{Monday}}", "\\text{Monday}", True),
    ("\\boxed{Monday}", "\\text{Monday}", True),
    ("\\boxed{\\text{Tuesday}}", "\\text{Monday}", False),
    ("\\boxed{\\text{Yes}}", "yes", True),
    ("\\boxed{\\text{No}}", "yes", False),
    ("\\boxed{\\text{odd}}", "\\text{odd}", True),
    ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", True),
]

HEDGES = [
    ("\\boxed{3} or \\boxed{5}", "3", False),
    ("\\boxed{3 \\text{ or } 5}", "5", False),
    ("The answer is \\boxed{3} or possibly \\boxed{5}", "5", False),
    ("\\boxed{3, 5}", "3", False),
    ("Answer: 3 or 5", "3", False),
]

HOSTILE = [
    ("\\boxed{9^{9^{9^9}}}", "1", False),
    ("\\boxed{(10^{100})!}", "1", False),
    ("\\boxed{10^{10^{10}}}", "10^{10^{10}}+1", False),
    ("\\boxed{" + "(" * 500 + "1" + ")" * 500 + "}", "1", False),
    ("\\boxed{" + "{" * 2000 + "1" + "}" * 2000 + "}", "1", False),
    ("\\boxed{" + "\\sqrt{" * 300 + "2" + "}" * 300 + "}", "2", False),
    ("\\boxed{" + "1" * 5000 + "}", "1" * 5000, False),
    ("\\boxed{\\begin{pmatrix}1&1\\\\1&0\\end{pmatrix}^{1000000000}}", "1", False),
    ("\\boxed{x^{10^{9}}}", "x", False),
    ("\\boxed{__import__('os').system('touch /tmp/pwned')}", "0", False),
    ("\\boxed{" + "2^" * 200 + "2}", "4", False),
    ("\\boxed{99999999!}", "1", False),
    ("\\boxed{\\binom{10^{9}}{5000}}", "1", False),
    ("\\boxed{" + "x+" * 3000 + "x}", "3001x", False),
    ("Answer: " + "(" * 100000, "1", False),
    ("\\boxed{0^{-1}}", "0", False),
    ("\\boxed{\\frac{1}{0}}", "\\infty", False),
    ("\\boxed{1/0}", "\\infty", False),
]

MATH_SOLUTIONS = [
    # Whole MATH-style solutions on both sides: the gold's own box is its answer.
    ("Using the distance formula, $\\sqrt{6^2 + 9^2} = \\sqrt{117} = \\boxed{3\\sqrt{13}}$.",
     "The distance is $\\sqrt{117}=\\boxed{3\\sqrt{13}}$.", True),
    ("Checking each candidate, the integer roots are $\\boxed{-2,1}.$", "$-2,1$", True),
    ("Checking each candidate, the integer roots are $\\boxed{-2}.$", "$-2,1$", False),
    ("By the quadratic formula, $x = \\boxed{1 \\pm \\sqrt{19}}.$", "$1 \\pm \\sqrt{19}$", True),
    ("By the quadratic formula, $x = \\boxed{1 + \\sqrt{19}}.$", "$1 \\pm \\sqrt{19}$", False),
    ("The roots are $\\boxed{\\{1\\pm\\sqrt{5},-2\\}}.$", "$\\{-2, 1+\\sqrt5, 1-\\sqrt5\\}$", True),
    ("The quotient is $\\boxed{204_5}$.", "204_5", True),
    ("The quotient is $\\boxed{203_5}$.", "204_5", False),
    ("Hence $\\boxed{f(2) < f(1) < f(4)}.$", "f(2) < f(1) < f(4)", True),
    ("By sum-to-product, the expression is $\\boxed{2 \\sin b \\cos a}$.", "2 \\sin b \\cos a", True),
    ("By sum-to-product, the expression is $\\boxed{2 \\cos b \\sin a}$.", "2 \\sin b \\cos a", False),
    ("The ratio is $\\boxed{\\frac{\\pi r}{h+r}}$.", "\\frac{\\pi r}{r+h}", True),
    ("The distance is $\\boxed{125\\textnormal{ miles}}.$", "125", True),
    ("The solution set is $\\boxed{[-1, -\\tfrac12) \\cup (-\\tfrac12, 0) \\cup (0, 1) \\cup (1, \\infty)}.$",
     "[-1, -\\frac{1}{2}) \\cup (-\\frac{1}{2}, 0) \\cup (0, 1) \\cup (1, \\infty)", True),
    ("So $x \\in \\boxed{\\{-1\\} \\cup [0,7)}.$", "\\{-1\\} \\cup [0,7)", True),
    ("Thus $(p,q,r) = \\boxed{(6,31,-1)}.$", "(6,31,-1)", True),
    ("Therefore $\\boxed{\\frac94\\pi}$.", "\\frac{9}{4}\\pi", True),
    ("The answer is $\\boxed{\\sqrt 2+\\sqrt 5}$", "\\sqrt{2}+\\sqrt{5}", True),
    ("The area is $\\boxed{15\\mbox{ cm}^2}$.", "15\\mbox{ cm}^2", True),
    ("So $k = \\frac{1}{3}$ is the answer: $\\boxed{k = \\frac13}$", "\\frac{1}{3}", True),
    ("$x = 5+5+1 = \\boxed{11}$", "x = 11", True),
    ("We get $\\boxed{x = \\frac{1}{3} \\approx 0.33}$", "\\frac13", True),
    ("We get $\\boxed{-x > -1}$", "x < 1", True),
    ("We get $\\boxed{-x > -1}$", "x > -1", False),
    ("We get $\\boxed{x \\ne 3}$", "x != 3", True),
    ("We get $\\boxed{11a+c}$", "7 = 11a + c", False),
    ("The line is $\\boxed{y=-\\frac{1}{2}x+\\frac{3}{4}}$", "2x+4y-3=0", True),
    ("The ellipse is $\\boxed{\\frac{x^2}{16} + \\frac{y^2}{12} = \\frac14}$", "x^2/4 + y^2/3 = 1", True),
    ("Special matrix: $\\boxed{\\left[\\begin{array}{cc}1 & 2 \\\\3 & 4\\end{array}\\right]}$",
     "\\begin{pmatrix}1 & 2 \\\\3 & 4\\end{pmatrix}", True),
    ("It is $\\boxed{\\tan^2 y + 1}$", "\\sec^2 y", True),
    ("It is $\\boxed{\\frac{x}{7}+\\frac{2}{7}}$", "\\frac{x+2}{7}", True),
    ("It is $\\boxed{(1, 4.5)}$", "(1,\\frac{9}{2})", True),
    ("It is $\\boxed{0.0833}$", "\\frac{1}{12}", False),
    ("Answer: 28 percent", "28\\%", True),
    ("The loss is $\\boxed{28\\%}$.", "28", True),
    ("Answer: 28", "0.28", False),
    ("So the price is 1 000 dollars.\nAnswer: 1 000", "1000", True),
]

CATEGORIES = {
    "boxed": BOXED, "answer_lines": ANSWER_LINES, "integers": INTEGERS, "decimals_fractions": DECIMALS_FRACTIONS,
    "roots_constants": ROOTS_CONSTANTS, "factorial_binomial": FACTORIAL_BINOMIAL, "complex": COMPLEX,
    "intervals": INTERVALS, "inequalities": INEQUALITIES, "sets": SETS, "tuples": TUPLES, "matrices": MATRICES,
    "equations": EQUATIONS, "percent": PERCENT, "units_formats": UNITS_FORMATS, "choices": CHOICES, "text": TEXT,
    "hedges": HEDGES, "hostile": HOSTILE, "math_solutions": MATH_SOLUTIONS,
}
