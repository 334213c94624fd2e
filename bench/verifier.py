"""Benchmark: accuracy, throughput and latency of math_verify on the project's case tables.

    python bench/verifier.py                                      # this package only
    python bench/verifier.py --reference-python /work/refvenv/bin/python
    python -m math_verify.bench [...]                             # the same, from the package
    python bench/verifier.py --cases held_out.jsonl --daemonic    # your own labelled table(s)
    python bench/verifier.py --reference                          # HF's in .cache/hf-math-verify (built once)

With ``--cases`` JSON Lines files of {"completion", "gold", "expected", "class" (optional), "finished"
(optional: the completion ended at EOS, passed to ``verify_batch``)} rows are measured too (an
independent table: our own tables are a regression check, not an accuracy
estimate). Every workload reports accuracy, false positives and negatives, and accuracy per class
(the table's categories, or the file's "class" field). ``--daemonic`` also scores each workload
from inside a daemonic multiprocessing worker (where no child process may be started) and reports
whether the verdicts agree with the ordinary process's.

With ``--reference-python`` the same pairs also go through HF's Math-Verify
(PyPI ``math-verify``), run in a subprocess of that interpreter in isolated
mode from a scratch directory, because this package shadows its import name
from the repository root. Both run in the same invocation on the same machine.

``--reference`` builds that venv once under ``.cache/hf-math-verify`` (``pip install
'math-verify[antlr4_13_2]==0.9.0'``) and uses its interpreter.

Workloads:
  real     tests/verify_cases/real_outputs.jsonl: completions written by models, copied verbatim
           from public repositories or sampled from the embedded model, labelled by reading them
  tables   every row of tests/verify_cases/cases.py (all categories, incl. hostile)
  numeric  N plain numeric pairs shaped like DAPO/GSM8K rollouts (long reasoning,
           then a boxed integer, decimal or fraction; golds are integers)
Throughput is one ``verify_batch`` call over the whole workload; latency is one
``verify_batch([pair])`` call per pair (what a single straggler costs).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(_ROOT))

from math_verify import verify_batch  # noqa: E402
from math_verify.runner import get_pool  # noqa: E402

_CASES = _ROOT / "tests" / "verify_cases" / "cases.py"
_REAL = _ROOT / "tests" / "verify_cases" / "real_outputs.jsonl"
_HF_VENV = _ROOT / ".cache" / "hf-math-verify"
_HF_PIN = "math-verify[antlr4_13_2]==0.9.0"


def reference_python() -> str:
    """The interpreter of a venv with HF Math-Verify, built once under .cache/ (a few seconds to a minute)."""
    python = _HF_VENV / "bin" / "python"
    probe = [str(python), "-I", "-c", "import math_verify, latex2sympy2_extended"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(python)
    print(f"building {_HF_VENV} with {_HF_PIN} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(_HF_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", _HF_PIN], check=True)
    return str(python)

_REFERENCE = r"""
import json, sys, time
from math_verify import parse, verify
rows = json.load(sys.stdin)
out = []
for completion, gold in rows:
    t0 = time.perf_counter()
    try:
        g = gold if ("$" in gold or "boxed" in gold) else "$" + gold + "$"
        ok = bool(verify(parse(g), parse(completion)))
    except Exception:
        ok = False
    out.append([ok, time.perf_counter() - t0])
t0 = time.perf_counter()
for completion, gold in rows:
    try:
        g = gold if ("$" in gold or "boxed" in gold) else "$" + gold + "$"
        verify(parse(g), parse(completion))
    except Exception:
        pass
total = time.perf_counter() - t0
json.dump({"results": out, "total": total}, sys.stdout)
"""


def load_tables() -> list[tuple[str, str, bool, str]]:
    spec = importlib.util.spec_from_file_location("verify_cases", _CASES)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return [(*row, name) for name, table in mod.CATEGORIES.items() for row in table]


def load_cases(path: str) -> list[tuple[str, str, bool, str]]:
    rows = []
    for k, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            rows.append((r["completion"], r["gold"], bool(r["expected"]), str(r.get("class", "all")),
                         r.get("finished") is True))
            if not isinstance(r["expected"], bool):
                raise TypeError("expected must be true or false")
        except (ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"{path}:{k}: expected a JSON object with completion, gold, expected ({e})")
    if not rows:
        raise SystemExit(f"{path}: no cases")
    return rows


def numeric_workload(n: int, seed: int = 0) -> list[tuple[str, str, bool]]:
    rng = random.Random(seed)
    filler = ("Let me think step by step. First, we compute the total cost of the items and then subtract "
              "the discount. 12 * 7 = 84, and 84 - 9 = 75. ") * 12
    rows = []
    for k in range(n):
        gold = rng.randint(0, 10**6)
        right = rng.random() < 0.5
        value = gold if right else gold + rng.choice([-1, 1, 10, -100])
        form = k % 5
        if form == 0:
            ans = f"\\boxed{{{value}}}"
        elif form == 1:
            ans = f"\\boxed{{{value:,}}}".replace(",", "{,}")
        elif form == 2:
            ans = f"$\\boxed{{{value}.0}}$"
        elif form == 3:
            ans = f"\n\nAnswer: {value}"
        else:
            ans = f"\\boxed{{\\frac{{{2 * value}}}{{2}}}}"
        rows.append((f"{filler}{k}\n\nSo the final answer is {ans}.", str(gold), value == gold, "numeric"))
    return rows


def _summary(name, oks, rows, lat_s, total_s):
    expected = [r[2] for r in rows]
    acc = sum(o == e for o, e in zip(oks, expected)) / len(expected)
    lat = sorted(x * 1000 for x in lat_s)
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    hostile = [t * 1000 for t, r in zip(lat_s, rows) if r[3] == "hostile"]
    return {"verifier": name, "accuracy": acc, "pairs_per_s": len(expected) / total_s,
            "median_ms": statistics.median(lat), "p99_ms": p99, "max_ms": lat[-1], "oks": oks,
            "fp": sum(o and not e for o, e in zip(oks, expected)), "fn": sum(e and not o for o, e in zip(oks, expected)),
            "hostile_max_ms": max(hostile) if hostile else None}


def run_ours(rows, workers, timeout):
    pairs = [(c, g) for c, g, *_ in rows]
    finished = [len(r) > 4 and r[4] for r in rows]
    get_pool().run([("judge", "1", "1")], timeout, workers)  # start the pool outside the clock
    t0 = time.perf_counter()
    oks = verify_batch(pairs, workers=workers, timeout=timeout, finished=finished)
    total = time.perf_counter() - t0
    lat = []
    for p, f in zip(pairs, finished):
        t = time.perf_counter()
        verify_batch([p], workers=workers, timeout=timeout, finished=[f])
        lat.append(time.perf_counter() - t)
    return _summary(f"forkgrpo math_verify (workers={workers})", oks, rows, lat, total)


def run_reference(rows, python):
    with tempfile.TemporaryDirectory() as scratch:
        proc = subprocess.run([python, "-I", "-c", _REFERENCE], input=json.dumps([(c, g) for c, g, *_ in rows]),
                              capture_output=True, text=True, cwd=scratch, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"reference verifier failed:\n{proc.stderr[-2000:]}")
    data = json.loads(proc.stdout)
    oks = [r[0] for r in data["results"]]
    return _summary("HF Math-Verify (reference)", oks, rows, [r[1] for r in data["results"]], data["total"])


def _daemonic_verdicts(rows, timeout):
    """The verdicts of verify_batch called inside a daemonic multiprocessing worker."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:  # Pool workers are daemonic
        return pool.apply(verify_batch, ([(c, g) for c, g, *_ in rows],),
                          {"timeout": timeout, "finished": [len(r) > 4 and r[4] for r in rows]})


def _print_table(title, results, rows):
    print(f"\n### {title}\n")
    print("| verifier | accuracy | false pos. | false neg. | pairs/s | median ms | p99 ms | max ms | hostile max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        hostile = "" if r["hostile_max_ms"] is None else f"{r['hostile_max_ms']:.1f}"
        print(f"| {r['verifier']} | {100 * r['accuracy']:.2f}% | {r['fp']} | {r['fn']} | {r['pairs_per_s']:.0f} | "
              f"{r['median_ms']:.2f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {hostile} |")
    classes = sorted({r[3] for r in rows}, key=[r[3] for r in rows].index)
    if len(classes) > 1:
        print("\n| class | pairs | " + " | ".join(r["verifier"] for r in results) + " |")
        print("|---|---:|" + "---:|" * len(results))
        for cls in classes:
            idx = [k for k, r in enumerate(rows) if r[3] == cls]
            cells = []
            for r in results:
                right = sum(r["oks"][k] == rows[k][2] for k in idx)
                fp = sum(r["oks"][k] and not rows[k][2] for k in idx)
                cells.append(f"{100 * right / len(idx):.1f}%" + (f" ({fp} FP)" if fp else ""))
            print(f"| {cls} | {len(idx)} | " + " | ".join(cells) + " |")
    if len(results) > 1:
        ref = results[-1]
        for r in results[:-1]:
            print(f"\n{r['verifier']} / reference: throughput x{r['pairs_per_s'] / ref['pairs_per_s']:.1f}, "
                  f"median latency x{ref['median_ms'] / max(r['median_ms'], 1e-9):.1f} lower")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference-python", help="interpreter of a venv with PyPI math-verify installed")
    ap.add_argument("--reference", action="store_true",
                    help=f"HF Math-Verify from .cache/hf-math-verify, built there on first use ({_HF_PIN})")
    ap.add_argument("--only", nargs="+", choices=["real", "tables", "numeric"], help="measure only these workloads")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="pool sizes to measure")
    ap.add_argument("--timeout", type=float, default=5.0, help="per-pair deadline, seconds")
    ap.add_argument("--numeric-pairs", type=int, default=512, help="size of the numeric workload")
    ap.add_argument("--cases", nargs="+", default=[],
                    help="JSON Lines tables of your own: completion, gold, expected, class and finished (optional)")
    ap.add_argument("--daemonic", action="store_true", help="also score from inside a daemonic worker process")
    args = ap.parse_args(argv)
    if args.reference and not args.reference_python:
        args.reference_python = reference_python()
    workloads = {"real model outputs (tests/verify_cases/real_outputs.jsonl)": ("real", lambda: load_cases(str(_REAL))),
                 "tables (all categories, incl. hostile)": ("tables", load_tables),
                 f"numeric ({args.numeric_pairs} DAPO/GSM8K-shaped pairs)":
                     ("numeric", lambda: numeric_workload(args.numeric_pairs))}
    workloads = {title: load() for title, (name, load) in workloads.items() if not args.only or name in args.only}
    workloads = {**{path: load_cases(path) for path in args.cases}, **workloads}
    for title, rows in workloads.items():
        results = [run_ours(rows, w, args.timeout) for w in args.workers]
        if args.reference_python:
            results.append(run_reference(rows, args.reference_python))
        _print_table(f"{title}: {len(rows)} pairs", results, rows)
        if args.daemonic:
            same = sum(a == b for a, b in zip(_daemonic_verdicts(rows, args.timeout), results[0]["oks"]))
            print(f"\nfrom a daemonic worker process: {same}/{len(rows)} verdicts the same as in this process")
    get_pool().close()


if __name__ == "__main__":
    main()
