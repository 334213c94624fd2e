"""math_verify: a safe, fast verifier of final answers to math problems (forkgrpo's reward).

Public API::

    verify(completion, gold, *, timeout=5.0, finished=False) -> bool
    extract_answer(completion, *, finished=False) -> str | None
    verify_batch(pairs, *, workers=None, timeout=5.0, finished=None) -> list[bool]

``finished`` says the completion ended at EOS (the trainer knows; the text alone does not): a
last line without a full stop is then read as finished instead of as cut off mid-computation.

Modules, one job each: ``extract`` (find the final answer), ``normalize``
(canonical string), ``cheap`` (in-process fast path without sympy), ``parse``
(LaTeX/plain math to sympy objects, no ``eval``), ``compare`` (what is equal to
what), ``runner`` (worker pool with a deadline enforced from outside).

Note: this package shadows the unrelated PyPI package ``math-verify`` (same
import name) whenever Python runs from the forkgrpo repository root.
"""
from __future__ import annotations

from .cheap import decide
from .extract import extract_answer
from .normalize import is_choice_gold, split_option
from .runner import default_workers, get_pool, warm_up

__all__ = ["verify", "verify_batch", "extract_answer", "default_workers", "warm_up"]


def _prepare(completion, gold, finished=False):
    """('done', bool) when decided without sympy, else ('judge', answer, gold)."""
    if not isinstance(completion, str) or not isinstance(gold, str):
        return ("done", False)
    answer = extract_answer(completion, finished=bool(finished))
    if answer is None or not gold.strip():
        return ("done", False)
    if "boxed" in gold or "fbox" in gold:  # a full worked solution given as gold
        gold = extract_answer(gold) or gold
    if not is_choice_gold(gold):
        # Multiple choice with the option's text: a gold "B) 12" is answered by the letter B (or, without a
        # letter, by the text 12); a prediction "(B) 12 apples" answers a gold value by its text.
        g_option, p_option = split_option(gold), split_option(answer)
        if g_option is not None and g_option[1]:
            if p_option is not None:
                return ("done", p_option[0] == g_option[0])
            gold = g_option[1]
        elif p_option is not None and p_option[1] and g_option is None:
            answer = p_option[1]
    verdict = decide(answer, gold)
    if verdict is not None:
        return ("done", verdict)
    return ("judge", answer, gold)


def _flag(x) -> bool:
    """A finished flag as a bool (numpy and torch booleans too); text or anything unreadable is False."""
    try:
        return not isinstance(x, (str, bytes)) and bool(x)
    except Exception:
        return False


def verify_batch(pairs, *, workers: int | None = None, timeout: float = 5.0,
                 finished: list[bool] | None = None) -> list[bool]:
    """Score (completion, gold) pairs: True where the completion's final answer equals gold.

    ``finished``: None (nothing known about how the completions ended), or one bool per pair, True
    where the completion ended at EOS (see ``extract_answer``); a finished last line that states one
    value is read without a closing full stop. A list of the wrong length is treated as None.
    Cheap pairs (integers, decimals, simple fractions, percentages, choice
    letters, plain text) are decided in this process; the rest go to a
    persistent pool of ``workers`` processes (default: ``default_workers()``,
    the usable CPUs divided by torchrun's ``LOCAL_WORLD_SIZE``, at most 8).
    Each of those pairs gets ``timeout`` seconds from when a worker takes it;
    a worker that overruns is killed and replaced and the pair scores False.
    Identical (answer, gold) pairs are judged once (the flag acts in extraction,
    before that). Never raises.
    """
    pairs = list(pairs)
    results = [False] * len(pairs)
    try:
        flags = list(finished) if finished is not None else []
    except TypeError:
        flags = []
    if len(flags) != len(pairs):
        flags = [False] * len(pairs)
    jobs: dict[tuple[str, str], list[int]] = {}
    for k, pair in enumerate(pairs):
        try:
            completion, gold = pair
            prep = _prepare(completion, gold, _flag(flags[k]))
        except Exception:
            continue
        if prep[0] == "done":
            results[k] = prep[1]
        else:
            jobs.setdefault((prep[1], prep[2]), []).append(k)
    if jobs:
        keys = list(jobs)
        try:
            answers = get_pool().run([("judge", a, g) for a, g in keys], timeout,
                                     workers if workers is not None else default_workers())
        except Exception:
            answers = [False] * len(keys)
        for key, ok in zip(keys, answers):
            for k in jobs[key]:
                results[k] = ok
    return results


def verify(completion: str, gold: str, *, timeout: float = 5.0, finished: bool = False) -> bool:
    """Does the final answer ``completion`` commits to equal ``gold`` as mathematics?

    ``finished=True``: the completion ended at EOS, so its last line is read as finished (see
    ``extract_answer``). Never raises; returns within about ``timeout`` seconds (False on timeout).
    """
    try:
        prep = _prepare(completion, gold, _flag(finished))
        if prep[0] == "done":
            return prep[1]
        pool = get_pool()
        return pool.run([("judge", prep[1], prep[2])], timeout, max(1, pool.size()))[0]
    except Exception:
        return False
