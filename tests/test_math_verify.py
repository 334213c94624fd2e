r"""Tests of math_verify: case tables per category, properties, injection, deadlines.

The tables live in tests/verify_cases/cases.py as (completion, gold, expected)
rows collected from the shapes real model outputs take; grow them from every
real failure. All tests share one worker pool (the package's own singleton).
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from math_verify import default_workers, extract_answer, verify, verify_batch
from math_verify.runner import get_pool

_spec = importlib.util.spec_from_file_location("verify_cases", Path(__file__).parent / "verify_cases" / "cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLACK_S = 3.0  # scheduling slack on a loaded 2-core CI machine on top of the deadline


def _ids(table):
    return [f"{k}-{g[:20]}" for k, (_, g, _) in enumerate(table)]


def _check(completion, gold, expected):
    assert verify(completion, gold, timeout=5.0) is expected, (completion[-200:], gold)


# ----------------------------------------------------------------------------- tables, one test per category
@pytest.mark.parametrize("completion,gold,expected", cases.BOXED, ids=_ids(cases.BOXED))
def test_last_boxed_answer_is_the_one_scored(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.ANSWER_LINES, ids=_ids(cases.ANSWER_LINES))
def test_answer_lines_minerva_and_gsm8k_markers_are_read(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.INTEGERS, ids=_ids(cases.INTEGERS))
def test_integers_compare_exactly_without_rounding(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.DECIMALS_FRACTIONS, ids=_ids(cases.DECIMALS_FRACTIONS))
def test_exact_decimals_equal_their_fractions_and_approximations_do_not(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.ROOTS_CONSTANTS, ids=_ids(cases.ROOTS_CONSTANTS))
def test_roots_constants_logs_and_trig_compare_as_numbers(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.FACTORIAL_BINOMIAL, ids=_ids(cases.FACTORIAL_BINOMIAL))
def test_unevaluated_factorials_and_binomials_count(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.COMPLEX, ids=_ids(cases.COMPLEX))
def test_i_is_the_imaginary_unit(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.INTERVALS, ids=_ids(cases.INTERVALS))
def test_intervals_respect_open_and_closed_ends_and_unions_are_unordered(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.INEQUALITIES, ids=_ids(cases.INEQUALITIES))
def test_inequalities_equal_the_interval_they_describe(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.SETS, ids=_ids(cases.SETS))
def test_sets_roots_and_pm_are_unordered_and_complete(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.TUPLES, ids=_ids(cases.TUPLES))
def test_tuples_and_points_are_ordered(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.MATRICES, ids=_ids(cases.MATRICES))
def test_matrices_compare_entrywise(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.EQUATIONS, ids=_ids(cases.EQUATIONS))
def test_equations_match_values_and_rescaled_rearrangements(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.PERCENT, ids=_ids(cases.PERCENT))
def test_percentages_match_fraction_or_bare_number(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.UNITS_FORMATS, ids=_ids(cases.UNITS_FORMATS))
def test_units_degrees_currency_and_separators_are_ignored(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.CHOICES, ids=_ids(cases.CHOICES))
def test_multiple_choice_letters_match_in_any_wrapping(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.TEXT, ids=_ids(cases.TEXT))
def test_text_answers_match_case_insensitively(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.HEDGES, ids=_ids(cases.HEDGES))
def test_hedged_answers_score_false(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.MATH_SOLUTIONS, ids=_ids(cases.MATH_SOLUTIONS))
def test_worked_solutions_on_either_side_are_judged_by_their_boxed_answer(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.ROLLOUT_SHAPES, ids=_ids(cases.ROLLOUT_SHAPES))
def test_answer_shapes_seen_in_rollouts_are_judged_as_mathematics(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.SHAPES_SEEN, ids=_ids(cases.SHAPES_SEEN))
def test_answer_shapes_of_gsm8k_math_and_minerva_completions_are_judged_as_mathematics(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.PROSE_FINAL + cases.MORE_SHAPES,
                         ids=_ids(cases.PROSE_FINAL + cases.MORE_SHAPES))
def test_a_final_answer_stated_in_prose_is_read_and_a_non_committal_last_line_is_not(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.LATER_FINAL, ids=_ids(cases.LATER_FINAL))
def test_a_final_statement_after_an_earlier_box_is_the_answer(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.OUTSIDE_BOX, ids=_ids(cases.OUTSIDE_BOX))
def test_values_in_closing_formulas_outside_a_box_are_read(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.NAMED, ids=_ids(cases.NAMED))
def test_named_values_match_by_name_and_swapped_values_are_wrong(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.NOTATIONS, ids=_ids(cases.NOTATIONS))
def test_integer_functions_set_builder_and_number_sets_evaluate(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.FALSE_POSITIVES, ids=_ids(cases.FALSE_POSITIVES))
def test_a_gold_equation_is_not_matched_by_its_right_side_alone(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.QA_LINE, ids=_ids(cases.QA_LINE))
def test_a_last_line_a_colon_value_is_the_few_shot_answer_and_a_list_of_options_is_not(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.NEXT_TURN, ids=_ids(cases.NEXT_TURN))
def test_text_after_an_end_of_turn_token_or_a_next_question_is_ignored(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.ANSWER_SENTENCES, ids=_ids(cases.ANSWER_SENTENCES))
def test_an_answer_sentence_states_the_result_of_its_computation_and_drops_its_reason(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.CURRENCY, ids=_ids(cases.CURRENCY))
def test_dollar_amounts_are_not_read_as_formula_delimiters(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.NUMBER_WORDS, ids=_ids(cases.NUMBER_WORDS))
def test_a_well_formed_number_in_words_is_that_number(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.TWO_NOTATIONS, ids=_ids(cases.TWO_NOTATIONS))
def test_one_value_in_two_notations_is_that_value_and_two_values_are_a_hedge(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.SUBJECT_SENTENCE, ids=_ids(cases.SUBJECT_SENTENCE))
def test_a_closing_sentence_states_its_subject_by_the_number_after_its_verb(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.NAMED_BOXES, ids=_ids(cases.NAMED_BOXES))
def test_named_angles_approximations_and_closing_displays_state_their_value(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.GOLD_FORMS, ids=_ids(cases.GOLD_FORMS))
def test_golds_as_abs_inequalities_joined_lists_named_pairs_and_matrix_sums(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.JSON_ANSWERS, ids=_ids(cases.JSON_ANSWERS))
def test_a_completion_ending_in_a_json_object_is_read_by_its_answer_field(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.CHOICE_TEXT, ids=_ids(cases.CHOICE_TEXT))
def test_a_choice_letter_with_its_option_text_matches_a_gold_letter_text_or_both(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.CUE_PROSE, ids=_ids(cases.CUE_PROSE))
def test_an_answer_cue_followed_by_prose_states_the_one_value_of_its_sentence(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("completion,gold,expected", cases.BIG_POWERS, ids=_ids(cases.BIG_POWERS))
def test_closed_forms_with_large_powers_compare_without_expanding(completion, gold, expected):
    _check(completion, gold, expected)


@pytest.mark.parametrize("rule,completion,gold,expected", cases.ORDER_OF_PREFERENCE,
                         ids=[f"rule{r[0]}-{k}" for k, r in enumerate(cases.ORDER_OF_PREFERENCE)])
def test_each_rule_of_the_order_of_preference_reads_its_example_and_rejects_its_near_miss(rule, completion, gold,
                                                                                          expected):
    _check(completion, gold, expected)


def test_the_order_of_preference_table_covers_every_rule_with_both_verdicts():
    import math_verify.extract as extract
    rules = re.findall(r"^  (\d)\. ", extract.__doc__, re.M)
    for rule in map(int, rules):
        verdicts = {e for r, _, _, e in cases.ORDER_OF_PREFERENCE if r == rule}
        assert verdicts == {True, False}, rule
    assert len(rules) == len({r for r, *_ in cases.ORDER_OF_PREFERENCE})


@pytest.mark.parametrize("completion,gold,unknown,finished", cases.FINISHED_LAST_LINE,
                         ids=[f"{k}-{r[1]}" for k, r in enumerate(cases.FINISHED_LAST_LINE)])
def test_a_last_line_without_a_full_stop_is_read_only_when_the_completion_finished(completion, gold, unknown, finished):
    assert verify(completion, gold) is unknown
    assert verify(completion, gold, finished=False) is unknown
    assert verify(completion, gold, finished=True) is finished
    assert verify_batch([(completion, gold)], finished=[True]) == [finished]
    assert verify_batch([(completion, gold)]) == [unknown]


def test_the_finished_flag_acts_per_pair_and_identical_pairs_keep_their_own_verdicts():
    cut = "Grace buys 6 x 5 = 30 marbles"
    pairs = [(cut, "30"), (cut, "30"), ("\\boxed{\\sqrt{4}}", "2"), (cut, "30")]
    assert verify_batch(pairs, finished=[True, False, True, True]) == [True, False, True, True]
    assert verify_batch(pairs, finished=None) == [False, False, True, False]
    assert verify_batch(pairs, finished=[True]) == [False, False, True, False]  # wrong length: nothing known
    assert extract_answer(cut) is None and extract_answer(cut, finished=True) == "30"


@pytest.mark.parametrize("completion,gold,expected", cases.HOSTILE, ids=_ids(cases.HOSTILE))
def test_hostile_inputs_score_false_within_one_second(completion, gold, expected):
    start = time.monotonic()
    assert verify(completion, gold, timeout=1.0) is expected
    assert time.monotonic() - start < 1.0 + SLACK_S


def test_real_model_outputs_score_as_labelled():
    """tests/verify_cases/real_outputs.jsonl: completions written by models, labelled by reading them."""
    import json
    rows = [json.loads(line) for line in (Path(__file__).parent / "verify_cases" / "real_outputs.jsonl").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    got = verify_batch([(r["completion"], r["gold"]) for r in rows], timeout=5.0)
    wrong = [(r["source"], r["gold"], r["expected"]) for r, ok in zip(rows, got) if ok is not r["expected"]]
    assert wrong == []


def test_verify_batch_agrees_with_verify_on_every_table_row():
    rows = [row for table in cases.CATEGORIES.values() for row in table]
    got = verify_batch([(c, g) for c, g, _ in rows], timeout=5.0)
    assert got == [e for _, _, e in rows]


# ----------------------------------------------------------------------------- extraction, hand cases
@pytest.mark.parametrize(
    "completion,answer",
    [
        ("so \\boxed{12}.", "12"),
        ("\\boxed{1} then much later, after a long and careful recomputation, \\boxed{2}", "2"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed 7.", "7"),
        ("<think>\\boxed{3}</think> The answer is \\boxed{4}.", "4"),
        ("Answer: $2^{100}$", "2^{100}"),
        ("#### 1,234", "1,234"),
        ("Final Answer: The final answer is $5$. I hope it is correct.", "5"),
        ("the answer is (D).", "(D)"),
        ("\\boxed{3} or \\boxed{5}", "3 \\text{ or } 5"),
        ("The roots are \\boxed{2} and \\boxed{3}.", "2, 3"),
        ("nothing to see", None),
        ('{"reasoning": "The answer is \\\\boxed{4}.", "answer": "5"}', "5"),  # 0. JSON before boxes
        ("The answer is (B) 12 apples.", "(B) 12 apples"),
        ("Answer: Tim spent a total of $1110 on fireworks.", "1110"),
        ("Answer: (5xy)/(12w)\nTherefore, the correct answer is option C.", "(C)"),
    ],
)
def test_extract_answer_returns_the_committed_final_answer(completion, answer):
    assert extract_answer(completion) == answer


# ----------------------------------------------------------------------------- properties
_atoms = st.one_of(
    st.integers(-50, 50).map(str),
    st.tuples(st.integers(1, 20), st.integers(1, 20)).map(lambda t: f"\\frac{{{t[0]}}}{{{t[1]}}}"),
    st.integers(2, 30).map(lambda n: f"\\sqrt{{{n}}}"),
    st.sampled_from(["\\pi", "e", "x", "2x", "x^2", "\\frac{\\pi}{3}", "3\\sqrt{2}", "0.25", "\\ln 2", "2^{10}"]),
)
_exprs = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "\\cdot "]), inner).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(inner, inner).map(lambda t: f"\\frac{{{t[0]}}}{{{t[1]}}}"),
        inner.map(lambda a: f"\\left({a}\\right)"),
    ),
    max_leaves=5,
)
_answers = st.one_of(
    _exprs,
    st.lists(_atoms, min_size=2, max_size=3).map(lambda xs: "(" + ", ".join(xs) + ")"),
    st.lists(st.integers(-9, 9).map(str), min_size=1, max_size=3, unique=True).map(lambda xs: "\\{" + ", ".join(xs) + "\\}"),
    st.tuples(st.integers(-9, 0), st.integers(1, 9), st.sampled_from("[("), st.sampled_from("])")).map(
        lambda t: f"{t[2]}{t[0]}, {t[1]}{t[3]}"),
    st.sampled_from(["x = 3", "y = 2x + 1", "x^2 + y^2 = 4", "20\\%", "\\text{(C)}", "\\text{Monday}"]),
)


@PROPERTY
@given(_answers)
def test_boxed_well_formed_answer_verifies_against_itself(x):
    assert verify("The final answer is \\boxed{" + x + "}", x) is True


@PROPERTY
@given(_answers, _answers)
def test_equivalence_is_symmetric_on_well_formed_answers(a, b):
    assert verify("\\boxed{" + a + "}", b) == verify("\\boxed{" + b + "}", a)


@PROPERTY
@given(st.integers(-10**30, 10**30), st.integers(1, 10**6))
def test_integer_equals_itself_scaled_as_a_fraction_and_not_its_neighbour(n, k):
    assert verify(f"\\boxed{{\\frac{{{n * k}}}{{{k}}}}}", str(n)) is True
    assert verify(f"\\boxed{{{n + 1}}}", str(n)) is False


@PROPERTY
@given(st.text(max_size=300), st.sampled_from(["3", "\\frac{1}{2}", "(1,2)", "\\text{(B)}", "x^2+1"]))
def test_verify_never_raises_and_meets_its_deadline_on_arbitrary_text(text, gold):
    start = time.monotonic()
    assert verify(text, gold, timeout=1.0) in (True, False)
    assert verify("\\boxed{" + text + "}", gold, timeout=1.0) in (True, False)
    assert time.monotonic() - start < 2.0 + SLACK_S


_hostile_atoms = st.one_of(
    st.integers(2, 10**6).map(str),
    st.sampled_from(["9", "x", "\\pi", "10^{100}", "99999!", "e", "i"]),
)
_hostile = st.recursive(
    _hostile_atoms,
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda t: f"{{{t[0]}}}^{{{t[1]}}}"),
        inner.map(lambda a: f"({a})!"),
        inner.map(lambda a: "{" * 30 + a + "}" * 30),
        inner.map(lambda a: f"\\sqrt{{{a}}}"),
        st.tuples(inner, inner).map(lambda t: f"\\binom{{{t[0]}}}{{{t[1]}}}"),
        st.tuples(inner, inner).map(lambda t: f"\\frac{{{t[0]}}}{{{t[1]}}}"),
        inner.map(lambda a: f"\\begin{{pmatrix}}{a}&1\\\\1&{a}\\end{{pmatrix}}^{{10^9}}"),
    ),
    max_leaves=6,
)


@PROPERTY
@given(_hostile)
def test_hostile_latex_never_raises_and_answers_within_one_second(x):
    start = time.monotonic()
    got = verify("\\boxed{" + x + "}", "7", timeout=1.0)
    assert got in (True, False)
    assert time.monotonic() - start < 1.0 + SLACK_S


# ----------------------------------------------------------------------------- injection
def _payloads(path: Path) -> list[str]:
    p = str(path)
    return [
        f"__import__('os').system('touch {p}')",
        f"open('{p}', 'w').write('x')",
        f"(lambda: __import__('pathlib').Path('{p}').touch())()",
        f"exec(\"open('{p}','w')\")",
        f"__import__('subprocess').run(['touch', '{p}'])",
        f"Symbol('x').__class__.__init__.__globals__['os'].system('touch {p}')",
    ]


def test_injection_payloads_in_any_position_create_no_file_and_score_false(tmp_path):
    target = tmp_path / "pwned"
    completions = []
    for payload in _payloads(target):
        completions += [
            f"The answer is \\boxed{{{payload}}}",
            f"Work...\nAnswer: {payload}",
            f"Answer: ${payload}$",
            f"\\boxed{{\\text{{{payload}}}}}",
            f"I think the answer is {payload}.",
            f"Final Answer: The final answer is ${payload}$. I hope it is correct.",
        ]
    golds = ["0", "\\frac{1}{2}", "x"]
    results = verify_batch([(c, g) for c in completions for g in golds], timeout=2.0)
    results += [verify(c, "0", timeout=2.0) for c in completions[:6]]
    results += [verify("\\boxed{0}", payload) for payload in _payloads(target)]
    assert not any(results)
    assert not target.exists()


# ----------------------------------------------------------------------------- the runner
def test_stuck_comparison_is_killed_at_its_deadline_and_scores_false():
    pool = get_pool()
    killed_before = pool.killed
    start = time.monotonic()
    # "_sleep" is the runner's test hook: a worker task that hangs for 60 s.
    got = pool.run([("_sleep", 60, None), ("judge", "2^{10}", "1024")], timeout=0.5, workers=2)
    assert got == [False, True]
    assert pool.killed == killed_before + 1
    assert time.monotonic() - start < 0.5 + SLACK_S
    assert verify("\\boxed{\\sqrt{4}}", "2") is True  # the replaced worker serves the next call


def test_every_stuck_worker_is_replaced_and_the_rest_of_the_batch_still_scores():
    pool = get_pool()
    tasks = [("_sleep", 60, None)] * 3 + [("judge", "\\sqrt{9}", "3")] * 3
    assert pool.run(tasks, timeout=0.3, workers=2) == [False] * 3 + [True] * 3


@pytest.mark.parametrize("bad", [None, 3, b"\\boxed{3}", ["3"], "\x00" * 10, "\\" * 1000, "}" * 100 + "{" * 100])
def test_verify_never_raises_on_non_text_or_garbage(bad):
    assert verify(bad, "3") is False
    assert verify("\\boxed{3}", bad) is False
    assert verify_batch([(bad, "3"), ("\\boxed{3}", bad), ("\\boxed{3}", "3")]) == [False, False, True]


def test_identical_answers_in_a_batch_are_judged_once_and_all_scored():
    pairs = [("\\boxed{\\sqrt{2}\\cdot\\sqrt{8}}", "4")] * 50 + [("\\boxed{\\sqrt{3}}", "4")] * 50
    assert verify_batch(pairs) == [True] * 50 + [False] * 50


def test_default_workers_divides_cpus_among_local_ranks(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    alone = default_workers()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1000")
    assert default_workers() == 1
    assert 1 <= alone <= 8
    assert alone <= len(os.sched_getaffinity(0))


def test_warm_up_starts_workers_that_then_answer():
    from math_verify import warm_up

    warm_up(workers=1)
    assert get_pool().size() >= 1
    assert verify("\\boxed{\\binom{6}{3}}", "20") is True


# ----------------------------------------------------------------------------- calling contexts
# Pairs that need the sympy workers (not the in-process cheap path), right and wrong, and a cheap one.
CONTEXT_PAIRS = [("\\boxed{\\cfrac{1}{3}}", "\\frac{1}{3}"), ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}"),
                 ("\\boxed{\\sqrt{8}}", "3"), ("\\boxed{12}", "12")]
CONTEXT_VERDICTS = [True, True, False, True]
_CONTEXT_SCRIPT = r"""
import json, multiprocessing as mp, resource, sys, threading, time
sys.path.insert(0, sys.argv[1])
from math_verify import verify, verify_batch, warm_up
from math_verify.runner import get_pool

def run(pairs):
    verdicts = [verify(c, g) for c, g in pairs] + verify_batch(pairs)
    warm_up(1)
    start = time.monotonic()
    stuck = get_pool().run([("_sleep", 60, None), ("judge", "2^{10}", "1024")], 0.5, 2)
    return verdicts, stuck, time.monotonic() - start

def child(q, pairs):
    q.put(run(pairs))

if __name__ == "__main__":
    kind, pairs = sys.argv[2], json.loads(sys.argv[3])
    if kind == "thread":
        out = []
        t = threading.Thread(target=lambda: out.append(run(pairs)))
        t.start(); t.join()
        out = out[0]
    elif kind == "daemonic":  # a multiprocessing.Pool worker is a daemonic process
        with mp.get_context("spawn").Pool(1) as pool:
            out = pool.apply(run, (pairs,))
    elif kind == "forked":
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=child, args=(q, pairs))
        p.start(); out = q.get(timeout=120); p.join()
    else:  # a low address-space limit, below the workers' own 3 GiB
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        out = run(pairs)
    print(json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["thread", "daemonic", "forked", "low-rlimit"])
def test_same_verdicts_and_deadline_from_any_calling_context(kind, tmp_path):
    import json
    script = tmp_path / "context.py"
    script.write_text(_CONTEXT_SCRIPT)
    root = str(Path(__file__).resolve().parent.parent)
    proc = subprocess.run([sys.executable, str(script), root, kind, json.dumps(CONTEXT_PAIRS)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    verdicts, stuck, seconds = json.loads(proc.stdout.strip().splitlines()[-1])
    assert verdicts == CONTEXT_VERDICTS * 2  # verify, then verify_batch
    assert stuck == [False, True] and seconds < 0.5 + SLACK_S  # the stuck pair was killed at its deadline
    assert "RuntimeWarning" not in proc.stderr


def test_verdicts_in_this_process_match_the_context_table():
    assert [verify(c, g) for c, g in CONTEXT_PAIRS] == CONTEXT_VERDICTS


def test_a_pool_whose_workers_cannot_start_says_so_instead_of_scoring_false_silently(monkeypatch):
    from math_verify import runner, warm_up
    monkeypatch.setattr(runner, "START_METHOD", "subprocess")
    monkeypatch.setattr(runner, "_SUBPROCESS_CODE", "import sys; sys.exit(3)")  # every worker dies at start
    pool = runner.Pool()
    try:
        with pytest.warns(RuntimeWarning, match="every worker died before it was ready"):
            assert pool.run([("judge", "\\sqrt{8}", "2\\sqrt{2}")], timeout=5.0, workers=2) == [False]
        assert "died before it was ready" in pool.failure
    finally:
        pool.close()
    monkeypatch.setattr(runner, "_POOL", runner.Pool())
    monkeypatch.setattr(runner, "_POOL_PID", os.getpid())
    try:
        with pytest.raises(RuntimeError, match="the worker pool cannot judge pairs here: every worker died"):
            warm_up(workers=1)
    finally:
        runner._POOL.close()


# ----------------------------------------------------------------------------- safety of the package itself
def test_package_source_calls_no_string_evaluator():
    banned = ["sym" + "pify", "parse" + "_expr", "ev" + "al", "ex" + "ec", "lamb" + "dify", "parse" + "_latex"]
    pattern = re.compile(r"\b(" + "|".join(banned) + r")\(")
    package = Path(__file__).resolve().parent.parent / "math_verify"
    hits = [f"{f.name}:{k}" for f in package.glob("*.py")
            for k, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_importing_and_cheap_verification_load_neither_sympy_nor_torch():
    code = ("import sys, math_verify; "
            "ok = math_verify.verify_batch([('\\\\boxed{12}', '12'), ('Answer: 3/4', '0.75'), ('\\\\boxed{B}', 'B')]); "
            "print(ok, 'sympy' in sys.modules, 'torch' in sys.modules)")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["[True,", "True,", "True]", "False", "False"], out.stderr
