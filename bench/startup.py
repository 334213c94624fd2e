"""Benchmark: start-up on DAPO-Math-17K's layout and size, read + dedup + tokenize, against reading
alone in the same run.

    .venv/bin/python bench/startup.py                      # 17,917 problems x 100 copies (1.79M rows)
    .venv/bin/python bench/startup.py --problems 2000 --copies 10

DAPO-Math-17K as shipped repeats each of its ~17.9k problems about 100 times. This writes a
synthetic parquet of that layout (a chat-message prompt of about 600 characters, an integer
answer under reward_model.ground_truth) once into --cache, then times, over --rounds rounds:
load_datasets (read and dedup) and encode_problems (chat template and tokenizer of the default
model) as forkgrpo runs them, and prints a table with the median and range of each phase.
"""

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import forkgrpo  # noqa: E402


def write_parquet(path, problems, copies, seed=0):
    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = random.Random(seed)
    words = "let the sum of all integers such that find compute number remainder when divided by prime".split()
    unique = []
    for i in range(problems):
        text = f"Problem {i}: " + " ".join(rng.choice(words) for _ in range(95)) + "?"
        unique.append({"data_source": "math_dapo", "prompt": [{"role": "user", "content": text}],
                       "reward_model": {"ground_truth": str(rng.randint(0, 999)), "style": "rule-lighteval/MATH_v2"}})
    rows = [unique[j % problems] for j in range(problems * copies)]
    pq.write_table(pa.Table.from_pylist(rows), path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", type=int, default=17917)
    ap.add_argument("--copies", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache", default=str(Path(__file__).resolve().parent.parent / ".cache"))
    args = ap.parse_args()
    path = Path(args.cache) / f"dapo-layout-{args.problems}x{args.copies}.parquet"
    if not path.exists():
        write_parquet(path, args.problems, args.copies)
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(forkgrpo.resolve_model("default"))
    cfg = forkgrpo.Config(data=str(path), template="chat", max_prompt_len=2048)
    times = {"read + dedup": [], "tokenize": [], "total": []}
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        train, _, dropped = forkgrpo.load_datasets(cfg)
        t1 = time.perf_counter()
        kept, skipped = forkgrpo.encode_problems(train, tokenizer, cfg.template, cfg.max_prompt_len)
        t2 = time.perf_counter()
        for k, v in zip(times, (t1 - t0, t2 - t1, t2 - t0)):
            times[k].append(v)
    print(f"{args.problems * args.copies:,} rows -> {len(train):,} problems ({dropped:,} duplicates dropped), "
          f"{len(kept):,} encoded, {args.rounds} rounds\n")
    print("| phase | median s | min-max s |\n|---|---:|---:|")
    for k, ts in times.items():
        print(f"| {k} | {statistics.median(ts):.1f} | {min(ts):.1f}-{max(ts):.1f} |")


if __name__ == "__main__":
    main()
