"""bench/vs_trl.py's summary, on synthetic runs, and bench/micro_batches.py at a tiny size (the GPU check's tests are
in test_gpu_check.py)."""

import subprocess
import sys

from conftest import ROOT, load_script


def _vs_trl():
    return load_script("bench/vs_trl.py")


def test_vs_trl_summary_pools_steps_and_reports_seed_ranges_and_ratios():
    vs_trl = _vs_trl()
    acc = lambda g, s: {"greedy": g, "sampled": s}  # noqa: E731
    runs = [  # two seeds per trainer; hand-picked so that every median and mean is easy to check
        {"trainer": "trl", "seed": 0, "step_s": [10, 12, 14], "generation_s": [6, 6, 6], "trained_tokens": [100, 100, 100],
         "peak_gib": 4.0, "before": acc(0.2, 0.1), "after": acc(0.3, 0.2)},
        {"trainer": "trl", "seed": 1, "step_s": [20, 20, 20], "generation_s": [8, 8, 8], "trained_tokens": [200, 200, 200],
         "peak_gib": 5.0, "before": acc(0.4, 0.1), "after": acc(0.5, 0.4)},
        {"trainer": "vllm", "seed": 0, "step_s": [4, 5, 6], "generation_s": [2, 2, 2], "trained_tokens": [100, 100, 100],
         "peak_gib": 2.0, "before": acc(0.2, 0.1), "after": acc(0.6, 0.5)},
        {"trainer": "vllm", "seed": 1, "step_s": [8, 8, 8], "generation_s": [3, 3, 3], "trained_tokens": [200, 200, 200],
         "peak_gib": 3.0, "before": acc(0.4, 0.1), "after": acc(0.8, 0.7)},
    ]
    s = vs_trl.summarize(runs)
    assert s["trl"]["step_s"] == (17, 12, 20)  # median of the 6 pooled steps [10, 12, 14, 20, 20, 20]; per-seed 12, 20
    assert s["trl"]["update_s"] == (10, 6, 12)  # pooled [4, 6, 8, 12, 12, 12]; per-seed 6, 12
    assert s["vllm"]["generation_s"] == (2.5, 2, 3)
    assert s["vllm"]["peak_gib"] == (3.0, 2.0, 3.0)  # the largest, and the range
    assert s["vllm"]["after_greedy"] == (0.7, 0.6, 0.8) and s["trl"]["before_sampled"] == (0.1, 0.1, 0.1)
    assert s["vllm"]["seeds"] == 2
    table = vs_trl.table(s, k=4).splitlines()
    step_row = next(line for line in table if line.startswith("| seconds per step"))
    # forkgrpo's median 7.0 over TRL's 17.0
    assert "7.0 [5.0, 8.0]" in step_row and f"{7 / 17:.2f}x" in step_row
    greedy_after = next(line for line in table if line.startswith("| greedy accuracy after"))
    assert "70.0% [60.0%, 80.0%]" in greedy_after and "x" not in greedy_after.split("|")[-2]  # no ratio for accuracy


def test_micro_batches_bench_prints_both_rules_their_ratios_and_the_same_update():
    """bench/micro_batches.py at a tiny size: both rules' rows and their ratios, padded tokens that are what
    forkgrpo.micro_batches says each rule runs (scoring and update), and the same loss and gradient."""
    bench = load_script("bench/micro_batches.py")
    args = ["--limit", "64", "--responses", "16", "--layers", "1", "--hidden", "64", "--vocab", "256", "--prompt-len", "8",
            "--rounds", "1", "--threads", "1"]
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "micro_batches.py"), *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in proc.stdout.splitlines() if line.startswith("| ")]
    rows = {row[0]: row for row in cells}
    lengths = [8 + n for n in bench.long_tailed_lengths(16, 64, seed=0)]
    budget = 8 * max(lengths)
    for name, max_tokens in (("fixed, 8 rows", 0), (f"token budget, {budget:,} tokens", budget)):
        parts = bench.forkgrpo.micro_batches(lengths, 8, max_tokens)
        padded = sum(len(p) * max(lengths[i] for i in p) for p in parts)
        assert rows[name][1:3] == [str(2 * len(parts)), f"{2 * padded:,}"], rows[name]
    ratio = rows["ratio token budget / fixed"]
    assert len(ratio) == 8 and all(float(ratio[i]) > 0 for i in (1, 2, 4, 5, 6)), ratio
    assert "same update: yes" in proc.stdout, proc.stdout[-2000:]
    assert "goal (at least 1.5x as fast at no higher peak)" in proc.stdout
