"""math_verify: a safe, fast verifier of final answers to math problems (forkgrpo's reward).

Public API::

    verify(completion, gold, *, timeout=5.0) -> bool
    extract_answer(completion) -> str | None
    verify_batch(pairs, *, workers=None, timeout=5.0) -> list[bool]

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
from .runner import default_workers, get_pool, warm_up

__all__ = ["verify", "verify_batch", "extract_answer", "default_workers", "warm_up"]


def _prepare(completion, gold):
    """('done', bool) when decided without sympy, else ('judge', answer, gold)."""
    if not isinstance(completion, str) or not isinstance(gold, str):
        return ("done", False)
    answer = extract_answer(completion)
    if answer is None or not gold.strip():
        return ("done", False)
    if "boxed" in gold or "fbox" in gold:  # a full worked solution given as gold
        gold = extract_answer(gold) or gold
    verdict = decide(answer, gold)
    if verdict is not None:
        return ("done", verdict)
    return ("judge", answer, gold)


def verify_batch(pairs, *, workers: int | None = None, timeout: float = 5.0) -> list[bool]:
    """Score (completion, gold) pairs: True where the completion's final answer equals gold.

    Cheap pairs (integers, decimals, simple fractions, percentages, choice
    letters, plain text) are decided in this process; the rest go to a
    persistent pool of ``workers`` processes (default: ``default_workers()``,
    the usable CPUs divided by torchrun's ``LOCAL_WORLD_SIZE``, at most 8).
    Each of those pairs gets ``timeout`` seconds from when a worker takes it;
    a worker that overruns is killed and replaced and the pair scores False.
    Identical (answer, gold) pairs are judged once. Never raises.
    """
    pairs = list(pairs)
    results = [False] * len(pairs)
    jobs: dict[tuple[str, str], list[int]] = {}
    for k, pair in enumerate(pairs):
        try:
            completion, gold = pair
            prep = _prepare(completion, gold)
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


def verify(completion: str, gold: str, *, timeout: float = 5.0) -> bool:
    """Does the final answer ``completion`` commits to equal ``gold`` as mathematics?

    Never raises; returns within about ``timeout`` seconds (False on timeout).
    """
    try:
        prep = _prepare(completion, gold)
        if prep[0] == "done":
            return prep[1]
        pool = get_pool()
        return pool.run([("judge", prep[1], prep[2])], timeout, max(1, pool.size()))[0]
    except Exception:
        return False
